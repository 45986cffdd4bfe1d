"""The app's icons: SVGs in resources/icons, so they stay sharp at any display scale."""

from __future__ import annotations

import functools

from PySide6.QtCore import QByteArray, QSize, Qt
from PySide6.QtGui import QIcon, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from workflows.resources import resource

LINE_COLOUR = "#6b7a90"  # the stroke of the line icons: readable on light and dark backgrounds
SIZES = (16, 20, 24, 32)


def _render(svg: bytes, size: int, ratio: float) -> QPixmap:
    pixmap = QPixmap(QSize(round(size * ratio), round(size * ratio)))
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    QSvgRenderer(QByteArray(svg)).render(painter)
    painter.end()
    pixmap.setDevicePixelRatio(ratio)
    return pixmap


@functools.cache
def icon(name: str) -> QIcon:
    """resources/icons/<name>.svg as a QIcon: rendered by Qt at the device pixel ratio asked, and
    drawn white where its row is selected (the grey line would vanish on the highlight)."""
    path = resource("icons", f"{name}.svg")
    result = QIcon(str(path))
    svg = path.read_bytes()
    if LINE_COLOUR.encode() in svg:
        white = svg.replace(LINE_COLOUR.encode(), b"#ffffff")
        for size in SIZES:
            for ratio in (1.0, 2.0, 3.0):
                result.addPixmap(_render(white, size, ratio), QIcon.Mode.Selected)
    return result
