"""Export: Docker build context, TorchServe archive, TFLite bundle; each README readable here."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.pages.base import Page
from app.widgets.path_label import PathLabel
from workflows import catalogue


class ExportPage(Page):
    title = "Export"
    icon = "export"

    def __init__(self, window) -> None:
        super().__init__(window)
        layout = QVBoxLayout(self)
        self.targets: dict[str, QCheckBox] = {}
        for key, text in catalogue.export_targets().items():
            box = QCheckBox(text)
            box.setChecked(key == "docker")
            self.targets[key] = box
            layout.addWidget(box)
        row = QHBoxLayout()
        self.folder_label = PathLabel()
        row.addWidget(self.folder_label, 1)
        self.export_button = QPushButton("Export")
        self.export_button.clicked.connect(self.export)
        row.addWidget(self.export_button)
        layout.addLayout(row)
        split = QSplitter()
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        self.done = QListWidget()
        self.done.currentItemChanged.connect(lambda item, _previous: self._show_readme(item))
        left_layout.addWidget(self.done, 1)
        open_button = QPushButton("Open folder")
        open_button.clicked.connect(self._open_folder)
        left_layout.addWidget(open_button)
        split.addWidget(left)
        self.readme = QTextBrowser()
        split.addWidget(self.readme)
        split.setSizes([300, 700])
        layout.addWidget(split, 1)
        self._queue: list[str] = []

    def on_enter(self) -> None:
        if self.session.model:
            # The run folder, elided in the middle: its end (the model's folder) stays readable.
            self.folder_label.set_path(
                self.session.root, f"{self.session.root}{os.sep}export-<target>", "Into "
            )

    def export(self) -> None:
        if not self.session.model:
            self.window_.show_error("Load a model first.")
            return
        self._queue = [k for k, box in self.targets.items() if box.isChecked()]
        self._next()

    def _options(self, target: str) -> dict:
        user: dict = {}
        quant = self.session.step_options.get("quantize") or {}
        if target in ("torchserve", "tflite", "triton") and quant.get("labels"):
            user["labels"] = quant["labels"]
        if target == "tflite":
            user.update(calibration=quant.get("calibration"), evaluation=quant.get("evaluation"))
        if target == "docker" and (quant.get("evaluation") or quant.get("calibration")):
            # The data the model is expected to see: the server's drift reference.
            user["reference"] = quant.get("evaluation") or quant.get("calibration")
        if target in ("docker", "torchserve") and self.session.preprocess:
            user["preprocess"] = self.session.preprocess  # the server also takes raw images
        return user

    def _next(self) -> None:
        if not self._queue:
            return
        target = self._queue.pop(0)
        step = f"export-{target}"
        user = self._options(target)
        options, out = self.session.plan(step, user)

        def done(result: dict) -> None:
            self.session.record(step, user, result)
            # The export's folder name (export-docker, …), the full path on hover and for Open.
            item = QListWidgetItem(Path(result["output"]).name)
            item.setData(Qt.ItemDataRole.UserRole, result["output"])
            item.setToolTip(result["output"])
            self.done.addItem(item)
            self.done.setCurrentRow(self.done.count() - 1)
            self._next()

        def failed(message: str) -> None:
            self._queue.clear()

        self.window_.run_step(step, options, [out], done, f"Exporting: {target}", on_error=failed)

    def _show_readme(self, item: QListWidgetItem | None) -> None:
        folder = item.data(Qt.ItemDataRole.UserRole) if item else None
        readme = Path(folder) / "README.md" if folder else None
        if readme and readme.exists():
            self.readme.setMarkdown(readme.read_text())

    def _open_folder(self) -> None:
        item = self.done.currentItem()
        if item:
            QDesktopServices.openUrl(QUrl.fromLocalFile(item.data(Qt.ItemDataRole.UserRole)))
