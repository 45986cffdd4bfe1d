"""TorchScript archives (torch.jit.save): a zip with code/ and constants.pkl."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows.errors import FormatError
from workflows.formats import _torch
from workflows.formats._sniff import zip_names
from workflows.model import Model, path_size

NAME = "torchscript"
FRAMEWORK = "pytorch"


def match(path: Path) -> bool:
    names = zip_names(path)
    return (
        bool(names)
        and any(n.endswith("constants.pkl") for n in names)
        and any("/code/" in n for n in names)
    )


def why_not(path: Path) -> str:
    return "not a zip archive with TorchScript code/ and constants.pkl"


def load(
    path: Path,
    input_shapes: dict[str, Any] | None = None,
    input_dtypes: dict[str, str] | None = None,
    dynamic_batch: bool = True,
    **_: Any,
) -> Model:
    """Load with torch.jit.load (its restricted unpickler runs no arbitrary code)."""
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as exc:
        raise FormatError(
            f"{path}: not a loadable TorchScript file: {str(exc).splitlines()[0]}"
        ) from exc
    module.eval()
    names = [v.debugName().split(".")[0] for v in list(module.graph.inputs())[1:]]
    inputs = _torch.input_specs_from_options(names, path, input_shapes, input_dtypes, dynamic_batch)
    model = Model(
        format=NAME,
        framework=FRAMEWORK,
        path=path,
        inputs=inputs,
        outputs=_torch.probe_outputs(module, inputs, dynamic_batch),
        size_bytes=path_size(path),
        parameters=sum(p.numel() for p in module.parameters()),
        producer="torch.jit",
        metadata={"dynamic_batch": dynamic_batch},
        native=module,
    )
    return model


def session(model: Model, threads: int | None = None):
    """Run the TorchScript module on numpy feeds."""
    return _torch.torch_session(model.native, [s.name for s in model.inputs])
