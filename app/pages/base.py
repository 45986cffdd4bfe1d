"""What every wizard page shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QWidget

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
