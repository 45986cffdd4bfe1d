"""The Inspect page's native graph tab (issue 16): any ONNX file of the session drawn by
`GraphCanvas` from a layout computed in a worker process, with per-node overlays from the
insight step (INT8 SQNR, FP16 deviation, time per node), a legend, a threshold, "jump to
worst", search, and name-scope blocks that collapse and open."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.widgets.graph_canvas import GraphCanvas, badness_colour
from app.workers import LatestOnly
from workflows.graph_layout import empty
from workflows.insight.overlay import BAD_DB, GOOD_DB, Overlay, box_values, overlays
from workflows.present import LOSSLESS_DB

LEGEND = (
    f"<span style='color:#16a34a'>■</span> ≥ {GOOD_DB:.0f} dB "
    f"<span style='color:#f59e0b'>■</span> <span style='color:#dc2626'>■</span> ≤ {BAD_DB:.0f} dB"
)


def _value_text(value: float | None, unit: str) -> str:
    """A box's second line: "42.6 dB", "lossless" (no noise to measure), "0.012 ms"."""
    if value is None:
        return ""
    if unit == "dB":
        return "lossless" if value >= LOSSLESS_DB else f"{value:.1f} dB"
    return f"{value:.3f} ms"


class GraphPanel(QWidget):
    """See module doc. `show_file(path)` draws a file; `set_insight(result)` adds overlays."""

    laid_out = Signal(object)  # the layout step's result, once drawn
    measure_requested = Signal(str)  # the file to run the insight step on
    edit_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Find a node (Enter: next)…")
        self.search.setClearButtonEnabled(True)
        self.search.returnPressed.connect(self.find_next)
        row.addWidget(self.search, 2)
        row.addWidget(QLabel("Blocks"))
        self.depth = QSpinBox()
        self.depth.setRange(0, 8)
        self.depth.setToolTip("Collapse name scopes this deep into one box (0: every node); "
                              "double-click a block to open it")  # fmt: skip
        self.depth.valueChanged.connect(lambda _: self._relayout(reset=True))
        row.addWidget(self.depth)
        row.addWidget(QLabel("Overlay"))
        self.overlay = QComboBox()
        self.overlay.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.overlay.currentIndexChanged.connect(lambda _: self._recolour())
        row.addWidget(self.overlay)
        self.threshold = QSlider(Qt.Orientation.Horizontal)
        self.threshold.setRange(0, 100)
        self.threshold.setValue(0)
        self.threshold.setToolTip("Highlight only the nodes worse than this")
        self.threshold.valueChanged.connect(lambda _: self._recolour())
        row.addWidget(self.threshold, 1)
        self.threshold_label = QLabel()
        row.addWidget(self.threshold_label)
        self.worst = QPushButton("Jump to worst")
        self.worst.clicked.connect(self.jump_to_worst)
        row.addWidget(self.worst)
        self.measure = QPushButton("Measure per node…")
        self.measure.setToolTip("Run the insight step: per-node INT8/FP16 error of the quantized "
                                "variants and time per node (ONNX Runtime's profiler)")  # fmt: skip
        self.measure.clicked.connect(lambda: self.measure_requested.emit(self.path or ""))
        row.addWidget(self.measure)
        self.edit = QPushButton("Edit graph…")
        self.edit.setToolTip("Keep or drop outputs, fix or free input dimensions, rename inputs "
                             "and outputs; checked against the original, written as a new file")  # fmt: skip
        self.edit.clicked.connect(self.edit_requested.emit)
        row.addWidget(self.edit)
        layout.addLayout(row)
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.legend)
        self.canvas = GraphCanvas()
        self.canvas.block_opened.connect(self.open_block)
        self.canvas.selected.connect(self._describe)
        layout.addWidget(self.canvas, 1)
        self.path: str | None = None
        self._shown: str | None = None
        self.result: dict[str, Any] | None = None
        self.expanded: list[str] = []
        self.available: list[Overlay] = []
        self._found = -1
        self._layouts = LatestOnly("layout", self, inline=False)
        self._layouts.succeeded.connect(self._laid_out)
        self._layouts.failed.connect(lambda message, _: self.legend.setText(message))
        self._recolour()

    # Files and layouts ------------------------------------------------------------------
    def show_file(self, path: str) -> None:
        """Lay out and draw an ONNX file (other formats: a note to convert first)."""
        try:  # a file made again under the same name (convert re-run) is laid out again
            shown = f"{path}@{Path(path).stat().st_mtime_ns}"
        except OSError:
            shown = path
        if shown == self._shown:
            return
        self._shown, self.path, self.expanded = shown, path, []
        if not path.lower().endswith(".onnx"):
            self.canvas.set_layout(empty())
            self.legend.setText(f"{Path(path).name}: the native view draws ONNX graphs; "
                                "convert the model (next page) and choose the ONNX file.")  # fmt: skip
            return
        self._relayout()

    def _relayout(self, reset: bool = False) -> None:
        if reset:
            self.expanded = []
        if self.path and self.path.lower().endswith(".onnx"):
            self.legend.setText(f"Laying out {Path(self.path).name} …")
            self._layouts.run({"model": self.path, "depth": self.depth.value(),
                               "expanded": list(self.expanded)})  # fmt: skip

    def _laid_out(self, result: dict[str, Any]) -> None:
        self.result = result
        self.canvas.set_layout(result)
        self._fill_overlays()
        self.laid_out.emit(result)

    def open_block(self, group: str) -> None:
        """Show a collapsed block's contents (its next scope level)."""
        if group not in self.expanded:
            self.expanded.append(group)
            self._relayout()

    def shutdown(self) -> None:
        self._layouts.shutdown()

    # Overlays ---------------------------------------------------------------------------
    def set_insight(self, insight: dict[str, Any] | None) -> None:
        """The insight step's result: its overlays become choices (those naming nodes here)."""
        self.available = overlays(insight) if insight else []
        self._fill_overlays()

    def _fill_overlays(self) -> None:
        names = set(self.canvas.names)
        current = self.overlay.currentData()
        self.overlay.blockSignals(True)
        self.overlay.clear()
        self.overlay.addItem("none", None)
        for o in self.available:
            if names & set(o.values):
                self.overlay.addItem(o.label, o.key)
        index = self.overlay.findData(current) if current else -1
        self.overlay.setCurrentIndex(max(index, 0))
        self.overlay.blockSignals(False)
        self._recolour()

    def chosen(self) -> Overlay | None:
        key = self.overlay.currentData()
        return next((o for o in self.available if o.key == key), None)

    def threshold_value(self, o: Overlay) -> float:
        """The slider as a value: 0-60 dB for SQNR, 0-100 % of the slowest node for time."""
        if o.higher_is_better:
            return 60.0 * self.threshold.value() / 100
        return max(o.values.values(), default=0.0) * self.threshold.value() / 100

    def _recolour(self) -> None:
        o = self.chosen()
        has = o is not None and self.result is not None
        for w in (self.threshold, self.worst):
            w.setEnabled(has)
        if not has:
            self.threshold_label.setText("")
            if self.result is not None:
                self.legend.setText(f"{len(self.canvas.names):,} nodes; "
                                    f"{self.canvas.count:,} boxes drawn")  # fmt: skip
            self.canvas.set_colours([], [], None)
            return
        names = self.canvas.names
        values = box_values(o, self.result["boxes"], names)
        colours = [badness_colour(o.badness(v)) for v in values]
        text = [_value_text(v, o.unit) for v in values]
        limit = self.threshold_value(o)
        failing = o.failing(limit)
        highlight = None
        if self.threshold.value() > 0:
            highlight = {i for i, members in enumerate(self.canvas.members)
                         if any(names[m] in failing for m in members)}  # fmt: skip
        word = "below" if o.higher_is_better else "above"
        self.threshold_label.setText(f"{word} {limit:.1f} {o.unit}: {len(failing)} nodes"
                                     if self.threshold.value() else "threshold off")  # fmt: skip
        scale = LEGEND if o.higher_is_better else (
            "<span style='color:#16a34a'>■</span> fast "
            "<span style='color:#dc2626'>■</span> slowest node")  # fmt: skip
        self.legend.setText(f"{o.label}: {scale} · {len(o.values):,} nodes measured")
        self.canvas.set_colours(colours, text, highlight)

    def jump_to_worst(self) -> None:
        """Centre the view on the overlay's worst node."""
        o = self.chosen()
        worst = o.worst() if o else None
        box = self.canvas.box_of(worst) if worst is not None else -1
        if box >= 0:
            self.canvas.jump_to(box)

    # Search -----------------------------------------------------------------------------
    def find_next(self) -> int:
        """Jump to the next box whose label, or one of whose nodes, matches the search."""
        text = self.search.text().strip().lower()
        if not text or self.result is None:
            return -1
        names, labels, members = self.canvas.names, self.canvas.labels, self.canvas.members
        count = len(labels)
        for k in range(1, count + 1):
            i = (self._found + k) % count
            if text in labels[i].lower() or any(text in names[m].lower() for m in members[i]):
                self._found = i
                self.canvas.jump_to(i)
                return i
        self.legend.setText(f"No node matches {self.search.text()!r}")
        return -1

    def _describe(self, box: int) -> None:
        if self.result is None:
            return
        members = self.canvas.members[box]
        listed = ", ".join(self.canvas.names[m] for m in members[:6])
        more = f" … ({len(members)} nodes)" if len(members) > 6 else ""
        self.setToolTip(f"{self.result['boxes']['label'][box]}: {listed}{more}")
