"""The graph edits a deployment needs (issue 16, item 4), from the Inspect page: keep or drop
outputs, fix or free input dimensions, rename inputs and outputs. The edit step checks the
result against the original before writing it; the wizard records it, so the saved workflow
replays it and the steps after it take the edited model."""

from __future__ import annotations

import argparse
from typing import Any

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from workflows.cli.flags import key_value


def _pairs(text: str, what: str) -> dict[str, str]:
    """ "a=b, c=d" -> {"a": "b", "c": "d"} (parsed as the CLI's flags are); ValueError naming
    the bad part."""
    out = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            key, value = key_value(part)
        except argparse.ArgumentTypeError:
            form = "OLD=NEW" if what == "Rename" else "INPUT:AXIS=VALUE"
            raise ValueError(f"{what}: {part!r} should be written as {form}") from None
        out[key] = value
    return out


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


class EditDialog(QDialog):
    """See module doc. `options()` gives the edit step's user options (ValueError if unclear)."""

    def __init__(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.setWindowTitle("Edit the ONNX graph")
        layout = QVBoxLayout(self)
        shapes = "; ".join(f"{s['name']} {s['shape']}" for s in inputs)
        intro = QLabel(f"Inputs: {shapes}. Outputs: {', '.join(o['name'] for o in outputs)}. "
                       "The edited model is checked (ONNX checker, a run against the original "
                       "on the kept outputs) before it is written as a new file.")  # fmt: skip
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.keep = QLineEdit()
        self.keep.setPlaceholderText("tensor names, comma-separated (a cut; empty: all outputs)")
        self.drop = QLineEdit()
        self.drop.setPlaceholderText("outputs to drop, comma-separated")
        self.dims = QLineEdit()
        self.dims.setPlaceholderText("x:0=batch (free) or x:0=1 (fix), comma-separated")
        self.rename = QLineEdit()
        self.rename.setPlaceholderText("old=new, comma-separated (inputs and outputs)")
        form.addRow("Keep outputs", self.keep)
        form.addRow("Drop outputs", self.drop)
        form.addRow("Dimensions", self.dims)
        form.addRow("Rename", self.rename)
        layout.addLayout(form)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b91c1c")
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)  # fmt: skip
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Edit and check")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(620, 280)

    def options(self) -> dict[str, Any]:
        """The edit step's user options from the fields."""
        dims = {k: int(v) if v.isdigit() else v
                for k, v in _pairs(self.dims.text(), "Dimensions").items()}  # fmt: skip
        options = {"outputs": _names(self.keep.text()), "drop_outputs": _names(self.drop.text()),
                   "dims": dims, "rename": _pairs(self.rename.text(), "Rename")}  # fmt: skip
        if not any(options.values()):
            raise ValueError("Nothing to edit: fill in at least one field.")
        return options

    def _accept(self) -> None:
        try:
            self.options()
        except ValueError as exc:
            self.error.setText(str(exc))
            return
        self.accept()
