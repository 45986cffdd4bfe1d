"""A path shown the way people read it: elided in the middle (the file or folder name at the
end stays visible), the full path as a tooltip, and Copy path / Open folder on right-click."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QResizeEvent
from PySide6.QtWidgets import QLabel, QMenu, QSizePolicy, QWidget


class PathLabel(QLabel):
    """`set_path(path, shown=None, prefix="")`: `shown` is what to display (a path relative to
    the run folder, say); the tooltip and Copy path always give the full path."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.path: Path | None = None
        self.shown = ""
        self.prefix = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(80)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)

    def set_path(self, path: Path | str | None, shown: str | None = None, prefix: str = "") -> None:
        self.path = Path(path) if path else None
        self.shown = shown if shown is not None else (str(path) if path else "")
        self.prefix = prefix
        self.setToolTip(f"{self.path}\n(right-click: Copy path, Open folder)" if path else "")
        self._elide()

    def _elide(self) -> None:
        metrics = self.fontMetrics()
        room = max(40, self.width() - metrics.horizontalAdvance(self.prefix) - 4)
        self.setText(
            self.prefix + metrics.elidedText(self.shown, Qt.TextElideMode.ElideMiddle, room)
        )

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()

    def copy_path(self) -> None:
        if self.path is not None:
            QGuiApplication.clipboard().setText(str(self.path))

    def open_folder(self) -> None:
        if self.path is not None:
            folder = self.path if self.path.is_dir() else self.path.parent
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def _menu(self, pos) -> None:
        if self.path is None:
            return
        menu = QMenu(self)
        menu.addAction("Copy path", self.copy_path)
        menu.addAction("Open folder", self.open_folder)
        menu.exec(self.mapToGlobal(pos))
