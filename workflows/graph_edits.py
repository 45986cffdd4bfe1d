"""Small, safe edits of an ONNX graph that deployment needs (issue 16, item 4): cut the graph at
chosen outputs (dropping an output is a cut at the others), set or free an input dimension,
rename inputs and outputs. Each works on a ModelProto in place or returns a new one; the edit
step (workflows.steps.edit) checks and runs the result against the original."""

from __future__ import annotations

import difflib
from typing import Any

from workflows.errors import DataError


def _near(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def io_names(proto: Any) -> tuple[list[str], list[str]]:
    """The graph's real inputs (initializers listed as inputs left out) and its outputs."""
    constants = {t.name for t in proto.graph.initializer}
    inputs = [i.name for i in proto.graph.input if i.name not in constants]
    return inputs, [o.name for o in proto.graph.output]


def cut(proto: Any, outputs: list[str]) -> tuple[Any, list[str]]:
    """The part of the graph that computes `outputs` (any tensors of it, in that order): nodes
    nothing kept reads are dropped, and inputs nothing kept reads too. Returns the new model
    and the inputs it dropped. ONNX's own `onnx.utils.Extractor` does the slicing."""
    import onnx
    from onnx.utils import Extractor

    if not outputs:
        raise DataError("cut: give at least one output to keep")
    inferred = onnx.shape_inference.infer_shapes(proto)
    produced = {t for n in proto.graph.node for t in n.output if t}
    inputs, _ = io_names(proto)
    known = sorted(produced | set(inputs))
    for name in outputs:
        if name not in known:
            raise DataError(f"cut: the model has no tensor named {name!r}{_near(name, known)}")
    typed = {v.name for v in [*inferred.graph.value_info, *inferred.graph.output,
                              *inferred.graph.input]}  # fmt: skip
    untyped = [n for n in outputs if n not in typed]
    if untyped:
        raise DataError(
            f"cut: ONNX shape inference cannot tell the type of {', '.join(untyped)}, so it "
            "cannot become an output; cut at a tensor nearer the inputs"
        )
    edited = Extractor(inferred).extract_model(inputs, list(outputs))
    read = {t for n in edited.graph.node for t in n.input} | set(outputs)
    read |= _outer_scope_reads(edited)
    dropped = [i.name for i in edited.graph.input if i.name not in read]
    kept = [i for i in edited.graph.input if i.name in read]
    del edited.graph.input[:]
    edited.graph.input.extend(kept)
    del edited.graph.value_info[:]  # inferred for the whole graph: stale names and shapes
    edited.ir_version = proto.ir_version
    del edited.metadata_props[:]
    edited.metadata_props.extend(proto.metadata_props)
    return edited, dropped


def _outer_scope_reads(proto: Any) -> set[str]:
    """Tensors the bodies of If/Loop/Scan nodes read from the graph around them."""
    reads: set[str] = set()

    def walk(graph: Any) -> None:
        for n in graph.node:
            for a in n.attribute:
                for g in [a.g] if a.HasField("g") else list(a.graphs):
                    reads.update(t for m in g.node for t in m.input)
                    walk(g)

    walk(proto.graph)
    return reads


def parse_dim(key: str, inputs: list[str]) -> tuple[str, int]:
    """ "x:0" -> ("x", 0); a clear error for a malformed key or an unknown input."""
    name, sep, axis = key.rpartition(":")
    if not sep or not axis.lstrip("-").isdigit():
        raise DataError(f"dims: {key!r} should be INPUT:AXIS, e.g. x:0 for the batch of input x")
    if name not in inputs:
        raise DataError(f"dims: the model has no input {name!r}{_near(name, inputs)}; "
                        f"inputs: {', '.join(inputs)}")  # fmt: skip
    return name, int(axis)


def set_dims(proto: Any, dims: dict[str, int | str]) -> list[str]:
    """Set input dimensions: a number fixes one (batch 1), a name frees it ("batch"). Output
    and intermediate shapes are inferred again. Returns what changed, for the report."""
    import onnx

    inputs, _ = io_names(proto)
    by_name = {i.name: i for i in proto.graph.input}
    changes = []
    for key, value in dims.items():
        name, axis = parse_dim(key, inputs)
        shape = by_name[name].type.tensor_type.shape
        if not -len(shape.dim) <= axis < len(shape.dim):
            raise DataError(f"dims: input {name} has {len(shape.dim)} dimensions; no axis {axis}")
        if (isinstance(value, int) and value < 1) or (isinstance(value, str) and not value):
            raise DataError(f"dims: {key} = {value!r}: give a size >= 1 or a name to free it")
        d = shape.dim[axis]
        before = str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?")
        if isinstance(value, int):
            d.dim_value = value
        else:
            d.dim_param = value
        changes.append(f"{key}: {before} -> {value}")
    # Shapes downstream follow from the inputs: infer them again rather than keep stale ones.
    del proto.graph.value_info[:]
    for o in proto.graph.output:
        o.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(proto)
    shapes = {o.name: o.type for o in inferred.graph.output}
    for o in proto.graph.output:
        if shapes[o.name].tensor_type.HasField("shape"):
            o.type.CopyFrom(shapes[o.name])
    return changes


def rename(proto: Any, mapping: dict[str, str]) -> list[str]:
    """Rename graph inputs and outputs (old -> new) everywhere they are read or written,
    subgraphs included. Returns what changed, for the report."""
    inputs, outputs = io_names(proto)
    every = {t for n in proto.graph.node for t in [*n.input, *n.output]} | set(inputs)
    every |= {t.name for t in proto.graph.initializer}
    for old, new in mapping.items():
        if old not in inputs and old not in outputs:
            raise DataError(f"rename: {old!r} is not an input or output of the model"
                            f"{_near(old, inputs + outputs)}; inputs: {', '.join(inputs)}; "
                            f"outputs: {', '.join(outputs)}")  # fmt: skip
        if not new or (new in every and new not in mapping):
            raise DataError(f"rename: {old} -> {new!r}: the model already has a tensor of that "
                            "name" if new else f"rename: {old}: give a new name")  # fmt: skip
    news = list(mapping.values())
    if len(set(news)) != len(news):
        raise DataError("rename: two tensors cannot take the same name")

    def swap(names: Any) -> None:
        for i, t in enumerate(names):
            if t in mapping:
                names[i] = mapping[t]

    def walk(graph: Any) -> None:
        for n in graph.node:
            swap(n.input)
            swap(n.output)
            for a in n.attribute:
                for g in [a.g] if a.HasField("g") else list(a.graphs):
                    walk(g)
        for v in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
            if v.name in mapping:
                v.name = mapping[v.name]

    walk(proto.graph)
    return [f"{old} -> {new}" for old, new in mapping.items()]
