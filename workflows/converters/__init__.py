"""Framework -> ONNX converters. Each `to_onnx(model, out, opset, progress)` writes one raw .onnx."""
