"""Load: drop a model anywhere, open one, or open the bundled sample; the format is detected."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
)

from app.pages.base import Page
from app.widgets.path_picker import PathPicker
from workflows.inputs import parse_input_shapes
from workflows.options import LoadOptions, to_dict
from workflows.resources import resource

RECENT_KEY = "recent_models"


def recent_models(settings: QSettings) -> list[str]:
    """The remembered paths (QSettings returns a bare string for a one-item list without type=)."""
    return [str(p) for p in settings.value(RECENT_KEY, [], type=list)]


class LoadPage(Page):
    title = "Load"
    icon = "load"

    def __init__(self, window) -> None:
        super().__init__(window)
        layout = QVBoxLayout(self)
        drop = QLabel(
            "Drop a model file or folder anywhere on this window\n"
            "ONNX · TorchScript · torch.export .pt2 · PyTorch state_dict · "
            "SavedModel · Keras · TFLite · scikit-learn (.skops)"
        )
        drop.setObjectName("dropZone")
        drop.setAlignment(Qt.AlignmentFlag.AlignCenter)
        drop.setMinimumHeight(140)
        layout.addWidget(drop)
        buttons = QHBoxLayout()
        for text, slot in (
            ("Open model file…", self._open_file),
            ("Open folder…", self._open_folder),
            ("Open the sample model", self.open_sample),
        ):
            b = QPushButton(text)
            b.clicked.connect(slot)
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.sample_button = buttons.itemAt(2).widget()

        eager = QGroupBox(
            "PyTorch weights (state_dict) need their module; TorchScript needs a shape"
        )
        form = QFormLayout(eager)
        self.model_file = PathPicker("model.py defining the nn.Module", filters="Python (*.py)")
        self.model_class = QLineEdit()
        self.model_class.setPlaceholderText("class name (optional if the file defines one)")
        self.input_shape = QLineEdit()
        self.input_shape.setPlaceholderText("x=1x3x224x224")
        form.addRow("Model file", self.model_file)
        form.addRow("Class", self.model_class)
        form.addRow("Input shape", self.input_shape)
        layout.addWidget(eager)

        self.detected = QLabel("No model loaded.")
        self.detected.setObjectName("detected")
        self.detected.setWordWrap(True)
        layout.addWidget(self.detected)
        layout.addWidget(QLabel("Recent models (double-click to open)"))
        self.recent = QListWidget()
        self.recent.itemDoubleClicked.connect(lambda item: self.load(item.text()))
        layout.addWidget(self.recent, 1)
        self._refresh_recent()

    def _open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model")
        if path:
            self.load(path)

    def _open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a SavedModel folder")
        if path:
            self.load(path)

    def open_sample(self) -> None:
        self.model_file.edit.clear()
        self.model_class.clear()
        self.input_shape.clear()
        self.load(str(resource("sample", "digits_cnn.pt2")))

    def options_for(self, path: str) -> LoadOptions:
        shapes = (
            parse_input_shapes([self.input_shape.text()]) if self.input_shape.text().strip() else {}
        )
        return LoadOptions(
            path=path,
            model_file=self.model_file.value(),
            model_class=self.model_class.text().strip() or None,
            input_shapes={k: list(v) for k, v in shapes.items()},
        )

    def load(self, path: str, allow_unsafe: bool = False) -> None:
        """Inspect `path` in the engine; on success the session holds it and Inspect opens.

        A file whose loading would run code stored in it is loaded only if the user says so
        (`ask_trust`); the permission holds for this model in this session, never in a saved
        workflow."""
        try:
            options = self.options_for(path)
        except Exception as exc:  # a shape the user typed wrong
            self.window_.show_error(str(exc))
            return
        options.allow_unsafe = allow_unsafe
        self.detected.setText(f"Reading {path} …")

        def done(result: dict) -> None:
            self.session.model = options
            self.session.inspect = result
            self.session.results.clear()
            self.session.step_options.clear()
            self.session.preprocess = None  # the next model's recipe is fitted to its input
            m = result["model"]
            self.detected.setText(
                f"<b>{Path(path).name}</b>: {m['format']} ({m['framework']}), "
                f"{m['parameters'] or 0:,} parameters"
            )
            self._remember(path)
            self.window_.model_loaded()

        def failed(message: str) -> None:
            self.detected.setText("Could not load that file: see the message.")

        def unsafe(message: str) -> None:
            if self.ask_trust(path, message):
                self.load(path, allow_unsafe=True)
            else:
                self.detected.setText(
                    f"<b>{Path(path).name}</b> was not loaded: it would run code stored in it."
                )

        self.window_.run_step(
            "inspect",
            {"model": to_dict(options), "include_graph": True},
            [],
            done,
            f"Loading {Path(path).name}",
            on_error=failed,
            on_unsafe=unsafe,
        )

    def ask_trust(self, path: str, message: str) -> bool:
        """Ask whether to run the code stored in `path`; True only on the explicit button."""
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Run code from this file?",
            f"Loading <b>{html.escape(Path(path).name)}</b> would run code stored in it. Do this "
            "only for a file from someone you trust: the code can do anything you can.",
            parent=self,
        )
        box.setInformativeText(message)
        trust = box.addButton("Trust this file and run its code", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is trust

    def _remember(self, path: str) -> None:
        settings = QSettings()
        recent = [p for p in recent_models(settings) if p != path]
        settings.setValue(RECENT_KEY, [path, *recent][:10])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent.clear()
        for p in recent_models(QSettings()):
            self.recent.addItem(p)
