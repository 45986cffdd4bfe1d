"""Convert & Quantize: ONNX conversion and ONNX Runtime quantization, with one-line guidance."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from app.pages.base import Page
from app.widgets.data_preview import DataPreview
from app.widgets.declared import declared, declared_choice, declared_default
from app.widgets.distill_plot import DistillPlot
from app.widgets.path_picker import PathPicker
from app.widgets.preprocess_form import PreprocessForm
from app.widgets.tables import show_table, text_table
from app.workers import LatestOnly
from workflows import present
from workflows.handoff import relative
from workflows.steps.convert import ConvertOptions
from workflows.steps.prune import PRUNABLE, PruneOptions
from workflows.steps.quantize import QuantizeOptions


def _file_name(source: str) -> str:
    """A data file's name ("digits_test.npz"), or the description of synthetic data as is."""
    return Path(source).name if Path(source).is_file() else source


MODES = {
    "static": (
        "Static INT8 (QDQ)",
        "about 4x smaller; fastest on CPUs with INT8 instructions "
        "(VNNI/AMX/Arm dot-product); needs calibration data",
    ),
    "dynamic": ("Dynamic INT8", "no calibration; good for Transformers and RNNs, slow for CNNs"),
    "fp16": ("FP16", "half the size; faster on GPUs, not on CPUs; float32 inputs and outputs kept"),
}
DATA_FILTER = "Data (*.npz *.npy *.png *.jpg *.jpeg)"


class ConvertPage(Page):
    title = "Convert & Quantize"
    icon = "convert"

    def __init__(self, window) -> None:
        super().__init__(window)
        page = QVBoxLayout(self)
        columns = QHBoxLayout()
        page.addLayout(columns)
        layout = QVBoxLayout()
        columns.addLayout(layout, 1)
        conv = QGroupBox("Convert to ONNX")
        form = QFormLayout(conv)
        self.opset = QSpinBox()
        self.opset.setRange(13, 21)
        declared(self.opset, ConvertOptions, "opset")
        self.simplify = declared(
            QCheckBox("Simplify the graph (onnxslim: constant folding, fusions)"),
            ConvertOptions,
            "simplify",
        )
        form.addRow("Opset", self.opset)
        form.addRow("", self.simplify)
        self.convert_button = QPushButton("Convert and validate")
        self.convert_button.clicked.connect(self.convert)
        form.addRow("", self.convert_button)
        self.convert_status = QLabel()
        self.convert_status.setWordWrap(True)
        form.addRow(self.convert_status)
        layout.addWidget(conv)

        quant = QGroupBox("Quantize with ONNX Runtime")
        qform = QFormLayout(quant)
        self.modes: dict[str, QCheckBox] = {}
        for key, (label, hint) in MODES.items():
            box = QCheckBox(label)
            box.setChecked(key in declared_default(QuantizeOptions, "modes"))
            box.setToolTip(hint)
            explain = QLabel(hint)
            explain.setWordWrap(True)
            explain.setObjectName("hint")
            self.modes[key] = box
            qform.addRow(box, explain)
        self.calibration = PathPicker(
            "calibration data: .npz/.npy or an image folder (else synthetic)", filters=DATA_FILTER
        )
        self.evaluation = PathPicker(
            "evaluation data: labelled .npz (x, y) or class folders (else held out of the "
            "calibration data)",
            filters=DATA_FILTER,
        )
        self.labels = PathPicker("labels.txt (optional)", filters="Text (*.txt)")
        self.max_drop = QDoubleSpinBox()
        self.max_drop.setRange(0.0, 100.0)
        declared(self.max_drop, QuantizeOptions, "max_accuracy_drop")
        self.max_drop.setSuffix(" points")
        qform.addRow("Calibration", self.calibration)
        qform.addRow("Evaluation", self.evaluation)
        qform.addRow("Labels", self.labels)
        qform.addRow("Accuracy gate", self.max_drop)
        row = QHBoxLayout()
        self.quantize_button = QPushButton("Quantize")
        self.quantize_button.clicked.connect(self.quantize)
        row.addWidget(self.quantize_button)
        row.addStretch(1)
        qform.addRow(row)
        self.quantize_note = QLabel(wordWrap=True)
        self.quantize_note.setObjectName("hint")
        self.quantize_note.setVisible(False)
        qform.addRow(self.quantize_note)
        layout.addWidget(quant)
        layout.addStretch(1)

        data = QGroupBox("Calibration data, as the model will see it")
        dlayout = QVBoxLayout(data)
        self.preprocess = PreprocessForm()
        note = QLabel(
            "Preprocessing applies to images and image folders; arrays are fed as they are."
        )
        note.setWordWrap(True)
        note.setObjectName("hint")
        dlayout.addWidget(note)
        dlayout.addWidget(self.preprocess)
        self.preview = DataPreview()
        dlayout.addWidget(self.preview)
        dlayout.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(data, 1)
        right.addWidget(self._prune_group())
        columns.addLayout(right, 1)
        # Bound methods, not lambdas: Qt drops the connections if this page is deleted first.
        self._previews = LatestOnly("preview", self)
        self._previews.succeeded.connect(self._preview_ready)
        self._previews.failed.connect(self._preview_failed)
        self._preview_timer = QTimer(self, singleShot=True, interval=400)
        self._preview_timer.timeout.connect(self.refresh_preview)
        self.preprocess.changed.connect(self._preview_timer.start)
        self.calibration.edit.textChanged.connect(self._preview_timer.start)
        self._defaults_for: object = None
        self._closing = False

        layout = page
        self.results = text_table([], fit_contents=True)
        layout.addWidget(self.results, 1)
        # Where the gate's data came from (held out of the calibration data, synthetic …), its
        # rule, and what the fallback kept in float: the figures above mean nothing without it.
        # Every try of a fallback search (what changed, INT8 share, size, p50, gate), when one ran.
        self.search = text_table([], fit_contents=True)
        self.search.setMaximumHeight(170)
        self.search.setVisible(False)
        layout.addWidget(self.search)
        self.distill_plot = DistillPlot()
        self.distill_plot.setVisible(False)
        self.distill_plot.setMaximumHeight(230)
        layout.addWidget(self.distill_plot)
        self.results_notes = QLabel(wordWrap=True)
        self.results_notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.results_notes)

    def _prune_group(self) -> QGroupBox:
        """Structured pruning + distillation: eager PyTorch models only (module + weights)."""
        group = QGroupBox("Prune channels, then distil from the original")
        form = QFormLayout(group)
        self.prune_ratio = QDoubleSpinBox()
        self.prune_ratio.setRange(0.05, 0.95)
        self.prune_ratio.setSingleStep(0.05)
        declared(self.prune_ratio, PruneOptions, "ratio")
        self.importance = declared_choice(PruneOptions, "importance")
        self.distill_steps = QSpinBox()
        self.distill_steps.setRange(0, 100_000)
        self.distill_steps.setSingleStep(100)
        declared(self.distill_steps, PruneOptions, "distill_steps")
        form.addRow("Channels removed", self.prune_ratio)
        form.addRow("Importance", self.importance)
        form.addRow("Distillation steps", self.distill_steps)
        self.prune_hint = QLabel(
            "Distils on the calibration data above (labels not needed) and judges on the "
            "evaluation data with the same accuracy gate; stops once the gate passes."
        )
        self.prune_hint.setWordWrap(True)
        self.prune_hint.setObjectName("hint")
        form.addRow(self.prune_hint)
        self.prune_button = QPushButton("Prune and distil")
        self.prune_button.clicked.connect(self.prune)
        form.addRow("", self.prune_button)
        return group

    def _prunable(self) -> bool:
        inspect = self.session.inspect
        return bool(inspect) and inspect["model"]["format"] in PRUNABLE

    def _update_prune_group(self) -> None:
        prunable = self._prunable()
        self.prune_button.setEnabled(prunable)
        if not prunable and self.session.inspect:
            fmt = self.session.inspect["model"]["format"]
            self.prune_button.setToolTip(
                f"Pruning rewrites PyTorch modules: open the model as its Python file and "
                f"weights (eager PyTorch), not as {fmt}."
            )
        else:
            self.prune_button.setToolTip("")
        pruned = "prune" in self.session.results
        self.quantize_note.setVisible(pruned)
        self.quantize_note.setText("Quantizes the pruned model (pruned + INT8)." if pruned else "")

    def prune(self) -> None:
        if not self._prunable():
            self.window_.show_error(
                "Pruning needs an eager PyTorch model: load its weights with the Python file "
                "that defines it (Model file) and an input shape."
            )
            return
        if not self.calibration.value():
            self.window_.show_error(
                "Give calibration data: distillation trains the pruned model on it."
            )
            return
        try:
            recipe = self.preprocess.recipe()
        except ValueError as exc:
            self.window_.show_error(f"Check the preprocessing: {exc}")
            return
        user = {
            "ratio": round(self.prune_ratio.value(), 4),
            "importance": self.importance.currentText(),
            "distill_steps": self.distill_steps.value(),
            "data": self.calibration.value(),
            "evaluation": self.evaluation.value(),
            "labels": self.labels.value(),
            "max_accuracy_drop": self.max_drop.value(),
            "preprocess": recipe,
        }
        options, out = self.session.plan("prune", user)
        self.distill_plot.clear()
        self.distill_plot.setVisible(True)

        def on_data(event: dict) -> None:
            if event.get("figure_name"):
                self.distill_plot.set_figure_title(event["figure_name"])
            self.distill_plot.add(event)

        def done(result: dict) -> None:
            self.session.record("prune", user, result)
            self.show_prune_results(result)
            self._update_prune_group()

        self.window_.run_step("prune", options, [out], done, "Pruning", on_data=on_data)

    def show_prune_results(self, r: dict) -> None:
        show_table(self.results, present.prune_models(r))
        self.search.setVisible(False)
        self.results_notes.setText("\n".join(present.prune_lines(r)))

    def on_enter(self) -> None:
        from workflows.resources import resource

        model = self.session.model
        if (
            model
            and model.path
            in (
                str(resource("sample", "digits_cnn.pt2")),
                str(resource("sample", "digits_cnn.safetensors")),
            )
            and not self.calibration.value()
        ):
            # The sample comes with its own data: fill it in so a first run shows real accuracy.
            self.calibration.edit.setText(str(resource("sample", "digits_calibration.npz")))
            self.evaluation.edit.setText(str(resource("sample", "digits_test.npz")))
            self.labels.edit.setText(str(resource("sample", "labels.txt")))
        inspect = self.session.inspect
        if inspect is not None and inspect is not self._defaults_for:  # a new model: fit its input
            self._defaults_for = inspect
            self.preprocess.set_defaults(inspect["model"]["inputs"][0]["shape"])
            self._preview_timer.start()
        self._update_prune_group()
        self.distill_plot.apply_palette()

    def shutdown(self) -> None:
        """Stop running previews and start no more (the window is closing)."""
        self._closing = True
        self._preview_timer.stop()
        self._previews.shutdown()

    def refresh_preview(self) -> None:
        """Preview the calibration data after preprocessing (in a thread; newest request wins)."""
        if not self.session.inspect or self._closing:
            return
        try:
            recipe = self.preprocess.recipe()
        except ValueError as exc:
            self._previews.cancel()  # its answer is for a recipe no longer shown
            self.preview.clear(f"Preprocessing: {exc}")
            return
        self.session.preprocess = recipe
        options = {
            "data": self.calibration.value(),
            "inputs": self.session.inspect["model"]["inputs"],
            "preprocess": recipe,
            "count": 8,
        }
        self._previews.run(options)

    def _preview_ready(self, result: dict) -> None:
        self.preview.show_result(result)

    def _preview_failed(self, message: str, _details: str) -> None:
        self.preview.clear(f"<span style='color:#b91c1c'>{message}</span>")

    def convert(self) -> None:
        if not self.session.model:
            self.window_.show_error("Load a model first.")
            return
        user = {"opset": self.opset.value(), "simplify": self.simplify.isChecked()}
        options, out = self.session.plan("convert", user)

        def done(result: dict) -> None:
            self.session.record("convert", user, result)
            self.convert_status.setText(
                f"Wrote {relative(result['output'], self.session.root)} "
                f"({result['size_bytes'] / 1024:.1f} KB) in {result['seconds']:.1f} s. Validating…"
            )
            self.convert_status.setToolTip(result["output"])
            self._validate()

        self.window_.run_step("convert", options, [out], done, "Converting to ONNX")

    def _validate(self) -> None:
        user = {"inputs": self.evaluation.value()} if self.evaluation.value() else {}
        options, out = self.session.plan("validate", user)

        def done(result: dict) -> None:
            self.session.record("validate", user, result)
            worst = result["worst"]
            verdict = "matches the original" if result["passed"] else "DIFFERS from the original"
            self.convert_status.setText(
                f"{self.convert_status.text().removesuffix(' Validating…')} The ONNX model {verdict}: "
                f"max abs error {worst.get('max_abs_error', 0):.2g}, cosine "
                f"{worst.get('cosine_similarity', 1):.6f} (on {_file_name(result['inputs'])})."
            )

        self.window_.run_step("validate", options, [out], done, "Validating against the original")

    def quantize(self) -> None:
        if not self.session.model:
            self.window_.show_error("Load a model first.")
            return
        modes = [k for k, box in self.modes.items() if box.isChecked()]
        if not modes:
            self.window_.show_error("Choose at least one variant to make.")
            return
        try:
            recipe = self.preprocess.recipe()
        except ValueError as exc:
            self.window_.show_error(f"Check the preprocessing: {exc}")
            return
        user = {
            "modes": modes,
            "calibration": self.calibration.value(),
            "evaluation": self.evaluation.value(),
            "labels": self.labels.value(),
            "max_accuracy_drop": self.max_drop.value(),
            "preprocess": recipe,
        }
        options, out = self.session.plan("quantize", user)

        def done(result: dict) -> None:
            self.session.record("quantize", user, result)
            self.show_results(result)

        self.window_.run_step("quantize", options, [out], done, "Quantizing")

    def show_results(self, r: dict) -> None:
        show_table(self.results, present.quantize_variants(r))
        searched = [v for v in r["variants"] if (v.get("fallback") or {}).get("tries")]
        if searched:
            show_table(self.search, present.fallback_tries(searched[0]))
        self.search.setVisible(bool(searched))
        lines = present.quantize_data_lines(r) + present.fallback_lines(r)
        if r.get("warning"):
            lines.append(f"Note: {r['warning']}")
        self.results_notes.setText("\n".join(lines))
