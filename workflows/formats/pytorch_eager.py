"""Eager PyTorch: a Python file defining the module + its state_dict (.pt/.pth/.safetensors).

The same contract as TorchServe's `--model-file` + `--serialized-file`. Weights are read with
`torch.load(weights_only=True)` or safetensors; the module file is imported because the user named it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from workflows.errors import FormatError, MissingInputError
from workflows.formats import _torch
from workflows.formats._sniff import head, zip_names
from workflows.model import Model, path_size

NAME = "pytorch_eager"
FRAMEWORK = "pytorch"
SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def _is_safetensors(path: Path) -> bool:
    data = head(path, 9)
    if len(data) < 9:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 0 < n < 100_000_000 and data[8:9] == b"{"


def match(path: Path) -> bool:
    if not path.is_file():
        return False
    names = zip_names(path)
    if names is not None:
        return any(n.endswith("data.pkl") for n in names) and not any("/code/" in n for n in names)
    # Legacy (pre-1.6) torch.save files are plain pickles (protocol 2: b"\x80\x02").
    return _is_safetensors(path) or head(path, 2) == b"\x80\x02"


def why_not(path: Path) -> str:
    return "not a torch.save zip/pickle or safetensors file"


def read_state_dict(path: Path, allow_unsafe: bool = False) -> dict[str, Any]:
    """Tensors by name from a safetensors file or a torch.save'd state_dict (safely)."""
    if _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # SafetensorError, or a header that is not what it claims
            raise FormatError(
                f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc}); "
                "it may be truncated or damaged"
            ) from exc
    obj = _torch.torch_load_safely(path, allow_unsafe)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # Lightning-style checkpoint
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FormatError(f"{path}: holds a {type(obj).__name__}, not a state_dict of tensors")
    return obj


def load(
    path: Path,
    model_file: Path | str | None = None,
    model_class: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    input_shapes: dict[str, Any] | None = None,
    input_dtypes: dict[str, str] | None = None,
    allow_unsafe: bool = False,
    dynamic_batch: bool = True,
    **_: Any,
) -> Model:
    """Instantiate `model_class` from `model_file` and load the weights at `path` into it."""
    import torch

    weights = read_state_dict(path, allow_unsafe)
    if model_file is None:
        raise MissingInputError(
            f"{path}: this file holds only weights (a state_dict with {len(weights)} tensors), not "
            "the module that uses them. Give the Python file that defines the model and its class: "
            "--model-file model.py --model-class Net (the same pair TorchServe asks for)."
        )
    module_ns = _torch.import_module_from_file(Path(model_file))
    classes = _torch.module_classes(module_ns)
    if model_class is None:
        if len(classes) != 1:
            found = ", ".join(c.__name__ for c in classes) or "none"
            raise MissingInputError(
                f"{model_file}: name the model class with --model-class (nn.Module classes found: {found})"
            )
        cls = classes[0]
    else:
        cls = getattr(module_ns, model_class, None)
        if cls is None:
            raise MissingInputError(f"{model_file}: defines no class {model_class!r}")
    try:
        module = cls(**(model_kwargs or {}))
        missing, unexpected = module.load_state_dict(weights, strict=False)
    except Exception as exc:
        raise FormatError(f"{path}: weights do not fit {cls.__name__}: {exc}") from exc
    if missing or unexpected:
        raise FormatError(
            f"{path}: weights do not fit {cls.__name__}: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}. Is this the right class and file?"
        )
    module.eval()
    names = _torch.forward_input_names(module)
    inputs = _torch.input_specs_from_options(names, path, input_shapes, input_dtypes, dynamic_batch)
    return Model(
        format=NAME,
        framework=FRAMEWORK,
        path=path,
        inputs=inputs,
        outputs=_torch.probe_outputs(module, inputs, dynamic_batch),
        size_bytes=path_size(path),
        parameters=sum(p.numel() for p in module.parameters()),
        producer=f"torch {torch.__version__}",
        metadata={
            "model_file": str(Path(model_file).resolve()),
            "model_class": cls.__name__,
            "model_kwargs": json.loads(json.dumps(model_kwargs or {})),
            "dynamic_batch": dynamic_batch,
        },
        native=module,
    )


def session(model: Model, threads: int | None = None):
    """Run the eager module on numpy feeds."""
    return _torch.torch_session(model.native, [s.name for s in model.inputs])
