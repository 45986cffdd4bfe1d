"""Render the app icon (resources/icons/dockyard.svg) as the installers' icons: dockyard.png
(512 px; Linux, the .desktop file), dockyard.ico (16-256 px; Windows) and dockyard.icns (macOS).
Run after changing the SVG; the outputs are committed.

    QT_QPA_PLATFORM=offscreen python scripts/make_icons.py
"""

from __future__ import annotations

import io
import os
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"


def render(svg: Path, size: int) -> bytes:
    """The SVG drawn at size x size, as PNG bytes (Qt's SVG renderer, antialiased)."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data.data())


def main() -> None:
    from PIL import Image

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    big = Image.open(io.BytesIO(render(ICONS / "dockyard.svg", 1024))).convert("RGBA")
    big.resize((512, 512), Image.Resampling.LANCZOS).save(ICONS / "dockyard.png", optimize=True)
    big.save(ICONS / "dockyard.ico", sizes=[(s, s) for s in (16, 24, 32, 48, 64, 128, 256)])
    big.save(ICONS / "dockyard.icns")  # Pillow writes every ICNS size from the 1024 px image
    for name in ("dockyard.png", "dockyard.ico", "dockyard.icns"):
        print(f"{ICONS / name}: {(ICONS / name).stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
