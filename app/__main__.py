"""`dockyard` (or `python -m app`): start the desktop app, optionally opening a model."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any


def _start_worker_for(path: str) -> None:
    """Start the step worker the model on the command line needs before Qt loads: its
    framework imports on the other core while the window is built (the inspect that follows
    takes it)."""
    from workflows import warm

    if warm.Pool.enabled():
        warm.pool().start(warm.family_of("inspect", {"model": {"path": path}}))


PAINT_PROBE = "--quit-after-first-paint"  # the installer's smoke test: print ms to paint, quit


def _quit_after_first_paint(app: Any, window: Any) -> None:
    """Print the milliseconds from this process's creation (the frozen bootloader included) to
    the window's first paint, then quit."""
    import psutil
    from PySide6.QtCore import QEvent, QObject

    class FirstPaint(QObject):
        def eventFilter(self, obj: Any, event: Any) -> bool:
            if event.type() == QEvent.Type.Paint:
                started = psutil.Process().create_time()
                print(f"first paint {(time.time() - started) * 1000:.0f} ms", flush=True)
                app.quit()
            return False

    window._first_paint_probe = FirstPaint(window)
    window.installEventFilter(window._first_paint_probe)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    probe = PAINT_PROBE in argv
    argv = [a for a in argv if a != PAINT_PROBE]
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
    from app.framework_offer import apply_saved_path
    from app.settings import apply_theme

    apply_saved_path()
    from workflows.resources import resource

    apply_theme()
    app.setStyleSheet(resource("styles", "app.qss").read_text())
    window = MainWindow()
    if probe:
        _quit_after_first_paint(app, window)
    window.show()
    if len(argv) > 1:
        window.page(LoadPage).load(argv[1])
    return app.exec()


if __name__ == "__main__":
    from workflows import frozen

    frozen.enter()  # a bundle's spawned step process or Python mode ends here
    if frozen.started_as_cli():  # the bundle's dockyard-cli (build_installer.spec)
        from workflows.cli import main as cli

        sys.exit(cli(sys.argv[1:]))
    sys.exit(main())
