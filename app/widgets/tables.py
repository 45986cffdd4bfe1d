"""Read-only tables filled with text rows (the small tables of the pages)."""

from __future__ import annotations

from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem

from workflows.present import Table


def text_table(headers: list[str], fit_contents: bool = False) -> QTableWidget:
    """A read-only table without row numbers; columns share the width, or fit their contents
    (the last one stretching)."""
    t = QTableWidget(0, len(headers))
    t.setHorizontalHeaderLabels(headers)
    header = t.horizontalHeader()
    if fit_contents:
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
    else:
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    t.verticalHeader().setVisible(False)
    t.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    return t


def fill_table(table: QTableWidget, rows: list[list[str]]) -> None:
    """Replace the table's rows with `rows` (one string per cell)."""
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))


def show_table(table: QTableWidget, t: Table, columns: list[str] | None = None) -> None:
    """Show a presenter table in `table`: all its columns, or those named in `columns`."""
    keep = [t.headers.index(c) for c in columns] if columns else range(len(t.headers))
    table.setColumnCount(len(keep))
    table.setHorizontalHeaderLabels([t.headers[i] for i in keep])
    fill_table(table, [[row[i] for i in keep] for row in t.rows])
