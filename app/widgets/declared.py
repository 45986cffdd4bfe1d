"""Form widgets whose default and tooltip come from a step's option declaration."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox, QWidget

from workflows.options import describe

W = TypeVar("W", bound=QWidget)


def declared(widget: W, cls: type, name: str) -> W:
    """Set `widget`'s value to option `name`'s declared default and its tooltip to the
    option's description; returns the widget."""
    default, description = describe(cls, name)
    widget.setToolTip(description)
    if isinstance(widget, QCheckBox):
        widget.setChecked(bool(default))
    elif isinstance(widget, QSpinBox | QDoubleSpinBox):
        widget.setValue(default)
    else:
        raise TypeError(f"no declared default for a {type(widget).__name__}")
    return widget


def declared_default(cls: type, name: str) -> Any:
    """Option `name`'s declared default (for widgets set up by hand, e.g. a set of boxes)."""
    return describe(cls, name)[0]


def declared_choice(cls: type, name: str) -> QComboBox:
    """A combo box of option `name`'s declared choices, at its default, with its description."""
    default, description = describe(cls, name)
    meta = {f.name: f for f in dataclasses.fields(cls)}[name].metadata
    combo = QComboBox()
    combo.addItems(list(meta["choices"]))
    combo.setCurrentText(default)
    combo.setToolTip(description)
    return combo
