"""A real Triton Inference Server serving an ONNX model, for benchmarks/serving.py: Triton's C++
HTTP/gRPC front-end and dynamic batcher (from `nvidia-pytriton`), with the model run by ONNX
Runtime in its Python backend (the Triton that pytriton ships has no ONNX Runtime backend).

Runs in its own Python 3.13 venv (pytriton's backend stub crashes on 3.11):

    VENV/bin/python benchmarks/triton_server.py MODEL.onnx NAME HTTP_PORT GRPC_PORT MAX_BATCH
"""

import sys

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

NUMPY = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(float16)": np.float16}


def main() -> None:
    path, name, http_port, grpc_port, max_batch = sys.argv[1:6]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()

    @batch
    def infer(**feeds):
        answers = session.run(None, feeds)
        return {o.name: a for o, a in zip(outputs, answers, strict=True)}

    config = TritonConfig(
        http_port=int(http_port), grpc_port=int(grpc_port), metrics_port=int(grpc_port) + 1
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=name,
            infer_func=infer,
            inputs=[
                Tensor(name=t.name, dtype=NUMPY[t.type], shape=tuple(t.shape[1:])) for t in inputs
            ],
            outputs=[
                Tensor(name=t.name, dtype=NUMPY[t.type], shape=tuple(t.shape[1:])) for t in outputs
            ],
            config=ModelConfig(max_batch_size=int(max_batch), batcher=DynamicBatcher()),
            strict=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
