"""TFLite / LiteRT flatbuffers (magic "TFL3" at byte 4), run with ai_edge_litert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workflows.errors import FormatError
from workflows.formats._sniff import head
from workflows.model import Dim, Model, TensorSpec, path_size

NAME = "tflite"
FRAMEWORK = "tflite"


def match(path: Path) -> bool:
    return path.is_file() and head(path, 8)[4:8] == b"TFL3"


def why_not(path: Path) -> str:
    return "no TFL3 flatbuffer identifier at byte 4"


def check_structure(path: Path) -> None:
    """FormatError unless every index in the flatbuffer points inside the model.

    LiteRT's own verifier checks the flatbuffer's layout but not what its indices refer to: a
    damaged file whose tensor names buffer 1,000,000, or whose operator names opcode 300, passes
    it and then crashes the process (SIGSEGV) in allocate_tensors (found by fuzzing). These are
    the checks Netron's reader makes before it draws such a file.
    """
    from ai_edge_litert import schema_py_generated as schema

    data = path.read_bytes()
    try:
        model = schema.Model.GetRootAs(data, 0)
        buffers, opcodes = model.BuffersLength(), model.OperatorCodesLength()
        problems = []
        for b in range(buffers):
            buffer = model.Buffers(b)
            if (
                buffer is not None
                and buffer.Offset() > 1
                and (buffer.Offset() + buffer.Size() > len(data))
            ):
                problems.append(f"buffer {b} lies beyond the end of the file")
        for c in range(opcodes):
            # Writers store small op codes twice (builtin_code and the deprecated int8 field,
            # which is 127 for codes over 126; files older than builtin_code leave it 0);
            # LiteRT runs the larger of the two, so a damaged copy turns a CONV_2D into another
            # op fed Conv2D's options: a SIGSEGV, found by fuzzing.
            code = model.OperatorCodes(c)
            builtin, deprecated = code.BuiltinCode(), code.DeprecatedBuiltinCode()
            if builtin != 0 and deprecated != min(builtin, 127):
                problems.append(f"operator code {c} is inconsistent ({builtin} / {deprecated})")
        subgraphs = model.SubgraphsLength()
        if subgraphs < 1:
            problems.append("it has no subgraph")
        for g in range(subgraphs):
            graph = model.Subgraphs(g)
            tensors = graph.TensorsLength()
            for t in range(tensors):
                tensor = graph.Tensors(t)
                if not 0 <= tensor.Buffer() < max(buffers, 1):
                    problems.append(f"tensor {t} refers to buffer {tensor.Buffer()} of {buffers}")
                if any(d < -1 for d in tensor.ShapeAsNumpy() if tensor.ShapeLength()):
                    problems.append(f"tensor {t} has a negative dimension")
            for o in range(graph.OperatorsLength()):
                op = graph.Operators(o)
                if not 0 <= op.OpcodeIndex() < opcodes:
                    problems.append(
                        f"operator {o} refers to opcode {op.OpcodeIndex()} of {opcodes}"
                    )
                used = (
                    [*op.InputsAsNumpy().tolist(), *op.OutputsAsNumpy().tolist()]
                    if (op.InputsLength() or op.OutputsLength())
                    else []
                )
                if any(not -1 <= i < tensors for i in used):
                    problems.append(f"operator {o} refers to a tensor outside 0..{tensors - 1}")
            ends = (
                [*graph.InputsAsNumpy().tolist(), *graph.OutputsAsNumpy().tolist()]
                if (graph.InputsLength() or graph.OutputsLength())
                else []
            )
            if any(not 0 <= i < tensors for i in ends):
                problems.append(f"subgraph {g}'s inputs or outputs are outside 0..{tensors - 1}")
            if len(problems) > 3:
                break
    except Exception as exc:  # the accessors read past the buffer: not a TFLite model
        raise FormatError(
            f"{path}: not a readable TFLite flatbuffer ({type(exc).__name__})"
        ) from exc
    if problems:
        raise FormatError(
            f"{path}: a damaged TFLite model: {'; '.join(problems[:3])}. Re-export or re-download it."
        )
    _check_memory(path, model, schema)


# Bytes per element of each TFLite TensorType (schema.fbs order); 8 for types not listed.
_ITEMSIZE = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: 1, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8,
             15: 4, 16: 2, 17: 1, 18: 2}  # fmt: skip


# Measured: the stored shapes are a floor. Loading resizes computed tensors from the inputs,
# XNNPACK packs its own copies, and inspecting runs the model on inputs made for it: a damaged
# input shape of 1.6 GB peaked at 12 GB. Refusing below 4x keeps such a file from an OOM kill.
LOAD_FACTOR = 4


def _check_memory(path: Path, model: Any, schema: Any) -> None:
    """FormatError when the tensors LiteRT allocates up front need more memory than is free.

    allocate_tensors reserves every computed tensor at its stored shape (XNNPACK keeps it): one
    damaged dimension (a batch of 16,711,681 in an 8x8 model, found by fuzzing) made it take
    17 GB and 25 s, and an out-of-memory kill is all a smaller machine would say."""
    from workflows.machine import available_memory

    need = 0
    largest = (0, "", [], 0)
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            buffer = model.Buffers(tensor.Buffer())
            if buffer is not None and (buffer.DataLength() or buffer.Offset() > 1):
                continue  # constant data: already in the file, mapped rather than allocated
            shape = tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []
            size = _ITEMSIZE.get(tensor.Type(), 8)
            for d in shape:
                size *= max(int(d), 1)
            need += size
            if size > largest[0]:
                largest = (size, (tensor.Name() or b"?").decode("utf-8", "replace"), shape, t)
    free = available_memory()
    if need * LOAD_FACTOR > free:
        size, name, shape, index = largest
        raise FormatError(
            f"{path}: its tensors need {need / 2**30:.1f} GiB (about {LOAD_FACTOR}x that to load "
            f"and run it), more than the {free / 2**30:.1f} GiB free here (the largest, tensor "
            f"{index} {name!r}, has shape {shape}: {size / 2**30:.1f} GiB). A dimension this "
            "large usually means a damaged file; otherwise run it on a machine with more memory."
        )


def interpreter(path: Path, threads: int | None = None) -> Any:
    """A LiteRT interpreter with tensors allocated; FormatError for an unreadable file."""
    from ai_edge_litert.interpreter import Interpreter

    check_structure(path)
    try:
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise FormatError(f"{path}: LiteRT cannot load this model: {exc}") from exc
    return interp


def _spec(detail: dict[str, Any]) -> TensorSpec:
    sig = detail.get("shape_signature")
    sig = sig if sig is not None and len(sig) else detail["shape"]
    dims: tuple[Dim, ...] = tuple(
        ("batch" if i == 0 else None) if int(d) < 0 else int(d) for i, d in enumerate(sig)
    )
    return TensorSpec(detail["name"], dims, np.dtype(detail["dtype"]).name)


def ops_details(interp: Any) -> list[dict[str, Any]]:
    """The model's own ops (without the DELEGATE pseudo-ops XNNPACK adds at allocation)."""
    return [op for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]


def constant_elements(interp: Any) -> int:
    """Elements of weight tensors: constants no op produces, not shape/axis (int32/int64) tensors."""
    ops = ops_details(interp)
    produced = {t for op in ops for t in op["outputs"]}
    consumed = {t for op in ops for t in op["inputs"] if t >= 0}
    inputs = {d["index"] for d in interp.get_input_details()}
    total = 0
    for d in interp.get_tensor_details():
        i = d["index"]
        index_like = np.dtype(d["dtype"]) in (np.int32, np.int64)
        if i in consumed and i not in produced and i not in inputs and not index_like:
            total += int(np.prod(d["shape"])) if len(d["shape"]) else 1
    return total


def load(path: Path, **_: Any) -> Model:
    """Read the model's signature and weights count through the LiteRT interpreter."""
    interp = interpreter(path)
    ops = ops_details(interp)
    return Model(
        format=NAME,
        framework=FRAMEWORK,
        path=path,
        inputs=[_spec(d) for d in interp.get_input_details()],
        outputs=[_spec(d) for d in interp.get_output_details()],
        size_bytes=path_size(path),
        parameters=constant_elements(interp),
        producer="tflite",
        metadata={"ops": len(ops), "signatures": list(interp.get_signature_list())},
        native=interp,
    )


def session(model: Model, threads: int | None = None):
    """Run the model in LiteRT, resizing dynamic inputs to the feed's shape."""
    interp = interpreter(model.path, threads)
    in_details = interp.get_input_details()
    allocated: dict[int, tuple[int, ...]] = {d["index"]: tuple(d["shape"]) for d in in_details}

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        resized = False
        for d in in_details:
            arr = feeds[d["name"]]
            if tuple(arr.shape) != allocated[d["index"]]:
                interp.resize_tensor_input(d["index"], list(arr.shape), strict=True)
                allocated[d["index"]] = tuple(arr.shape)
                resized = True
        if resized:
            interp.allocate_tensors()
        for d in in_details:
            interp.set_tensor(d["index"], np.ascontiguousarray(feeds[d["name"]], dtype=d["dtype"]))
        interp.invoke()
        return [interp.get_tensor(d["index"]).copy() for d in interp.get_output_details()]

    return run
