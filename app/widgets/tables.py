"""Read-only tables filled with text rows (the small tables of the pages)."""

from __future__ import annotations

from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem


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
