"""torch.export programs saved with torch.export.save (.pt2 archives with models/*.json)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.errors import FormatError
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


def load(path: Path, **_: Any) -> Model:
    """Load with torch.export.load; shapes (with symbolic dims) come from the program itself."""
    import torch

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
