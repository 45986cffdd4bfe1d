"""Export: Docker build context, TorchServe archive, TFLite bundle; each README readable here."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
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
from workflows.errors import DockyardError
from workflows.exporters.model_versions import earlier_versions


class ExportPage(Page):
    title = "Export"
    icon = "export"

    def __init__(self, window) -> None:
        super().__init__(window)
        layout = QVBoxLayout(self)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Model to hand off"))
        self.variant = QComboBox()
        self.variant.setToolTip(
            "The original, or a variant made on Convert & Quantize (★: Pareto-best on the "
            "Summary's trade-off: nothing beats it on accuracy, latency and size)"
        )
        pick.addWidget(self.variant, 1)
        layout.addLayout(pick)
        self.targets: dict[str, QCheckBox] = {}
        for key, text in catalogue.export_targets().items():
            box = QCheckBox(text)
            box.setChecked(key == "docker")
            self.targets[key] = box
            layout.addWidget(box)
            if key == "docker":
                layout.addLayout(self._versions_row())
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

    def _versions_row(self) -> QHBoxLayout:
        """Docker: add this model as a new version of an earlier export (its versions are
        carried into the new export; the earlier folder is replaced only when it is the
        export's own output, and only once every version passed)."""
        row = QHBoxLayout()
        row.setContentsMargins(24, 0, 0, 0)
        self.add_to_button = QPushButton("Add as a version of an earlier export…")
        self.add_to_button.clicked.connect(self._choose_earlier)
        row.addWidget(self.add_to_button)
        self.add_to_label = QLabel("")
        self.add_to_label.setWordWrap(True)
        row.addWidget(self.add_to_label, 1)
        self.add_to_clear = QPushButton("Clear")
        self.add_to_clear.clicked.connect(lambda: self.set_add_to(None))
        row.addWidget(self.add_to_clear)
        self.set_add_to(None)
        return row

    def _choose_earlier(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "An earlier Docker export (its folder)")
        if folder:
            self.set_add_to(folder)

    def set_add_to(self, folder: str | None) -> None:
        """Docker exports add this model as a new version of `folder` (None: a first version)."""
        self.add_to = None
        self.add_to_clear.setVisible(folder is not None)
        if folder is None:
            self.add_to_label.setText("a first version (1)")
            return
        try:
            versions = earlier_versions(Path(folder))
        except DockyardError as exc:
            self.add_to_label.setText(f"<span style='color:#c0392b'>{exc}</span>")
            return
        self.add_to = folder
        held = ", ".join(versions.sorted())
        self.add_to_label.setText(
            f"{versions.name} in {Path(folder).name}: holds version(s) {held}; this model "
            f"becomes version {versions.next()} and the default; the new export holds every version"
        )
        self.add_to_label.setToolTip(folder)

    def _fill_variants(self) -> None:
        """The original and every variant this session made, the current choice kept."""
        from workflows.handoff import pareto, points

        current = self.variant.currentData() or "original"
        found = points(self.session.results)
        best = set(pareto(found)) if len(found) > 1 else set()
        self.variant.clear()
        if not found:
            self.variant.addItem("original", "original")
        for p in found:
            text = "original" if p.source == "original" else p.name.removesuffix(" (zipped)")
            if p.top1 is not None:
                text += f" — top-1 {100 * p.top1:.2f} %"
            if p.name in best:
                text += " ★"
            self.variant.addItem(text, p.source)
        self.variant.setCurrentIndex(max(self.variant.findData(current), 0))

    def on_enter(self) -> None:
        self._fill_variants()
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
        chosen = self.variant.currentData() or "original"
        float_only = [k for k in self._queue if k in ("tflite", "tfserving")]
        if chosen in ("int8-static", "int8-dynamic", "fp16") and float_only:
            self.window_.show_error(
                f"The {' and '.join(float_only)} export converts a float model for TensorFlow: "
                f"hand off the original, pruned or compressed model there, or leave it out "
                f"({chosen} goes to Docker, TorchServe and Triton as it is)."
            )
            self._queue = []
            return
        self._next()

    def _options(self, target: str) -> dict:
        user: dict = {}
        if (self.variant.currentData() or "original") != "original":
            user["source"] = self.variant.currentData()
        quant = self.session.step_options.get("quantize") or {}
        if target in ("torchserve", "tflite", "triton") and quant.get("labels"):
            user["labels"] = quant["labels"]
        if target == "tflite":
            user.update(calibration=quant.get("calibration"), evaluation=quant.get("evaluation"))
        if target == "docker" and (quant.get("evaluation") or quant.get("calibration")):
            # The data the model is expected to see: the server's drift reference.
            user["reference"] = quant.get("evaluation") or quant.get("calibration")
        if target == "docker" and self.add_to:
            user["add_to"] = self.add_to
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
            label = Path(result["output"]).name
            if len(result.get("versions", [])) > 1:
                label += f" (versions {', '.join(result['versions'])})"
            item = QListWidgetItem(label)
            item.setData(Qt.ItemDataRole.UserRole, result["output"])
            item.setToolTip(result["output"])
            self.done.addItem(item)
            self.done.setCurrentRow(self.done.count() - 1)
            if target == "docker" and self.add_to:
                self.set_add_to(self.add_to)  # it holds one version more now
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
