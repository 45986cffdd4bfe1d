"""Inspect: summary, inputs/outputs, op histogram and a searchable node table (native panels)."""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QLineEdit,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.pages.base import Page


def _shape(shape) -> str:
    return (
        "?" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
    )


def _table(headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    return t


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(value))


class InspectPage(Page):
    title = "Inspect"

    def __init__(self, window) -> None:
        super().__init__(window)
        layout = QVBoxLayout(self)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.summary)
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Inputs and outputs"))
        self.io = _table(["", "name", "dtype", "shape"])
        left_layout.addWidget(self.io)
        left_layout.addWidget(QLabel("Operators"))
        self.ops = _table(["op", "count"])
        left_layout.addWidget(self.ops, 1)
        split.addWidget(left)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search nodes by name, op or tensor…")
        right_layout.addWidget(self.search)
        self.graph_note = QLabel()
        self.graph_note.setWordWrap(True)
        right_layout.addWidget(self.graph_note)
        # A model/view table: 10,000 nodes stay responsive (only visible rows are drawn).
        self.nodes = QStandardItemModel(0, 4)
        self.nodes.setHorizontalHeaderLabels(["node", "op", "inputs", "outputs"])
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.nodes)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        view = QTableView()
        view.setModel(self.proxy)
        view.setSortingEnabled(True)
        view.horizontalHeader().setStretchLastSection(True)
        view.verticalHeader().setVisible(False)
        self.node_view = view
        right_layout.addWidget(view, 1)
        split.addWidget(right)
        split.setSizes([380, 620])
        layout.addWidget(split, 1)

    def on_enter(self) -> None:
        r = self.session.inspect
        if not r:
            self.summary.setText("Load a model first.")
            return
        m = r["model"]
        facts = [
            f"<b>{m['path']}</b>",
            f"format: {m['format']}",
            f"size: {m['size_bytes'] / 1024:,.1f} KB",
            f"parameters: {m['parameters'] or 0:,}",
        ]
        if m.get("producer"):
            facts.append(f"producer: {m['producer']}")
        if "macs_per_sample" in r:
            facts.append(f"MACs/sample: {r['macs_per_sample']:,}")
        if r.get("opsets"):
            facts.append("opsets: " + ", ".join(f"{d} {v}" for d, v in r["opsets"].items()))
        if r.get("custom_ops"):
            facts.append(
                f"<span style='color:#b45309'>custom ops: {', '.join(r['custom_ops'])}</span>"
            )
        self.summary.setText(" · ".join(facts))
        _fill(
            self.io,
            [
                [kind[:-1], s["name"], s["dtype"], _shape(s["shape"])]
                for kind in ("inputs", "outputs")
                for s in m[kind]
            ],
        )
        _fill(self.ops, [[op, str(n)] for op, n in r.get("op_histogram", {}).items()])
        self.nodes.removeRows(0, self.nodes.rowCount())
        graph = r.get("graph")
        self.graph_note.setVisible(graph is None)
        self.graph_note.setText(
            f"Node by node: shown for ONNX and TFLite models. This {m['format']} model's operators are "
            "counted on the left; convert it to ONNX (next page) to see every node and tensor shape."
        )
        for n in (graph or {}).get("nodes", []):
            self.nodes.appendRow(
                [
                    QStandardItem(n["name"]),
                    QStandardItem(n["op_type"]),
                    QStandardItem(", ".join(n["inputs"])),
                    QStandardItem(", ".join(n["outputs"])),
                ]
            )
