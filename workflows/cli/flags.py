"""Command-line flags generated from the steps' option declarations (default, help, type, choices).

`add(parser, OptionsClass, "field", "--flag")` reads the field's declaration, so a default or a
description changed in a step's options class changes `--help` and the CLI's behaviour with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from workflows.errors import MissingInputError
from workflows.options import describe, field_type


def int_list(text: str) -> list[int]:
    """ "1,8" -> [1, 8] (argparse type for list[int] options)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,8") from exc
    if not values:
        raise argparse.ArgumentTypeError("give at least one number")
    return values


def float_list(text: str) -> list[float]:
    """ "0.485,0.456" -> [0.485, 0.456] (argparse type for list[float] options)."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list") from exc


def int_dict(text: str) -> dict[str, int]:
    """ "height=320,width=320" -> {"height": 320, "width": 320} (for dict[str, int] options)."""
    out = {}
    for part in (p.strip() for p in text.split(",")):
        name, sep, value = part.partition("=")
        if not part or not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"{text!r} is not a list like height=320,width=320")
        try:
            out[name.strip()] = int(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{part!r}: {value!r} is not a whole number") from exc
    return out


def key_value(text: str) -> tuple[str, str]:
    """ "x:0=batch" -> ("x:0", "batch") (argparse type for a repeatable KEY=VALUE flag)."""
    key, sep, value = text.rpartition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value.strip()


def _plain(tp: Any) -> Any:
    """`int | None` -> int; other types as they are."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, type(int | None)) else tp


def add(
    parser: argparse.ArgumentParser | Any,
    cls: type,
    name: str,
    *flags: str,
    prefix: str = "",
    **overrides: Any,
) -> None:
    """Add the flag(s) for option `name` of `cls`; `overrides` replace argparse settings."""
    declared, description = describe(cls, name)
    meta = {f.name: f for f in dataclasses.fields(cls)}[name].metadata
    tp = _plain(field_type(cls, name))
    custom_help = "help" in overrides
    text = prefix + overrides.pop("help", description)
    default = overrides.get("default", declared)
    kw: dict[str, Any] = {"dest": name, "default": default}
    if tp is bool:
        kw["action"] = "store_false" if default else "store_true"
    elif typing.get_origin(tp) is dict:
        kw.update(type=int_dict, metavar="NAME=N,...")
    elif typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if meta.get("choices"):  # a repeatable choice: --mode static --mode fp16
            kw.update(action="append", choices=list(meta["choices"]), default=None)
        else:
            kw.update(type=int_list if item is int else float_list, metavar="A,B")
    else:
        kw["type"] = tp if tp in (int, float) else str
        if meta.get("choices"):
            kw["choices"] = list(meta["choices"])
    kw.update(overrides)
    shown = ",".join(map(str, default)) if isinstance(default, list) else default
    if isinstance(default, dict):
        shown = ",".join(f"{k}={v}" for k, v in default.items())
    if isinstance(shown, float):
        shown = format(shown, "g")
    if kw.get("action") == "store_false" and not custom_help:
        text += " (on by default; this flag turns it off)"
    elif kw.get("action") != "store_true" and shown not in (None, "", []):
        text += f" (default {shown})"
    if not flags:
        negated = tp is bool and default
        flags = (f"--{'no-' if negated else ''}{name.replace('_', '-')}",)
    parser.add_argument(*flags, help=text.replace("%", "%%"), **kw)


def values(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The options of `cls` that the parsed arguments carry (flags added with `add`)."""
    given = vars(args)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            value = given[f.name]
            if value is None and isinstance(describe(cls, f.name)[0], list):
                continue  # a repeatable flag never given: the declared default
            out[f.name] = value
    return out


def require(value: Any, flag: str) -> Any:
    if value in (None, ""):
        raise MissingInputError(f"give {flag}")
    return value
