"""Run this TFLite bundle with LiteRT (pip install ai-edge-litert numpy pillow).

    python infer.py INPUT [--model FILE.tflite] [--top-k 5]

INPUT is a .npy array in the model's input layout (one sample, or a batch), or an image, which is
preprocessed with the normalisation recorded in metadata.json.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

HERE = Path(__file__).resolve().parent
META = json.loads((HERE / "metadata.json").read_text())


def load_input(path: Path, spec: dict) -> np.ndarray:
    if path.suffix == ".npy":
        x = np.load(path).astype(spec["dtype"])
    else:
        from PIL import Image

        norm = META.get("normalization")
        if not norm:
            raise SystemExit("this model has no image preprocessing recorded; give a .npy")
        mode = "L" if norm["channels"].upper() in ("L", "GRAY") else "RGB"
        img = Image.open(path).convert(mode)
        if norm.get("size"):
            img = img.resize((norm["size"][1], norm["size"][0]))
        x = np.asarray(img, dtype=np.float32)
        x = x[:, :, None] if x.ndim == 2 else x
        if norm["channels"].upper() == "BGR":
            x = x[:, :, ::-1]
        x = (x * norm["scale"] - np.asarray(norm["mean"], np.float32)) / np.asarray(
            norm["std"], np.float32
        )
        if spec["layout"] == "NCHW":
            x = x.transpose(2, 0, 1)
    if x.ndim == len(spec["shape"]) - 1:
        x = x[None]
    return np.ascontiguousarray(x, dtype=spec["dtype"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("--model", type=Path, default=HERE / META["variants"][0]["file"])
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    spec = META["input"]
    x = load_input(args.input, spec)
    interp = Interpreter(model_path=str(args.model))
    detail = interp.get_input_details()[0]
    if tuple(detail["shape"]) != x.shape:
        interp.resize_tensor_input(detail["index"], list(x.shape), strict=True)
    interp.allocate_tensors()
    interp.set_tensor(detail["index"], x)
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    labels = META.get("labels")
    if labels and out.ndim == 2 and out.shape[1] == len(labels):
        z = np.exp(out - out.max(axis=1, keepdims=True))
        probs = z / z.sum(axis=1, keepdims=True)
        for row in probs:
            top = np.argsort(-row)[: args.top_k]
            print(", ".join(f"{labels[i]} {100 * row[i]:.1f}%" for i in top))
    else:
        print(f"output {out.shape} {out.dtype}: min {out.min():.4g} max {out.max():.4g}")
        print(np.array2string(out, threshold=20))


if __name__ == "__main__":
    main()
