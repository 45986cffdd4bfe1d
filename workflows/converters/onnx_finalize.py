"""After any converter: rename the batch dim, check, infer shapes, optionally simplify, save one file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.errors import ConversionError
from workflows.formats.onnx_format import default_opset
from workflows.progress import Progress

TWO_GB = 2**31
# Node metadata kept in the final model: the PyTorch module each node came from (the graph
# view groups nodes by it; PyTorch's exporter names nodes without scopes). Dropped: the rest,
# stack traces included, which carry the converting machine's file paths into a deployable file.
KEPT_NODE_METADATA = ("pkg.torch.onnx.name_scopes",)


def _kept_node_metadata(proto: Any) -> dict[str, list[tuple[str, str]]]:
    return {n.name: kept for n in proto.graph.node
            if (kept := [(p.key, p.value) for p in n.metadata_props
                         if p.key in KEPT_NODE_METADATA])}  # fmt: skip


def _restore_node_metadata(proto: Any, kept: dict[str, list[tuple[str, str]]]) -> None:
    """Only the kept entries, on every node that still has its name (onnxslim drops them all)."""
    for node in proto.graph.node:
        del node.metadata_props[:]
        for key, value in kept.get(node.name, ()):
            node.metadata_props.add(key=key, value=value)


def _rename_batch_dims(proto: Any) -> None:
    """Exporters name the dynamic batch `s77`, `unk__12`, `N`...; call it `batch` everywhere.

    Called only for models whose source declared a dynamic batch: then the symbolic first dim of
    every graph input and output is that batch, even where a converter (tf2onnx) gave the outputs
    a symbol of their own because it could not prove them equal.
    """
    old = set()
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_param"):
            old.add(dims[0].dim_param)
    for value in list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") and dim.dim_param in old:
                dim.dim_param = "batch"


def finalize(
    raw: Path, out: Path, simplify: bool, progress: Progress, dynamic_batch: bool = True
) -> dict[str, Any]:
    """Turn a converter's raw output into the final model at `out`; returns what was done."""
    import onnx

    proto = onnx.load(str(raw), load_external_data=True)
    nodes_before = len(proto.graph.node)
    node_metadata = _kept_node_metadata(proto)
    if dynamic_batch:
        _rename_batch_dims(proto)
    progress.update(0.2, "Checking the ONNX model")
    large = proto.ByteSize() > TWO_GB
    try:
        # The checker reads a >2 GB model from its path only; such a model is checked after saving.
        if not large:
            onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the converted model fails the ONNX checker: {exc}") from exc
    simplified = False
    if simplify:
        progress.update(0.4, "Simplifying the graph (onnxslim)")
        import onnxslim

        try:
            proto = onnxslim.slim(proto)
            simplified = True
        except Exception as exc:  # onnxslim is best effort: keep the unsimplified model
            progress.update(0.5, f"Simplification skipped: {exc}")
    _restore_node_metadata(proto, node_metadata)
    progress.update(0.7, "Inferring shapes")
    shape_inference = "skipped (model over 2 GB)" if large else "ok"
    if not large:
        try:
            proto = onnx.shape_inference.infer_shapes(proto, check_type=True, data_prop=True)
        except Exception as exc:  # keep the model; intermediate shapes are a convenience
            shape_inference = f"failed: {exc}"
    progress.update(0.85, "Writing the model")
    if large:
        onnx.save_model(
            proto,
            str(out),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=out.name + ".data",
        )
    else:
        onnx.save_model(proto, str(out))
    if large:
        onnx.checker.check_model(str(out))
    return {
        "shape_inference": shape_inference,
        "nodes_before": nodes_before,
        "nodes_after": len(proto.graph.node),
        "simplified": simplified,
        "external_data": large,
        "opset": default_opset(proto),
    }
