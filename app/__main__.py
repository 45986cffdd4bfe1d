"""`dockyard` (or `python -m app`): start the desktop app, optionally opening a model."""

from __future__ import annotations

import logging
import sys


def _start_worker_for(path: str) -> None:
    """Start the step worker the model on the command line needs before Qt loads: its
    framework imports on the other core while the window is built (the inspect that follows
    takes it)."""
    from workflows import warm

    if warm.Pool.enabled():
        warm.pool().start(warm.family_of("inspect", {"model": {"path": path}}))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) > 1:
        _start_worker_for(argv[1])
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from app.netron_view import prepare_environment
    from app.pages.load_page import LoadPage

    # Before netron's server is first started: it configures INFO logging on an unconfigured root.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    prepare_environment()
    app = QApplication.instance() or QApplication(argv)
    app.setOrganizationName("Dockyard")
    app.setApplicationName("Dockyard")
    from app.settings import apply_theme
    from workflows.resources import resource

    apply_theme()
    app.setStyleSheet(resource("styles", "app.qss").read_text())
    window = MainWindow()
    window.show()
    if len(argv) > 1:
        window.page(LoadPage).load(argv[1])
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
