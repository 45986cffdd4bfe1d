"""A strip of samples as the model will see them (the engine's `preview` step), with ranges."""

from __future__ import annotations

import base64
from typing import Any

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

COLUMNS = 4


class DataPreview(QWidget):
    """Shows a `preview` step result: thumbnails (image-shaped inputs) and value ranges."""

    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.summary = QLabel("Choose calibration data to see a few samples after preprocessing.")
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(10)
        layout.addLayout(self.grid)
        self.tiles: list[QLabel] = []

    def clear(self, text: str) -> None:
        for tile in self.tiles:
            tile.deleteLater()
        self.tiles = []
        self.summary.setText(text)

    def show_result(self, r: dict[str, Any]) -> None:
        stats = r["inputs"][r["input"]]
        source = "synthetic inputs (no data chosen)" if r["synthetic"] else r["source"]
        self.clear(
            f"<b>{source}</b>: input <code>{r['input']}</code> {stats['dtype']} "
            f"{stats['shape']} · range {stats['min']:.3g} … {stats['max']:.3g} · "
            f"mean {stats['mean']:.3g} · std {stats['std']:.3g}"
        )
        for i, s in enumerate(r["samples"]):
            tile = QLabel()
            tile.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption = f"{s['min']:.2g} … {s['max']:.2g}"
            if s["label"] is not None:
                caption = f"label {s['label']}<br>{caption}"
            if s["thumbnail_png"]:
                pixmap = QPixmap()
                pixmap.loadFromData(QByteArray(base64.b64decode(s["thumbnail_png"])), "PNG")
                tile.setPixmap(pixmap)
                tile.setToolTip(caption.replace("<br>", ", "))
            else:
                tile.setText(f"#{i + 1}")
            tile.setAccessibleName(f"sample {i + 1}: {caption.replace('<br>', ', ')}")
            text = QLabel(caption)
            text.setAlignment(Qt.AlignmentFlag.AlignCenter)
            text.setObjectName("caption")
            row, col = divmod(i, COLUMNS)
            self.grid.addWidget(tile, 2 * row, col)
            self.grid.addWidget(text, 2 * row + 1, col)
            self.tiles += [tile, text]
