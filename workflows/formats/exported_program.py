"""torch.export programs saved with torch.export.save (.pt2 archives with models/*.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.errors import FormatError, UnsafeModelError
from workflows.formats import _torch
from workflows.formats._sniff import zip_names
from workflows.model import Dim, Model, TensorSpec, path_size

NAME = "exported_program"
FRAMEWORK = "pytorch"


def match(path: Path) -> bool:
    names = zip_names(path)
    return bool(names) and any(
        ("/models/" in n and n.endswith(".json")) or n.endswith("serialized_exported_program.json")
        for n in names
    )


def why_not(path: Path) -> str:
    return "not a torch.export .pt2 archive (no models/*.json inside)"


def _spec(name: str, value: Any) -> TensorSpec:
    shape: tuple[Dim, ...] = tuple(d if isinstance(d, int) else str(d) for d in value.shape)
    return TensorSpec(name, shape, _torch.torch_dtype_name(value.dtype))


def code_in_archive(path: Path) -> list[str]:
    """The members of a .pt2 whose loading would run code stored in the file.

    `torch.export.load` unpickles sample inputs (retrying with `weights_only=False` when the safe
    unpickler refuses them), pickled weights and constants with `weights_only=False`, and custom
    objects with plain pickle. There is no public API to ask which of these an archive holds, so
    this reads the archive with torch's own reader and payload configs (the same ones `load`
    follows) and tries every pickle with the safe unpickler: what it refuses, or what is a
    pickled object by design, is listed. An empty list means the archive loads without running
    anything from the file.
    """
    import io

    import torch
    from torch.export.pt2_archive import _package as pt2

    def safe(data: bytes) -> bool:
        try:
            torch.load(io.BytesIO(data), weights_only=True)
        except Exception:  # the safe unpickler refuses anything but tensors and plain containers
            return False
        return True

    unsafe: list[str] = []
    with pt2.PT2ArchiveReader(str(path)) as reader:
        names = reader.get_file_names()
        prefix, suffix = pt2.MODELS_FILENAME_FORMAT.split("{}")
        models = [n[len(prefix) : -len(suffix)] for n in names if n.startswith(pt2.MODELS_DIR)]
        for model in models:
            pickles = [pt2.SAMPLE_INPUTS_FILENAME_FORMAT.format(model)]
            for folder, config_format in (
                (pt2.WEIGHTS_DIR, pt2.WEIGHTS_CONFIG_FILENAME_FORMAT),
                (pt2.CONSTANTS_DIR, pt2.CONSTANTS_CONFIG_FILENAME_FORMAT),
            ):
                legacy = f"{folder}{model}.pt"
                config_file = config_format.format(model)
                if legacy in names:
                    pickles.append(legacy)
                if config_file not in names:
                    continue
                config = pt2._load_payload_config(reader, config_file).config
                for meta in config.values():
                    member = folder + meta.path_name
                    if meta.path_name.startswith(
                        (pt2.CUSTOM_OBJ_FILENAME_PREFIX, pt2.OPAQUE_OBJ_FILENAME_PREFIX)
                    ):
                        unsafe.append(member)  # a pickled Python/torchbind object
                    elif meta.use_pickle:
                        pickles.append(member)
            unsafe += [m for m in pickles if m in names and not safe(reader.read_bytes(m))]
    return unsafe


def load(path: Path, allow_unsafe: bool = False, **_: Any) -> Model:
    """Load with torch.export.load once the archive is known to run no code on load (or the
    user allowed it); shapes (with symbolic dims) come from the program itself."""
    import torch

    try:
        unsafe = code_in_archive(path)
    except Exception as exc:  # torch's reader raises RuntimeError/KeyError for bad archives
        raise FormatError(f"{path}: not a readable torch.export archive: {exc}") from exc
    if unsafe and not allow_unsafe:
        raise UnsafeModelError(
            f"{path}: loading this .pt2 would run code stored in it: "
            f"{', '.join(unsafe[:5])}{' …' if len(unsafe) > 5 else ''} hold pickled Python "
            "objects that the safe unpickler refuses. A program saved by torch.export.save from "
            "plain tensors loads without that. " + _torch.UNSAFE_HINT
        )
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch raises RuntimeError/KeyError/ValueError for bad archives
        raise FormatError(f"{path}: not a loadable torch.export program: {exc}") from exc
    sig = program.graph_signature
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = [_spec(name, placeholders[name].meta["val"]) for name in sig.user_inputs]
    output_node = next(n for n in program.graph.nodes if n.op == "output")
    out_vals = [a.meta.get("val") for a in output_node.args[0] if hasattr(a, "meta")]
    outputs = [
        _spec(name, val)
        for name, val in zip(sig.user_outputs, out_vals, strict=False)
        if val is not None
    ]
    params = sum(int(t.numel()) for t in program.state_dict.values())
    return Model(
        format=NAME,
        framework=FRAMEWORK,
        path=path,
        inputs=inputs,
        outputs=outputs,
        size_bytes=path_size(path),
        parameters=params,
        producer=f"torch {torch.__version__}",
        metadata={
            "range_constraints": {str(k): str(v) for k, v in program.range_constraints.items()}
        },
        native=program,
    )


def session(model: Model, threads: int | None = None):
    """Run the exported program's module on numpy feeds."""
    return _torch.torch_session(model.native.module(), [s.name for s in model.inputs])
