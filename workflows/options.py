"""Step options declared as typed dataclasses: one declaration for the CLI, GUI forms and workflows."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from workflows.errors import MissingInputError

T = TypeVar("T")


def option(default: Any, description: str) -> Any:
    """A dataclass field with a default and a one-line description for forms and --help."""
    if isinstance(default, list | dict):
        return field(
            default_factory=lambda: type(default)(default), metadata={"description": description}
        )
    return field(default=default, metadata={"description": description})


def from_dict(cls: type[T], data: dict[str, Any] | T) -> T:
    """Build options of type `cls` from a dict, naming unknown or missing keys clearly."""
    if isinstance(data, cls):
        return data
    assert isinstance(data, dict)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise MissingInputError(
            f"{cls.__name__}: unknown option(s) {unknown}; known: {sorted(names)}"
        )
    try:
        return cls(**data)
    except TypeError as exc:
        raise MissingInputError(f"{cls.__name__}: {exc}") from exc


def to_dict(options: Any) -> dict[str, Any]:
    """Options as a JSON-serialisable dict."""
    return dataclasses.asdict(options)


@dataclass
class LoadOptions:
    """How to load a model; most formats need none of these."""

    path: str = option("", "Model file or folder")
    format: str | None = option(None, "Force a format instead of detecting it")
    model_file: str | None = option(None, "Eager PyTorch: Python file defining the module")
    model_class: str | None = option(None, "Eager PyTorch: class name in that file")
    input_shapes: dict[str, list[int]] = option({}, "Shapes for formats that do not record them")
    dynamic_batch: bool = option(True, "Treat the first input dimension as a dynamic batch")
    allow_unsafe: bool = option(False, "Accept a file whose loading runs code stored in it")

    def load(self):  # -> Model (kept untyped to avoid an import cycle at module level)
        """Load the model these options describe."""
        from workflows.formats import load_model

        extra = {k: v for k, v in to_dict(self).items() if k not in ("path", "format")}
        shapes = extra.pop("input_shapes") or None
        if shapes and "*" in shapes:
            shapes = {"*": shapes["*"]}
        return load_model(self.path, format=self.format, input_shapes=shapes, **extra)
