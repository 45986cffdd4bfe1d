"""Step options declared as typed dataclasses: one declaration for the CLI, GUI forms and workflows.

Every options class derives from `Options`: building one (from keyword arguments, a workflow file or
a runner message) converts nested dicts into their option classes and checks every value against
its declared type, recursively; a wrong value is named by its path (`model.input_shapes.x[1]`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any, TypeVar

from workflows.errors import OptionsError

T = TypeVar("T")


def option(default: Any, description: str, choices: tuple[str, ...] | None = None) -> Any:
    """A dataclass field with a default, a one-line description for forms and --help, and
    optionally the values it may take (checked on load; a list option takes each from them)."""
    metadata = {"description": description, "choices": choices}
    if isinstance(default, list | dict) or dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def describe(cls: type, name: str) -> tuple[Any, str]:
    """(default, description) of option `name` of `cls`, for CLI flags and GUI forms."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    return default, f.metadata.get("description", "")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_type(cls: type, name: str) -> Any:
    """The declared type of option `name` of `cls` (annotations resolved)."""
    return _hints(cls)[name]


def _check_choices(f: dataclasses.Field, value: Any) -> None:
    choices = f.metadata.get("choices")
    if not choices or value is None:
        return
    given = value if isinstance(value, list) else [value]
    wrong = [v for v in given if v not in choices]
    if wrong or not given:
        raise OptionsError(
            f.name, f"{wrong or value!r} not allowed; choose from {', '.join(choices)}"
        )


def _kind(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a mapping of options"
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(typing.get_origin(tp) or tp, str(tp))


def _convert(tp: Any, value: Any, path: str) -> Any:
    """`value` checked against the type `tp` (nested option dicts built into their classes)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        for candidate in candidates[:-1]:
            try:
                return _convert(candidate, value, path)
            except OptionsError:
                continue
        return _convert(candidates[-1], value, path)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return from_dict(tp, value, path)
    elif origin is list:
        if isinstance(value, list | tuple):
            (item,) = typing.get_args(tp) or (Any,)
            return [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        if isinstance(value, dict):
            key_type, value_type = typing.get_args(tp) or (Any, Any)
            return {
                _convert(key_type, k, path): _convert(value_type, v, f"{path}.{k}")
                for k, v in value.items()
            }
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise OptionsError(path, f"expected {_kind(tp)}, got {value!r:.60}")


@dataclass
class Options:
    """Base of every options class: values are converted and type-checked when it is built."""

    def __post_init__(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue  # not given: the step decides (and says) what that means
            if value is None and f.default_factory is not MISSING:
                value = f.default_factory()
            value = _convert(hints[f.name], value, f.name)
            _check_choices(f, value)
            setattr(self, f.name, value)


def from_dict(cls: type[T], data: dict[str, Any] | T, where: str = "") -> T:
    """Options of type `cls` from a dict (or a copy of an instance), every value type-checked.

    Unknown keys, missing ones and wrong types raise OptionsError naming the field's path,
    prefixed with `where` for nested options.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise OptionsError(where or cls.__name__, f"expected {_kind(cls)}, got {data!r:.60}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    prefix = f"{where}." if where else ""
    if unknown:
        raise OptionsError(
            where or cls.__name__, f"unknown option(s) {unknown}; known: {sorted(names)}"
        )
    try:
        return cls(**data)
    except OptionsError as exc:
        raise OptionsError(prefix + exc.path, exc.problem) from None
    except TypeError as exc:
        raise OptionsError(where or cls.__name__, str(exc)) from exc


def to_dict(options: Any) -> dict[str, Any]:
    """Options as a JSON-serialisable dict."""
    return dataclasses.asdict(options)


@dataclass
class LoadOptions(Options):
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
