"""Model formats: one module per format, each with a cheap `match` and an expensive `load`.

`detect` asks every format in turn (by content, not only the extension) and, when none fits,
reports each one's reason, the way Netron's model factories do.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

from workflows.errors import DockyardError, FormatError
from workflows.model import Model

# Order matters: more specific formats first (a .pt2 and a TorchScript file are both zips).
FORMAT_MODULES = (
    "onnx_format",
    "tflite_format",
    "exported_program",
    "torchscript",
    "keras_format",
    "savedmodel",
    "sklearn_format",  # before pytorch_eager: a .pkl pickle may be either
    "pytorch_eager",
)


def format_modules() -> list[ModuleType]:
    """The format modules, in detection order."""
    return [importlib.import_module(f"{__name__}.{name}") for name in FORMAT_MODULES]


def by_name(name: str) -> ModuleType:
    """The format module whose NAME is `name` (for example "onnx", "keras")."""
    for module in format_modules():
        if name == module.NAME:
            return module
    known = ", ".join(m.NAME for m in format_modules())
    raise FormatError(f"unknown format {name!r}; known formats: {known}")


def detect(path: Path, **options: Any) -> ModuleType:
    """The format module that reads `path`; FormatError with a specific reason otherwise."""
    path = Path(path)
    if not path.exists():
        raise FormatError(f"{path}: no such file or folder")
    if path.is_file() and path.stat().st_size == 0:
        raise FormatError(
            f"{path}: the file is empty (0 bytes); was the download or copy cut short?"
        )
    if options.get("model_file"):
        return by_name("pytorch_eager")
    for module in format_modules():
        if _matches(module, path):
            return module
    reasons = "; ".join(f"{m.NAME}: {_why_not(m, path)}" for m in format_modules())
    raise FormatError(f"{path}: not a model format Dockyard reads ({reasons})")


def _matches(module: ModuleType, path: Path) -> bool:
    """A matcher that trips over hostile bytes has not recognised its format."""
    try:
        return bool(module.match(path))
    except Exception:
        return False


def _why_not(module: ModuleType, path: Path) -> str:
    try:
        return module.why_not(path)
    except Exception as exc:
        return f"unreadable ({type(exc).__name__})"


def load_model(path: Path | str, format: str | None = None, **options: Any) -> Model:
    """Detect the format of `path` (or use `format`) and load it.

    Options understood by some formats: `input_shapes` ({name: shape}) where a format does not
    record them, `model_file`/`model_class` for eager PyTorch, `allow_unsafe` to accept a file
    whose loading runs code stored in it.
    """
    path = Path(path)
    module = by_name(format) if format else detect(path, **options)
    try:
        return module.load(path, **options)
    except DockyardError:
        raise
    except Exception as exc:
        # A loader's own checks give the specific messages; what a framework raises beyond them
        # on damaged bytes (a bad zip CRC inside a .keras, say: found by fuzzing) is still the
        # file's fault, reported as such and never as a crash.
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise FormatError(
            f"{path}: not a readable {module.NAME} model ({type(exc).__name__}: {first}); "
            "it may be damaged or truncated. Re-export or re-download it."
        ) from exc
