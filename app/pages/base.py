"""What every wizard page shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget

if TYPE_CHECKING:
    from app.main_window import MainWindow


class Page(QWidget):
    """A wizard page: it knows the window (to run steps) and its session."""

    title = ""
    icon = ""  # resources/icons/<icon>.svg, shown in the step list

    def __init__(self, window: MainWindow) -> None:
        super().__init__()
        self.window_ = window

    @property
    def session(self):
        return self.window_.session

    def on_enter(self) -> None:
        """Called when the page becomes visible: refresh from the session."""

    def shutdown(self) -> None:
        """The window is closing: stop this page's own background work."""


class PathPicker(QWidget):
    """A line edit with a Browse button (file or folder)."""

    def __init__(self, placeholder: str, folder: bool = False, filters: str = "") -> None:
        super().__init__()
        self.folder, self.filters = folder, filters
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(browse)

    def _browse(self) -> None:
        if self.folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", filter=self.filters)
        if path:
            self.edit.setText(path)

    def value(self) -> str | None:
        return self.edit.text().strip() or None
