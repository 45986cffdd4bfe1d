"""Compress beyond INT8, on the Convert & Quantize page: structured pruning with distillation
(eager PyTorch) and weight sparsity / clustering for size (any model). Uses the page's data
pickers, preprocessing, accuracy gate and results area."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
)

from app.widgets.declared import declared, declared_choice, declared_default
from app.widgets.tables import show_table
from workflows import present
from workflows.steps.compress import CompressOptions
from workflows.steps.prune import PRUNABLE, PruneOptions

if TYPE_CHECKING:
    from app.pages.convert_page import ConvertPage


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setObjectName("hint")
    return label


class CompressPanel(QGroupBox):
    """The two compression steps' forms and buttons; results go to the page's table."""

    def __init__(self, page: ConvertPage) -> None:
        super().__init__("Compress beyond INT8")
        self.page = page
        form = QFormLayout(self)
        self.prune_ratio = QDoubleSpinBox()
        self.prune_ratio.setRange(0.05, 0.95)
        self.prune_ratio.setSingleStep(0.05)
        declared(self.prune_ratio, PruneOptions, "ratio")
        self.importance = declared_choice(PruneOptions, "importance")
        self.distill_steps = QSpinBox()
        self.distill_steps.setRange(0, 100_000)
        self.distill_steps.setSingleStep(100)
        declared(self.distill_steps, PruneOptions, "distill_steps")
        row = QHBoxLayout()
        row.addWidget(self.prune_ratio)
        row.addWidget(self.importance)
        form.addRow("Channels removed", row)
        form.addRow("Distillation steps", self.distill_steps)
        form.addRow(_hint("Eager PyTorch: removes whole channels, then the original teaches the "
                          "pruned model on the calibration data (no labels needed) until the "
                          "accuracy gate passes."))  # fmt: skip
        self.prune_button = QPushButton("Prune and distil")
        self.prune_button.clicked.connect(self.prune)
        form.addRow("", self.prune_button)

        self.sparsity_box = QCheckBox("Zeros")
        self.sparsity_box.setChecked("sparsity" in declared_default(CompressOptions, "methods"))
        self.sparsity = QDoubleSpinBox()
        self.sparsity.setRange(0.1, 0.98)
        self.sparsity.setSingleStep(0.05)
        declared(self.sparsity, CompressOptions, "sparsity")
        self.cluster_box = QCheckBox("Clusters")
        self.clusters = QSpinBox()
        self.clusters.setRange(2, 256)
        declared(self.clusters, CompressOptions, "clusters")
        weights = QHBoxLayout()
        for widget in (self.sparsity_box, self.sparsity, self.cluster_box, self.clusters):
            weights.addWidget(widget)
        form.addRow("Weights", weights)
        form.addRow(_hint("Any model, for size once zipped: layer by layer by sensitivity, sparse "
                          "layers re-solved on the calibration data. Runtimes run them dense: "
                          "p50 is measured, not promised."))  # fmt: skip
        self.compress_button = QPushButton("Compress weights")
        self.compress_button.clicked.connect(self.compress)
        form.addRow("", self.compress_button)

    @property
    def session(self) -> Any:
        return self.page.session

    def prunable(self) -> bool:
        inspect = self.session.inspect
        return bool(inspect) and inspect["model"]["format"] in PRUNABLE

    def refresh(self) -> None:
        """Enable what fits the loaded model; say what quantize will take after pruning."""
        prunable = self.prunable()
        self.prune_button.setEnabled(prunable)
        tip = ""
        if not prunable and self.session.inspect:
            tip = (
                "Pruning rewrites PyTorch modules: open the model as its Python file and weights "
                f"(eager PyTorch), not as {self.session.inspect['model']['format']}."
            )
        self.prune_button.setToolTip(tip)
        pruned = "prune" in self.session.results
        self.page.quantize_note.setVisible(pruned)
        self.page.quantize_note.setText(
            "Quantizes the pruned model (pruned + INT8)." if pruned else ""
        )

    def _common(self) -> dict[str, Any] | None:
        """The page's data, labels, gate and preprocessing; None (and a message) when unusable."""
        p = self.page
        try:
            recipe = p.preprocess.recipe()
        except ValueError as exc:
            p.window_.show_error(f"Check the preprocessing: {exc}")
            return None
        return {
            "evaluation": p.evaluation.value(),
            "labels": p.labels.value(),
            "max_accuracy_drop": p.max_drop.value(),
            "preprocess": recipe,
        }

    def prune(self) -> None:
        p = self.page
        if not self.prunable():
            p.window_.show_error(
                "Pruning needs an eager PyTorch model: load its weights with the Python file "
                "that defines it (Model file) and an input shape."
            )
            return
        if not p.calibration.value():
            p.window_.show_error(
                "Give calibration data: distillation trains the pruned model on it."
            )
            return
        common = self._common()
        if common is None:
            return
        user = {
            "ratio": round(self.prune_ratio.value(), 4),
            "importance": self.importance.currentText(),
            "distill_steps": self.distill_steps.value(),
            "data": p.calibration.value(),
            **common,
        }
        options, out = self.session.plan("prune", user)
        p.distill_plot.clear()
        p.distill_plot.setVisible(True)
        p.show_tradeoff()

        def on_data(event: dict) -> None:
            if event.get("figure_name"):
                p.distill_plot.set_figure_title(event["figure_name"])
            p.distill_plot.add(event)

        def done(result: dict) -> None:
            self.session.record("prune", user, result)
            self.show_results(present.prune_models(result), present.prune_lines(result))
            self.refresh()

        p.window_.run_step("prune", options, [out], done, "Pruning", on_data=on_data)

    def compress(self) -> None:
        p = self.page
        methods = [m for m, box in (("sparsity", self.sparsity_box), ("cluster", self.cluster_box))
                   if box.isChecked()]  # fmt: skip
        if not methods:
            p.window_.show_error("Choose zeros, clusters or both.")
            return
        common = self._common()
        if common is None:
            return
        user = {
            "methods": methods,
            "sparsity": round(self.sparsity.value(), 4),
            "clusters": self.clusters.value(),
            "calibration": p.calibration.value(),
            **common,
        }
        options, out = self.session.plan("compress", user)

        def done(result: dict) -> None:
            self.session.record("compress", user, result)
            p.distill_plot.setVisible(False)
            self.show_results(present.compress_variants(result), present.compress_lines(result))

        p.window_.run_step("compress", options, [out], done, "Compressing weights")

    def show_results(self, table: present.Table, lines: list[str]) -> None:
        show_table(self.page.results, table)
        self.page.search.setVisible(False)
        self.page.results_notes.setText("\n".join(lines))
        self.page.show_tradeoff()
