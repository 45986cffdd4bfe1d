"""Inspect a model: I/O, op histogram, parameters by dtype, MACs/FLOPs, opsets, custom ops, graph."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from workflows.errors import DockyardError, FormatError
from workflows.graph import Graph, Tensor, from_onnx, from_tflite
from workflows.model import Model
from workflows.options import LoadOptions, Options, from_dict, option
from workflows.progress import Progress, null_progress


@dataclass
class InspectOptions(Options):
    """Options of the inspect step."""

    model: LoadOptions = option(None, "The model to inspect")
    include_graph: bool = option(True, "Include every node and tensor in the result")


def _known(dim: Any) -> int:
    # Symbolic dims (the batch, a sequence length) count as 1: MACs are reported per sample.
    return dim if isinstance(dim, int) and dim > 0 else 1


def _prod(shape: Any) -> int:
    return int(np.prod([_known(d) for d in shape])) if shape else 1


MAC_OPS = (
    "Conv",
    "ConvTranspose",
    "Gemm",
    "MatMul",
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
)


def estimate_macs(graph: Graph) -> dict[str, int]:
    """Multiply-accumulates per sample for convolutions and matrix products (ONNX and TFLite ops)."""
    macs: Counter[str] = Counter()
    for node in graph.nodes:
        op = node.op_type
        if op not in MAC_OPS or not node.outputs or len(node.inputs) < 2:
            continue  # a damaged node without its weights has no MACs to count
        shapes = [graph.tensors.get(t) for t in node.inputs[:2]] + [
            graph.tensors.get(node.outputs[0])
        ]
        if any(t is None or t.shape is None for t in shapes):
            continue
        a, b, y = (t.shape for t in shapes)  # type: ignore[union-attr]
        if op == "Conv" and len(b) >= 3:
            macs[op] += _prod(y) * _prod(b[1:])  # every output element: C_in/group * kernel MACs
        elif op == "ConvTranspose" and len(b) >= 3:
            macs[op] += _prod(a) * _prod(b[1:])
        elif op == "Gemm" and len(a) == 2:
            trans_a = node.attributes.get("transA", 0)
            macs[op] += _prod(y) * _known(a[0] if trans_a else a[1])
        elif op == "MatMul" and a:
            macs[op] += _prod(y) * _known(a[-1])
        elif op == "CONV_2D" and len(b) == 4:  # filter [out, kh, kw, in], NHWC output
            macs[op] += _prod(y[1:]) * _prod(b[1:])
        elif op == "DEPTHWISE_CONV_2D" and len(b) == 4:  # filter [1, kh, kw, channels]
            macs[op] += _prod(y[1:]) * _prod(b[1:3])
        elif op == "FULLY_CONNECTED" and len(b) == 2:  # weights [out, in]
            macs[op] += _prod(y[1:]) * _known(b[1])
    return dict(macs)


def _parameters_by_dtype(graph: Graph) -> dict[str, dict[str, int]]:
    by_dtype: dict[str, dict[str, int]] = {}
    for t in graph.tensors.values():
        if not t.constant or t.shape is None:
            continue
        n = _prod(t.shape)
        entry = by_dtype.setdefault(t.dtype, {"count": 0, "bytes": 0})
        entry["count"] += n
        entry["bytes"] += n * np.dtype(t.dtype).itemsize if t.dtype != "unknown" else 0
    return by_dtype


def _onnx_details(model: Model, progress: Progress) -> tuple[Graph, dict[str, Any]]:
    import onnx

    progress.update(0.2, "Inferring shapes")
    proto = model.native
    try:
        proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
        inference = "ok"
    except Exception as exc:  # a model with unknown ops can still be inspected without shapes
        inference = f"failed: {exc}"
    progress.update(0.6, "Reading the graph")
    graph = from_onnx(proto)
    # Weights stored as Constant nodes (Paddle exports do this) count as parameters too.
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.output:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                graph.tensors[node.output[0]] = Tensor(
                    node.output[0],
                    tuple(int(d) for d in value.dims),
                    onnx.helper.tensor_dtype_to_np_dtype(value.data_type).name,
                    constant=True,
                )
    custom = sorted(
        {
            (n.domain or "ai.onnx", n.op_type)
            for n in proto.graph.node
            if not _known_op(n.op_type, n.domain or "")
        }
    )
    return graph, {
        "shape_inference": inference,
        "ir_version": model.metadata.get("ir_version"),
        "opsets": model.metadata.get("opsets"),
        "custom_ops": [f"{d}::{op}" for d, op in custom],
    }


def _known_op(op_type: str, domain: str) -> bool:
    """ONNX's schema registry knows the op (an op name that is not valid text, as a damaged file
    can hold, is not known: onnx.defs.has raises TypeError for it, found by fuzzing)."""
    import onnx

    try:
        return onnx.defs.has(op_type, domain)
    except (TypeError, ValueError):
        return False


def inspect_model(
    model: Model,
    include_graph: bool = True,
    progress: Progress | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything Dockyard can tell about `model` without running it. `details`: what a
    framework-free reader already found (`summary_without_framework`)."""
    progress = progress or null_progress()
    started = time.perf_counter()
    graph: Graph | None = None
    found: dict[str, Any] = dict(details or {})
    try:
        if details is not None:
            pass
        elif model.format == "onnx":
            graph, found = _onnx_details(model, progress)
        elif model.format == "tflite":
            graph = from_tflite(model.native)
        else:
            found["op_histogram"] = native_histogram(model)
            found["parameters_by_dtype"] = native_parameters_by_dtype(model)
            found["parameter_bytes"] = sum(
                v["bytes"] for v in found["parameters_by_dtype"].values()
            )
    except DockyardError:
        raise
    except Exception as exc:  # a damaged graph that loaded: its file's fault, not a crash
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise FormatError(
            f"{model.path}: its graph cannot be read ({type(exc).__name__}: {first}); the file "
            "may be damaged. Re-export or re-download it."
        ) from exc
    progress.update(0.8, "Summarising")
    result: dict[str, Any] = {"model": model.summary(), **found}
    if graph is not None:
        macs = estimate_macs(graph)
        by_dtype = _parameters_by_dtype(graph)
        result.update(
            op_histogram=dict(Counter(n.op_type for n in graph.nodes).most_common()),
            node_count=len(graph.nodes),
            parameters_by_dtype=by_dtype,
            parameter_bytes=sum(v["bytes"] for v in by_dtype.values()),
            macs_per_sample=sum(macs.values()),
            flops_per_sample=2 * sum(macs.values()),
            macs_by_op=macs,
        )
        if include_graph:
            result["graph"] = graph.to_dict()
    result["seconds"] = round(time.perf_counter() - started, 3)
    progress.update(1.0, "Inspected")
    return result


def native_histogram(model: Model) -> dict[str, int]:
    """Op or layer types counted in the framework's own graph (formats without a uniform graph)."""
    native = model.native
    counts: Counter[str] = Counter()
    if model.format == "keras":
        counts.update(type(layer).__name__ for layer in native.layers)
    elif model.format == "torchscript":
        counts.update(n.kind() for n in native.inlined_graph.nodes())
    elif model.format == "exported_program":
        counts.update(str(n.target) for n in native.graph.nodes if n.op == "call_function")
    elif model.format == "pytorch_eager":
        counts.update(type(m).__name__ for m in native.modules() if not list(m.children()))
    elif model.format == "sklearn":  # a pipeline's steps, or the estimator itself
        steps = getattr(native, "steps", None) or [(None, native)]
        counts.update(type(step).__name__ for _, step in steps)
    elif model.format == "savedmodel":
        from workflows.formats.savedmodel import V1Graph, signature

        if isinstance(native, V1Graph):  # the whole loaded graph (the v1 loader's)
            counts.update(op.type for op in native.graph.get_operations())
        else:
            fn = signature(native, model.path, model.metadata.get("signature", "serving_default"))
            counts.update(op.type for op in fn.graph.get_operations())
    return dict(counts.most_common())


def native_parameters_by_dtype(model: Model) -> dict[str, dict[str, int]]:
    """Weight values and bytes by dtype, read from the framework's own weights."""
    import numpy as np

    arrays: list[tuple[str, int, int]] = []  # (dtype, count, itemsize)
    native = model.native
    if model.framework == "pytorch":
        tensors = (
            native.state_dict.values()
            if model.format == "exported_program"
            else native.state_dict().values()
        )
        arrays = [
            (str(t.dtype).removeprefix("torch."), t.numel(), t.element_size()) for t in tensors
        ]
    elif model.format == "keras":
        arrays = [
            (w.dtype, int(np.prod(w.shape)), np.dtype(w.dtype).itemsize) for w in native.weights
        ]
    elif model.format == "savedmodel":
        seen = {id(v): v for v in getattr(native, "variables", [])}.values()
        dtypes = [getattr(v.dtype, "base_dtype", v.dtype) for v in seen]  # v1: float32_ref
        arrays = [
            (d.name, int(v.shape.num_elements() or 0), d.size)
            for v, d in zip(seen, dtypes, strict=True)
        ]
    by_dtype: dict[str, dict[str, int]] = {}
    for dtype, count, itemsize in arrays:
        entry = by_dtype.setdefault(dtype, {"count": 0, "bytes": 0})
        entry["count"] += count
        entry["bytes"] += count * itemsize
    return by_dtype


def summary_without_framework(opts: LoadOptions) -> tuple[Model, dict[str, Any]] | None:
    """A torch.export .pt2 described from its JSON, without importing torch (2-4 s on 2 cores
    for the sample), when the archive holds nothing but what that reader knows; else None."""
    from pathlib import Path

    from workflows.formats import detect, pt2_summary

    if opts.format not in (None, "exported_program"):
        return None
    try:
        if detect(Path(opts.path)).NAME != "exported_program":
            return None
    except DockyardError:
        return None  # load() says what is wrong with the file
    return pt2_summary.summarize(Path(opts.path))


def run(options: InspectOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point: load and inspect."""
    opts = from_dict(InspectOptions, options)
    progress.update(0.05, f"Loading {opts.model.path}")
    read = summary_without_framework(opts.model)
    model, details = read if read else (opts.model.load(), None)
    return inspect_model(model, opts.include_graph, progress.scaled(0.1, 1.0), details)
