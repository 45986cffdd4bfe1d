"""The image preprocessing recipe as a form: resize, layout, channels, scale, mean, std."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QWidget,
)

from app.widgets.declared import declared_choice, declared_default
from workflows.data import Preprocess, recipe_for_input

IMAGENET = {"scale": "1/255", "mean": "0.485, 0.456, 0.406", "std": "0.229, 0.224, 0.225"}


def _floats(text: str, what: str) -> list[float]:
    try:
        values = [_number(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a list of numbers like 0.5, 0.5, 0.5") from None
    if not values:
        raise ValueError(f"{what}: give at least one number")
    return values


def _number(text: str) -> float:
    """A float, or a fraction such as 1/255."""
    text = text.strip()
    if "/" in text:
        num, den = text.split("/", 1)
        if float(den) == 0:
            raise ValueError(f"{text}: division by zero")
        return float(num) / float(den)
    return float(text)


class PreprocessForm(QWidget):
    """Edits a `workflows.data.Preprocess` recipe; `changed` fires on every edit."""

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        self.size = QLineEdit()
        self.size.setPlaceholderText("keep each image's size")
        self.size.setToolTip("Height x width, e.g. 224x224")
        self.layout_ = declared_choice(Preprocess, "layout")
        self.channels = declared_choice(Preprocess, "channels")
        self.scale = QLineEdit("1/255")
        self.mean = QLineEdit("0")
        self.std = QLineEdit("1")
        for edit in (self.scale, self.mean, self.std):
            edit.setToolTip("pixel × scale, then (value − mean) / std, per channel")
        imagenet = QPushButton("ImageNet mean/std")
        imagenet.setToolTip("0..1 pixels normalised with ImageNet's mean and std (torchvision)")
        imagenet.clicked.connect(self.use_imagenet)
        size_row = QHBoxLayout()
        size_row.addWidget(self.size, 1)
        size_row.addWidget(self.layout_)
        size_row.addWidget(self.channels)
        norm_row = QHBoxLayout()
        norm_row.addWidget(self.scale)
        norm_row.addWidget(self.mean, 2)
        norm_row.addWidget(self.std, 2)
        norm_row.addWidget(imagenet)
        form.addRow("Resize, layout, channels", size_row)
        form.addRow("Scale, mean, std", norm_row)
        for edit in (self.size, self.scale, self.mean, self.std):
            edit.textChanged.connect(self.changed)
        for combo in (self.layout_, self.channels):
            combo.currentTextChanged.connect(self.changed)

    def use_imagenet(self) -> None:
        self.scale.setText(IMAGENET["scale"])
        self.mean.setText(IMAGENET["mean"])
        self.std.setText(IMAGENET["std"])

    def set_defaults(self, shape: list[Any] | None) -> None:
        """Fit resize, layout and channels to the model's input shape."""
        d = recipe_for_input(shape)
        self.size.setText(f"{d['size'][0]}x{d['size'][1]}" if "size" in d else "")
        self.layout_.setCurrentText(d.get("layout", declared_default(Preprocess, "layout")))
        self.channels.setCurrentText(d.get("channels", declared_default(Preprocess, "channels")))

    def recipe(self) -> dict[str, Any]:
        """The recipe as Preprocess options; ValueError names a field that does not parse."""
        size = None
        if self.size.text().strip():
            parts = self.size.text().lower().replace("×", "x").replace(",", "x").split("x")
            try:
                size = [int(p) for p in parts]
            except ValueError:
                size = None
            if size is None or len(size) != 2 or min(size) < 1:
                raise ValueError(f"resize: {self.size.text()!r} is not HEIGHTxWIDTH like 224x224")
        recipe = {
            "size": size,
            "layout": self.layout_.currentText(),
            "channels": self.channels.currentText(),
            "scale": _floats(self.scale.text() or "1", "scale")[0],
            "mean": _floats(self.mean.text(), "mean"),
            "std": _floats(self.std.text(), "std"),
        }
        if recipe["scale"] == 0 or 0 in recipe["std"]:
            raise ValueError("scale and std must not be 0 (every input would be 0 or infinite)")
        return recipe
