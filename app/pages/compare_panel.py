"""The Inspect page's compare tab (issue 16, item 2): two ONNX files of the session side by
side (the float model and a variant), each node coloured by what became of it (the compare
step), the changes listed below; a click on a node shows its counterparts on the other side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.widgets.graph_canvas import GraphCanvas
from app.widgets.tables import show_table, text_table
from app.workers import LatestOnly
from workflows import present

STATUS_COLOURS = {
    "kept": None,
    "replaced": QColor("#93c5fd"),
    "fused": QColor("#fcd34d"),
    "removed": QColor("#fca5a5"),
    "unmatched": QColor("#f0abfc"),
    "inserted": QColor("#86efac"),
}
LEGEND = " ".join(
    f"<span style='color:{c.name() if c else '#94a3b8'}'>■</span> {s}"
    for s, c in STATUS_COLOURS.items()
)


class ComparePanel(QWidget):
    """See module doc. `set_files([(label, path)])` offers the session's ONNX files."""

    compared = Signal(object)  # the compare step's result, once drawn

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Compare"))
        self.reference = QComboBox()
        self.candidate = QComboBox()
        for combo in (self.reference, self.candidate):
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            combo.currentIndexChanged.connect(lambda _: self.refresh())
        row.addWidget(self.reference)
        row.addWidget(QLabel("with"))
        row.addWidget(self.candidate)
        row.addStretch(1)
        layout.addLayout(row)
        self.summary = QLabel(LEGEND)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        split = QSplitter(Qt.Orientation.Vertical)
        sides = QSplitter(Qt.Orientation.Horizontal)
        self.left, self.right = GraphCanvas(), GraphCanvas()
        sides.addWidget(self.left)
        sides.addWidget(self.right)
        split.addWidget(sides)
        self.changes = text_table(["node", "op", "status", "in the variant", "why / how"], True)
        self.changes.cellClicked.connect(lambda r, _: self._row_clicked(r))
        split.addWidget(self.changes)
        split.setSizes([520, 200])
        layout.addWidget(split, 1)
        self.left.selected.connect(lambda box: self._selected(self.left, box))
        self.right.selected.connect(lambda box: self._selected(self.right, box))
        self.result: dict[str, Any] | None = None
        self.layouts: dict[str, dict[str, Any]] = {}
        self._workers = {
            "compare": LatestOnly("compare", self, inline=False),
            "left": LatestOnly("layout", self, inline=False),
            "right": LatestOnly("layout", self, inline=False),
        }
        self._workers["compare"].succeeded.connect(self._compared)
        self._workers["left"].succeeded.connect(lambda r: self._laid_out("left", r))
        self._workers["right"].succeeded.connect(lambda r: self._laid_out("right", r))
        for w in self._workers.values():
            w.failed.connect(lambda message, _: self.summary.setText(message))

    def set_files(self, files: list[tuple[str, Path]]) -> None:
        """The session's ONNX files; the float model and the first variant are chosen."""
        onnx = [(label, str(p)) for label, p in files if p.suffix.lower() == ".onnx"]
        int8 = [i for i, (label, _) in enumerate(onnx) if label.startswith("int8")]
        for combo, pick in ((self.reference, 0), (self.candidate, (int8 or [len(onnx) - 1])[0])):
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for label, path in onnx:
                combo.addItem(label, path)
            index = combo.findData(current) if current else -1
            combo.setCurrentIndex(index if index >= 0 else max(0, pick))
            combo.blockSignals(False)
        fp32 = next((i for i, (label, _) in enumerate(onnx) if label.startswith("fp32")), None)
        if fp32 is not None and self.reference.currentIndex() == 0 and len(onnx) > 2:
            self.reference.setCurrentIndex(fp32)

    def refresh(self) -> None:
        """Compare and lay out the chosen pair (in worker processes)."""
        ref, cand = self.reference.currentData(), self.candidate.currentData()
        if not ref or not cand or ref == cand:
            self.summary.setText("Choose two different ONNX files (convert and quantize the "
                                 "model on the next page to have some).")  # fmt: skip
            return
        self.result, self.layouts = None, {}
        self.summary.setText(f"Comparing {Path(ref).name} with {Path(cand).name} …")
        self._workers["compare"].run({"candidates": [cand], "model": ref})
        self._workers["left"].run({"model": ref})
        self._workers["right"].run({"model": cand})

    def shutdown(self) -> None:
        for w in self._workers.values():
            w.shutdown()

    def _compared(self, result: dict[str, Any]) -> None:
        self.result = result["candidates"][0]
        self._draw()

    def _laid_out(self, side: str, result: dict[str, Any]) -> None:
        self.layouts[side] = result
        (self.left if side == "left" else self.right).set_layout(result)
        self._draw()

    def _draw(self) -> None:
        """Colour both sides once the comparison and both layouts are in."""
        c = self.result
        if c is None or len(self.layouts) < 2:
            return
        self.summary.setText(present.compare_summary(c) + "<br>" + LEGEND)
        status = {r["node"]: r["status"] for r in c["nodes"]}
        theirs: dict[str, str] = {}
        for r in c["nodes"]:
            for n in r["counterparts"]:
                if r["status"] != "kept":
                    theirs[n] = r["status"]
        theirs.update({e["node"]: "inserted" for e in c["inserted"]})
        for canvas, states in ((self.left, status), (self.right, theirs)):
            names = canvas.names
            colours = []
            for members in canvas.members:
                found = [states[names[m]] for m in members if names[m] in states]
                changed = [s for s in found if s != "kept"]
                colours.append(STATUS_COLOURS[changed[0]] if changed else None)
            canvas.set_colours(colours, [], None)
        show_table(self.changes, present.compare_changes(c, limit=500))
        self.compared.emit(c)

    def _selected(self, canvas: GraphCanvas, box: int) -> None:
        """A node clicked on one side: its counterpart (or what it belongs to) on the other."""
        if self.result is None or len(self.layouts) < 2:
            return
        members = {canvas.names[m] for m in canvas.members[box]}
        if canvas is self.left:
            rows = [r for r in self.result["nodes"] if r["node"] in members]
            targets = [n for r in rows for n in r["counterparts"]]
            other = self.right
        else:
            rows = [r for r in self.result["nodes"] if members & set(r["counterparts"])]
            targets = [r["node"] for r in rows]
            other = self.left
        boxes = [b for b in (other.box_of(t) for t in targets) if b >= 0]
        if boxes and other.current != boxes[0]:
            other.blockSignals(True)  # no ping-pong between the two sides
            other.jump_to(boxes[0])
            other.blockSignals(False)

    def _row_clicked(self, row: int) -> None:
        item = self.changes.item(row, 0)
        if item is None:
            return
        box = self.left.box_of(item.text())
        if box >= 0:
            self.left.jump_to(box)
