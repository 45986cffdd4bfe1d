"""What a torch.export .pt2 archive holds, read without PyTorch: its inputs, outputs, weights
and ops, from the archive's JSON (the serialized program of torch/_export/serde/schema.py and
its weights' payload config).

Why by hand: inspecting the sample through `torch.export.load` imports torch, dynamo and sympy
(2-4 s on 2 cores) to read a 17 KB JSON file, and there is no torch-free reader of the format.
Only what this module recognises is read: an archive with anything else (another schema
version, a symbolic size other than a plain symbol, a non-tensor input, a pickle whose globals
go beyond a tensor's) gets None, and the caller loads it with torch as before - which also
keeps the authoritative safety check (`exported_program.code_in_archive`) there.
"""

from __future__ import annotations

import json
import pickletools
import re
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

from workflows.model import Dim, Model, TensorSpec, path_size

SCHEMA_MAJOR = 8  # torch 2.13's serializer
# torch/_export/serde/schema.py ScalarType -> (torch's dtype name, bytes per element)
SCALAR_TYPES: dict[int, tuple[str, int]] = {
    1: ("uint8", 1), 2: ("int8", 1), 3: ("int16", 2), 4: ("int32", 4), 5: ("int64", 8),
    6: ("float16", 2), 7: ("float32", 4), 8: ("float64", 8), 9: ("complex32", 4),
    10: ("complex64", 8), 11: ("complex128", 16), 12: ("bool", 1), 13: ("bfloat16", 2),
    28: ("uint16", 2), 29: ("float8_e4m3fn", 1), 30: ("float8_e5m2", 1),
    31: ("float8_e4m3fnuz", 1), 32: ("float8_e5m2fnuz", 1), 33: ("float8_e8m0fnu", 1),
    34: ("uint32", 4), 35: ("uint64", 8),
}  # fmt: skip
# What a pickle of plain tensors (torch.save of a tuple of tensors) refers to: anything else
# leaves the archive to torch's own check.
TENSOR_GLOBALS = re.compile(
    r"^(torch\._utils _rebuild_tensor_v2|torch \w+Storage|collections OrderedDict"
    r"|torch\._utils _rebuild_parameter|torch\._tensor _rebuild_from_type_v2|torch Size"
    r"|torch device|builtins (set|frozenset|tuple|list|dict))$"
)
SYMBOL = re.compile(r"^(?:Symbol\('(\w+)'.*\)|(\w+))$")


class Unrecognised(Exception):
    """Something this reader does not know: the caller loads the archive with torch."""


def summarize(path: Path) -> tuple[Model, dict[str, Any]] | None:
    """(the Model, with no framework object, and the inspect step's details: op_histogram,
    parameters_by_dtype) of a .pt2, or None when only torch can tell (see module doc)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return _summarize(path, archive)
    except Exception:  # Unrecognised, or a damaged archive: torch's loader says what is wrong
        return None


def _summarize(path: Path, archive: zipfile.ZipFile) -> tuple[Model, dict[str, Any]]:
    names = archive.namelist()
    program_file = _one(n for n in names if n.endswith("/models/model.json"))
    root = program_file[: -len("models/model.json")]
    program = json.loads(archive.read(program_file))
    if program["schema_version"]["major"] != SCHEMA_MAJOR:
        raise Unrecognised("schema version")
    weights = _config(archive, names, root + "data/weights/model_weights_config.json")
    constants = _config(archive, names, root + "data/constants/model_constants_config.json")
    _check_pickles(archive, names, root, {**weights, **constants})

    graph = program["graph_module"]["graph"]
    signature = program["graph_module"]["signature"]
    values = graph["tensor_values"]
    inputs = [_spec(spec["user_input"]["arg"], values)
              for spec in signature["input_specs"] if "user_input" in spec]  # fmt: skip
    outputs = [_spec(spec["user_output"]["arg"], values)
               for spec in signature["output_specs"] if "user_output" in spec]  # fmt: skip
    by_dtype: dict[str, dict[str, int]] = {}
    for meta in weights.values():
        dtype, itemsize = SCALAR_TYPES[meta["tensor_meta"]["dtype"]]
        count = 1
        for size in meta["tensor_meta"]["sizes"]:
            count *= int(size["as_int"])  # a weight with a symbolic size: Unrecognised (KeyError)
        entry = by_dtype.setdefault(dtype, {"count": 0, "bytes": 0})
        entry["count"] += count
        entry["bytes"] += count * itemsize
    ops = Counter(str(n["target"]).removeprefix("torch.ops.") for n in graph["nodes"])
    model = Model(
        format="exported_program",
        framework="pytorch",
        path=path,
        inputs=inputs,
        outputs=outputs,
        size_bytes=path_size(path),
        parameters=sum(v["count"] for v in by_dtype.values()),
        producer=f"torch {program['torch_version']}",
        metadata={"range_constraints": {str(k): f"VR[{_bound(v['min_val'], '-')}, "
                                                 f"{_bound(v['max_val'], '')}]"
                                        for k, v in program["range_constraints"].items()}},
    )  # fmt: skip
    details = {
        "op_histogram": dict(ops.most_common()),
        "parameters_by_dtype": by_dtype,
        "parameter_bytes": sum(v["bytes"] for v in by_dtype.values()),
    }
    return model, details


def _one(found: Any) -> str:
    found = list(found)
    if len(found) != 1:
        raise Unrecognised(f"{len(found)} programs")
    return found[0]


def _config(archive: zipfile.ZipFile, names: list[str], member: str) -> dict[str, Any]:
    return json.loads(archive.read(member))["config"] if member in names else {}


def _check_pickles(
    archive: zipfile.ZipFile, names: list[str], root: str, payloads: dict[str, Any]
) -> None:
    """Unrecognised unless every pickle torch.export.load would read holds plain tensors."""
    pickled = [m for m in names if m.startswith(root + "data/sample_inputs/")]
    pickled += [m for m in names if m.endswith(".pt") and "/data/" in m and m not in pickled]
    for meta in payloads.values():  # raw tensor bytes: weight_N, tensor_N (custom_obj_N: pickles)
        if meta.get("use_pickle") or not str(meta["path_name"]).startswith(("weight_", "tensor_")):
            raise Unrecognised("a pickled payload")
    for member in pickled:
        for pickle_bytes in _pickles_in(archive.read(member)):
            _check_globals(pickle_bytes)


def _pickles_in(data: bytes) -> list[bytes]:
    """The pickles of a torch.save file (a zip with data.pkl), or the file as one pickle."""
    import io

    if data[:4] != b"PK\x03\x04":
        return [data]
    with zipfile.ZipFile(io.BytesIO(data)) as inner:
        return [inner.read(n) for n in inner.namelist() if n.endswith(".pkl")]


def _check_globals(data: bytes) -> None:
    for op, arg, _ in pickletools.genops(data):  # reads opcodes; runs nothing
        if op.name in ("STACK_GLOBAL", "INST", "OBJ"):
            raise Unrecognised(f"pickle opcode {op.name}")
        if op.name == "GLOBAL" and not TENSOR_GLOBALS.match(str(arg)):
            raise Unrecognised(f"pickle global {arg}")


def _spec(arg: dict[str, Any], values: dict[str, Any]) -> TensorSpec:
    name = arg["as_tensor"]["name"]  # a non-tensor input or output: Unrecognised (KeyError)
    meta = values[name]
    return TensorSpec(name, tuple(_dim(d) for d in meta["sizes"]), SCALAR_TYPES[meta["dtype"]][0])


def _dim(size: dict[str, Any]) -> Dim:
    if "as_int" in size:
        return int(size["as_int"])
    found = SYMBOL.match(size["as_expr"]["expr_str"])
    if not found:  # an expression (2*s77): torch prints it its own way
        raise Unrecognised("symbolic expression")
    return found.group(1) or found.group(2)


def _bound(value: Any, sign: str) -> str:
    return f"{sign}int_oo" if value is None else str(int(value))
