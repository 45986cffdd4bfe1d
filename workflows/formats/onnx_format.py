"""ONNX (.onnx, with or without external data)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from workflows.errors import FormatError, RuntimeLoadError
from workflows.formats._sniff import head
from workflows.model import Dim, Model, TensorSpec, path_size

NAME = "onnx"
FRAMEWORK = "onnx"
SUFFIXES = (".onnx",)


def _looks_like_model_proto(data: bytes) -> bool:
    # ModelProto starts with field 1 (ir_version, varint 3..12) in every exporter we know of,
    # followed by producer_name (field 2), opset_import (8) or graph (7).
    return (
        len(data) >= 3
        and data[0] == 0x08
        and 3 <= data[1] <= 15
        and data[2]
        in (
            0x12,
            0x1A,
            0x22,
            0x2A,
            0x3A,
            0x42,
        )
    )


def match(path: Path) -> bool:
    return path.is_file() and (
        path.suffix.lower() in SUFFIXES or _looks_like_model_proto(head(path))
    )


def why_not(path: Path) -> str:
    return "not a file with an ONNX ModelProto header"


def _dims(type_proto: Any) -> tuple[Dim, ...] | None:
    tensor = type_proto.tensor_type
    if not tensor.HasField("shape"):
        return None
    dims: list[Dim] = []
    for d in tensor.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def _dtype(type_proto: Any) -> str:
    import onnx

    elem = type_proto.tensor_type.elem_type
    if not elem:
        return "unknown"
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name


def value_specs(values: Any, exclude: set[str] | None = None) -> list[TensorSpec]:
    """TensorSpecs of graph inputs/outputs (ValueInfoProto), skipping names in `exclude`."""
    exclude = exclude or set()
    return [
        TensorSpec(v.name, _dims(v.type), _dtype(v.type)) for v in values if v.name not in exclude
    ]


def parameter_count(graph: Any) -> int:
    """Elements in initializers plus Constant nodes (some exporters store weights as Constants),
    in the graph and in its control-flow subgraphs (If/Loop/Scan bodies hold weights too: all of
    silero-vad's are inside an If)."""
    total = sum(int(np.prod(t.dims)) for t in graph.initializer)
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Constant" and attr.name == "value":
                total += int(np.prod(attr.t.dims))
            if attr.HasField("g"):
                total += parameter_count(attr.g)
            for sub in attr.graphs:
                total += parameter_count(sub)
    return total


def read_proto(path: Path, load_external_data: bool = True) -> Any:
    """Parse an ONNX file into a ModelProto; FormatError naming the file and the fault."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(path), load_external_data=load_external_data)
    except DecodeError as exc:
        raise FormatError(
            f"{path}: not a readable ONNX file ({exc}); it may be truncated or not ONNX at all. "
            "Re-export or re-download it."
        ) from exc
    except FileNotFoundError as exc:
        raise FormatError(
            f"{path}: the model refers to external weights that are missing ({exc.filename}); "
            "keep the .onnx file and its .data file(s) in the same folder."
        ) from exc
    except Exception as exc:  # onnx raises plain exceptions for many malformed inputs
        raise FormatError(f"{path}: cannot read as ONNX: {exc}") from exc
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.graph.output:
        raise FormatError(
            f"{path}: parsed as protobuf but is not an ONNX model (no graph or outputs); "
            "it may be corrupt or another kind of file with an .onnx name."
        )
    return proto


def default_opset(proto: Any) -> int | None:
    """The model's opset of the default (ai.onnx) domain."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def load(path: Path, **_: Any) -> Model:
    """Read an ONNX model (external data included) and describe its signature."""
    proto = read_proto(path)
    graph = proto.graph
    init_names = {t.name for t in graph.initializer}
    opsets = {op.domain or "ai.onnx": int(op.version) for op in proto.opset_import}
    producer = " ".join(x for x in (proto.producer_name, proto.producer_version) if x) or None
    return Model(
        format=NAME,
        framework=FRAMEWORK,
        path=path,
        inputs=value_specs(graph.input, exclude=init_names),
        outputs=value_specs(graph.output),
        size_bytes=onnx_size(path),
        parameters=parameter_count(graph),
        producer=producer,
        metadata={
            "ir_version": int(proto.ir_version),
            "opsets": opsets,
            "graph_name": graph.name,
            "metadata_props": {p.key: p.value for p in proto.metadata_props},
        },
        native=proto,
    )


def onnx_files(path: Path) -> list[Path]:
    """An ONNX model file and the external-data files it references (relative to its folder)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    proto = onnx.load(str(path), load_external_data=False)
    locations = {
        ExternalDataInfo(t).location for t in _get_all_tensors(proto) if uses_external_data(t)
    }
    return [path, *(path.parent / loc for loc in sorted(locations))]


def copy_onnx(source: Path, folder: Path, name: str = "model.onnx") -> list[Path]:
    """Copy an ONNX model into `folder` as `name`, with its external data under the names the
    model references (a renamed .onnx still finds them); returns the files written."""
    model, *data = onnx_files(source)
    written = [folder / name]
    shutil.copyfile(model, written[0])
    for f in data:
        target = folder / f.relative_to(source.parent)
        if not f.is_file():
            raise FormatError(f"{source}: its external data file {f.name} is missing")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
        written.append(target)
    return written


def onnx_size(path: Path) -> int:
    """Size of the .onnx file plus the external-data files it references."""
    return sum(path_size(f) for f in onnx_files(path) if f.is_file())


def ort_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session; RuntimeLoadError explaining what ORT could not run."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NotImplemented types
        text = str(exc)
        hint = ""
        if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
            hint = (
                " ONNX Runtime has no kernel for an operator at this opset/type; try another opset."
            )
        elif "No Op registered" in text or "is not a registered function/op" in text:
            hint = (
                " The model uses an operator ONNX Runtime does not know (a custom op?); "
                "register its custom-op library or convert without it."
            )
        raise RuntimeLoadError(
            f"{path}: ONNX Runtime cannot load the model: {text.strip()}.{hint}"
        ) from exc


def session(
    model: Model, threads: int | None = None
) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """A callable running the model in ONNX Runtime: feeds by input name -> outputs in order."""
    sess = ort_session(model.path, threads)

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o) for o in sess.run(None, feeds)]

    return run
