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
    QSplitter,
    QVBoxLayout,
)

from app.pages.base import Page
from app.pages.compress_panel import CompressPanel
from app.widgets.data_preview import DataPreview
from app.widgets.declared import declared, declared_default
from app.widgets.distill_plot import DistillPlot
from app.widgets.path_picker import PathPicker
from app.widgets.preprocess_form import PreprocessForm
from app.widgets.tables import show_table, text_table
from app.widgets.tradeoff_chart import TradeoffChart
from app.workers import LatestOnly
from workflows import present
from workflows.handoff import points, relative
from workflows.steps.convert import ConvertOptions
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
        self.compression = CompressPanel(self)
        right.addWidget(self.compression)
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
        # Side by side: the live distillation plot (while pruning) and the variants' trade-off
        # (the Summary's chart), each shown once it has something to show.
        self.plots = QSplitter(Qt.Orientation.Horizontal)
        self.plots.setMaximumHeight(240)
        self.distill_plot = DistillPlot()
        self.distill_plot.setVisible(False)
        self.plots.addWidget(self.distill_plot)
        self.tradeoff = TradeoffChart(compact=True)
        self.tradeoff.setMinimumHeight(200)
        self.tradeoff.setVisible(False)
        self.plots.addWidget(self.tradeoff)
        self.plots.setVisible(False)
        layout.addWidget(self.plots)
        self.results_notes = QLabel(wordWrap=True)
        self.results_notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.results_notes)

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
        self.compression.refresh()
        self.distill_plot.apply_palette()
        self.show_tradeoff()  # a benchmark on the Test page adds latencies

    def show_tradeoff(self) -> None:
        """The variants made so far on one chart, once two of them have an accuracy."""
        found = points(self.session.results) if self.session.model else []
        comparable = sum(p.top1 is not None for p in found) >= 2
        self.tradeoff.setVisible(comparable)
        if comparable:
            self.tradeoff.show_points(found)
        self.plots.setVisible(not (self.distill_plot.isHidden() and self.tradeoff.isHidden()))

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
        self.show_tradeoff()
