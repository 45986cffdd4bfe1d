"""Inspect: the graph in Netron, plus native panels (inputs/outputs, op histogram, a searchable
node table) and the model's figures (size, parameters, MACs, opsets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.netron_view import NetronView
from app.pages.base import Page
from app.pages.compare_panel import ComparePanel
from app.pages.graph_panel import GraphPanel
from app.widgets.tables import fill_table, text_table

Index = QModelIndex | QPersistentModelIndex


# Model files Netron cannot open (its sklearn reader takes pickles only).
NETRON_CANNOT_DRAW = (".skops",)


def _shape(shape) -> str:
    return (
        "?" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
    )


class NodeTableModel(QAbstractTableModel):
    """The inspect result's nodes, read in place: no item per cell, so 10,000 nodes load at once
    and only the visible rows are ever formatted. Per-node figures (the insight step's SQNR and
    time) are extra columns that sort by number (SORT_ROLE)."""

    HEADERS = ("node", "op", "inputs", "outputs")
    SORT_ROLE = Qt.ItemDataRole.UserRole

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[tuple[str, str, str, str]] = []
        self._figures: list[tuple[str, dict[str, float]]] = []

    def set_nodes(self, nodes: list[dict[str, Any]]) -> None:
        self.beginResetModel()
        self._rows = [
            (n["name"], n["op_type"], ", ".join(n["inputs"]), ", ".join(n["outputs"]))
            for n in nodes
        ]
        self.endResetModel()

    def set_figures(self, columns: list[tuple[str, dict[str, float]]]) -> None:
        """Extra columns: (header, value per node name)."""
        self.beginResetModel()
        self._figures = columns
        self.endResetModel()

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008 (Qt's API default)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS) + len(self._figures)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = self._rows[index.row()], index.column()
        if col < len(self.HEADERS):
            if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole, self.SORT_ROLE):
                return row[col]
            return None
        value = self._figures[col - len(self.HEADERS)][1].get(row[0])
        if role == self.SORT_ROLE:  # unmeasured nodes sort last
            return float("inf") if value is None else value
        if role == Qt.ItemDataRole.DisplayRole:
            return "" if value is None else f"{value:.4g}"
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            if section < len(self.HEADERS):
                return self.HEADERS[section]
            return self._figures[section - len(self.HEADERS)][0]
        return None


class InspectPage(Page):
    title = "Inspect"
    icon = "inspect"

    def __init__(self, window) -> None:
        super().__init__(window)
        layout = QVBoxLayout(self)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)

        self.tabs = QTabWidget()
        graph_tab = QWidget()
        graph_layout = QVBoxLayout(graph_tab)
        graph_layout.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show"))
        self.variant = QComboBox()
        self.variant.setToolTip("The loaded model, or a file made from it on the next page")
        self.variant.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.variant.currentIndexChanged.connect(lambda _: self._show_graph())
        row.addWidget(self.variant)
        row.addStretch(1)
        graph_layout.addLayout(row)
        self.netron = NetronView()
        graph_layout.addWidget(self.netron, 1)
        self.tabs.addTab(graph_tab, "Graph (Netron)")
        self.native = GraphPanel()
        self.native.measure_requested.connect(self._measure)
        self.native.edit_requested.connect(self.ask_edit)
        self.tabs.addTab(self.native, "Graph (native, overlays)")
        self.compare = ComparePanel()
        self.tabs.addTab(self.compare, "Compare variants")
        self.tabs.addTab(self._tables(), "Inputs, operators, nodes")
        self.tabs.currentChanged.connect(lambda _: self._show_graph())
        layout.addWidget(self.tabs, 1)
        self._shown: str | None = None
        self._inspected: dict[str, Any] | None = None

    def _tables(self) -> QWidget:
        split = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Inputs and outputs"))
        self.io = text_table(["", "name", "dtype", "shape"])
        left_layout.addWidget(self.io)
        left_layout.addWidget(QLabel("Operators"))
        self.ops = text_table(["op", "count"])
        left_layout.addWidget(self.ops, 1)
        split.addWidget(left)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search nodes by name, op or tensor…")
        self.search.setClearButtonEnabled(True)
        right_layout.addWidget(self.search)
        self.graph_note = QLabel()
        self.graph_note.setWordWrap(True)
        right_layout.addWidget(self.graph_note)
        self.nodes = NodeTableModel()
        self.proxy = QSortFilterProxyModel()
        self.proxy.setSourceModel(self.nodes)
        self.proxy.setFilterKeyColumn(-1)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setSortRole(NodeTableModel.SORT_ROLE)
        self.proxy.setFilterRole(Qt.ItemDataRole.DisplayRole)
        self.search.textChanged.connect(self.proxy.setFilterFixedString)
        view = QTableView()
        view.setModel(self.proxy)
        view.setSortingEnabled(True)
        view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # graph order until a header is clicked
        view.horizontalHeader().setStretchLastSection(True)
        view.verticalHeader().setVisible(False)
        view.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.node_view = view
        right_layout.addWidget(view, 1)
        split.addWidget(right)
        split.setSizes([380, 620])
        return split

    def graph_files(self) -> list[tuple[str, Path]]:
        """What the graph view can show: the loaded model and the files made from it."""
        s = self.session
        if not s.model:
            return []
        files = [(f"Loaded model — {Path(s.model.path).name}", Path(s.model.path))]
        if convert := s.results.get("convert"):
            files.append((f"ONNX — {Path(convert['output']).name}", Path(convert["output"])))
        if edit := s.results.get("edit"):
            files.append((f"edited — {Path(edit['model']).name}", Path(edit["model"])))
        if quantize := s.results.get("quantize"):
            folder = Path(quantize["output"])
            for v in quantize["variants"]:
                files.append((f"{v['name']} — {v['file']}", folder / v["file"]))
        return [(label, path) for label, path in files if path.exists()]

    def on_enter(self) -> None:
        r = self.session.inspect
        if not r:
            self.summary.setText("Load a model first.")
            return
        if r is not self._inspected:  # a newly loaded model: reload the graph even if same path
            self._inspected, self._shown = r, None
        self._fill_variants()
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
        fill_table(
            self.io,
            [
                [kind[:-1], s["name"], s["dtype"], _shape(s["shape"])]
                for kind in ("inputs", "outputs")
                for s in m[kind]
            ],
        )
        fill_table(self.ops, [[op, str(n)] for op, n in r.get("op_histogram", {}).items()])
        graph = r.get("graph")
        self.graph_note.setVisible(graph is None)
        drawn = (
            "" if m["path"].lower().endswith(NETRON_CANNOT_DRAW) else " and drawn in the Graph tab"
        )
        self.graph_note.setText(
            f"Node by node: listed for ONNX and TFLite models. This {m['format']} model's operators "
            f"are counted on the left{drawn}; convert it to ONNX (next page) to list every node "
            "and tensor."
        )
        self.nodes.set_nodes((graph or {}).get("nodes", []))
        self._show_graph()

    def shutdown(self) -> None:
        self.netron.release()
        self.native.shutdown()
        self.compare.shutdown()

    def _measure(self, path: str) -> None:
        """Run the insight step: on the quantize step's variants when there are any, else on
        the file shown (its time per node)."""
        quantize = self.session.results.get("quantize")
        if quantize:
            options = {"variants": [quantize["output"]]}
        elif path.lower().endswith(".onnx"):
            options = {"variants": [path], "model": path}
        else:
            self.window_.show_error("Per-node figures are measured on ONNX models: convert the "
                                   "model first (next page).")  # fmt: skip
            return
        self.window_.run_step("insight", options, [], self.show_insight, "Measuring per node")

    def ask_edit(self) -> None:
        """The edit dialog for the model the edit step takes (the converted ONNX, if any)."""
        from PySide6.QtWidgets import QDialog

        from app.pages.edit_dialog import EditDialog
        from workflows.formats import onnx_format

        if not self.session.model:
            return
        source = Path(self.session.plan("edit", {})[0]["model"])
        if source.suffix.lower() != ".onnx" or not source.exists():
            self.window_.show_error("Graph edits work on ONNX: convert the model first (next "
                                    "page), then edit the converted graph.")  # fmt: skip
            return
        model = onnx_format.load(source)
        dialog = EditDialog([{"name": s.name, "shape": _shape(s.shape)} for s in model.inputs],
                            [{"name": s.name} for s in model.outputs], self)  # fmt: skip
        if dialog.exec() == QDialog.DialogCode.Accepted:
            self.run_edit(dialog.options())

    def run_edit(self, user: dict[str, Any]) -> None:
        """Run the edit step; the edited file joins the graph views' choices and the workflow."""
        options, out = self.session.plan("edit", user)

        def done(result: dict[str, Any]) -> None:
            self.session.record("edit", user, result)
            self._fill_variants()
            v = result["validation"]
            self.native.legend.setText(
                "Edited: " + "; ".join(result["edits"]) + f". Checked on {v['samples']} samples: "
                f"max |diff| {v['max_abs_diff']:.3g}. Steps after it take "
                f"{Path(result['model']).name}."
            )

        self.window_.run_step("edit", options, [out], done, "Editing the graph")

    def show_insight(self, result: dict[str, Any]) -> None:
        """Overlays on the native graph and columns in the node table."""
        self.session.results["insight"] = result
        self.native.set_insight(result)
        columns = [(o.label.replace(" — ", " (") + ")", o.values) for o in self.native.available]
        self.nodes.set_figures(columns)
        if self.native.available:
            first = self.native.overlay.findData(self.native.available[0].key)
            self.native.overlay.setCurrentIndex(max(first, 0))

    def _fill_variants(self) -> None:
        files = self.graph_files()
        current = self.variant.currentData()
        self.variant.blockSignals(True)
        self.variant.clear()
        for label, path in files:
            self.variant.addItem(label, str(path))
        index = self.variant.findData(current) if current else -1
        self.variant.setCurrentIndex(max(index, 0))
        self.variant.blockSignals(False)

    def _show_graph(self) -> None:
        """Open the chosen file in Netron when the graph tab is visible (Chromium starts lazily)."""
        path = self.variant.currentData()
        if self.tabs.currentWidget() is self.compare and self.isVisible():
            pair = (self.compare.reference.currentData(), self.compare.candidate.currentData())
            self.compare.set_files(self.graph_files())
            now = (self.compare.reference.currentData(), self.compare.candidate.currentData())
            if now != pair or self.compare.result is None:
                self.compare.refresh()
            return
        if path and self.tabs.currentWidget() is self.native and self.isVisible():
            self.native.show_file(path)
            return
        if not path or self.tabs.currentIndex() != 0 or not self.isVisible():
            return
        try:  # a file made again under the same name (convert re-run) is shown again
            shown = f"{path}@{Path(path).stat().st_mtime_ns}"
        except OSError:
            shown = path
        if shown != self._shown:
            self._shown = shown
            if Path(path).suffix.lower() in NETRON_CANNOT_DRAW:
                self.netron.show_text(
                    f"Netron cannot draw {Path(path).name}: it reads scikit-learn pickles, not "
                    ".skops files. Convert the model to ONNX (next page) and choose it under "
                    "Show to see its graph; its steps are listed under Inputs, operators, nodes."
                )
                return
            self.netron.show_model(path)
