"""The main window: the steps always visible on the left, the page in the middle, and one status
bar with progress and Cancel for whatever step is running."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.icons import icon
from app.pages.convert_page import ConvertPage
from app.pages.export_page import ExportPage
from app.pages.inspect_page import InspectPage
from app.pages.load_page import LoadPage
from app.pages.summary_page import SummaryPage
from app.pages.test_page import TestPage
from app.session import Session
from app.workers import StepWorker

# Chromium starts after the warm workers have imported, or after this long in any case (s).
GRAPH_VIEW_WAIT_S = 20.0


def freeze_startup_objects() -> None:
    """Move every object alive now (modules, widgets, Qt wrappers: never garbage) out of the
    garbage collector's reach (gc.freeze). A full collection otherwise walks them all: 25 ms
    of a frozen window when a step's result (10,000 boxes of a graph layout) arrives and
    triggers one; after it, the 10k-node graph's first draw stalled 13-24 ms instead of 44-67."""
    gc.collect()
    gc.freeze()


class MainWindow(QMainWindow):
    """Load → Inspect → Convert & Quantize → Test → Export → Summary."""

    step_finished = Signal(str, bool)  # step name, succeeded (for tests and the status bar)
    _warmed = False  # a class default: Qt sends events before __init__ has run its course

    def __init__(self, session: Session | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Dockyard")
        self.resize(1180, 760)
        self.setAcceptDrops(True)
        if session is None:
            from app.settings import output_root

            session = Session(output_root=output_root())
        self.session = session
        self.worker: StepWorker | None = None
        self.last_error: str | None = None
        self.last_log: Path | None = None  # the newest step's log file (the Log dialog shows it)
        self.last_step = ""
        from app.framework_offer import FrameworkOffer

        self.framework_offer = FrameworkOffer(self)  # the installed app: PyTorch/TF on demand

        self.pages = [
            LoadPage(self),
            InspectPage(self),
            ConvertPage(self),
            TestPage(self),
            ExportPage(self),
            SummaryPage(self),
        ]
        self.steps = QListWidget()
        self.steps.setObjectName("steps")
        self.steps.setFixedWidth(220)
        self.steps.setIconSize(QSize(20, 20))
        self.steps.setAccessibleName("Steps")
        self.stack = QStackedWidget()
        for i, page in enumerate(self.pages, 1):
            # SVG icons: drawn at the screen's pixel ratio, crisp on high-DPI displays.
            item = QListWidgetItem(icon(page.icon), f"{i}  {page.title}")
            item.setToolTip(f"{page.title} (Ctrl+{i})")
            self.steps.addItem(item)
            self.stack.addWidget(page)
        self.steps.currentRowChanged.connect(self.go_to)

        self.status = QLabel("Ready.")
        # Long progress messages must not widen the window: the label takes what space is left.
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.setMinimumWidth(120)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress.setFixedWidth(260)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.back = QPushButton("&Back")
        self.back.setToolTip("Previous step (Alt+Left)")
        self.back.clicked.connect(lambda: self.go_to(self.stack.currentIndex() - 1))
        self.next = QPushButton("&Next")
        self.next.setToolTip("Next step (Alt+Right)")
        self.next.clicked.connect(lambda: self.go_to(self.stack.currentIndex() + 1))

        bar = QHBoxLayout()
        bar.addWidget(self.status, 1)
        bar.addWidget(self.progress)
        bar.addWidget(self.cancel_button)
        bar.addSpacing(24)
        bar.addWidget(self.back)
        bar.addWidget(self.next)
        right = QVBoxLayout()
        right.addWidget(self.stack, 1)
        right.addLayout(bar)
        body = QHBoxLayout()
        body.addWidget(self.steps)
        body.addLayout(right, 1)
        central = QWidget()
        central.setLayout(body)
        self.setCentralWidget(central)
        settings_button = QPushButton("Settings…")
        settings_button.clicked.connect(self.open_settings)
        bar.insertWidget(0, settings_button)
        self.log_button = QPushButton("Log")
        self.log_button.setToolTip(
            "What the last step's libraries printed (TensorFlow, torch, converters)"
        )
        self.log_button.clicked.connect(self.show_log)
        bar.insertWidget(1, self.log_button)
        QShortcut(QKeySequence("Ctrl+O"), self, activated=self.pages[0]._open_file)
        QShortcut(QKeySequence("Ctrl+,"), self, activated=self.open_settings)
        QShortcut(QKeySequence("Escape"), self, activated=self.cancel)
        self.cancel_button.setToolTip("Stop the running step (Esc)")
        settings_button.setToolTip("Output folder, threads, theme (Ctrl+,)")
        # Keyboard navigation: Alt+Left/Right and Ctrl+PgUp/PgDown step back and forth,
        # Ctrl+1..6 jump to a step, arrow keys move in the step list when it has focus.
        for keys, delta in (
            ("Alt+Left", -1),
            ("Alt+Right", 1),
            ("Ctrl+PgUp", -1),
            ("Ctrl+PgDown", 1),
        ):
            QShortcut(
                QKeySequence(keys),
                self,
                activated=lambda d=delta: self.go_to(self.stack.currentIndex() + d),
            )
        for i in range(len(self.pages)):
            QShortcut(QKeySequence(f"Ctrl+{i + 1}"), self, activated=lambda i=i: self.go_to(i))
        self.setWindowIcon(icon("dockyard"))
        self.go_to(0)

    # -- warm step workers ---------------------------------------------------------------
    def event(self, event: QEvent) -> bool:
        if not self._warmed and event.type() == QEvent.Type.Paint:
            self._warmed = True  # after the first paint: nothing delays the window
            QTimer.singleShot(0, freeze_startup_objects)
            QTimer.singleShot(0, self._warm_up)
        return super().event(event)

    def _warm_up(self) -> None:
        if self.busy:  # a model given on the command line is loading: do not slow it down
            self.step_finished.connect(self._warm_up_once)
            return
        from workflows import warm

        if not warm.Pool.enabled():  # DOCKYARD_NO_WARM_WORKERS=1: no warm-up at all (tests)
            return
        self.want_workers("onnx", "torch")
        # The graph view's Chromium too (its start stalls the event loop): its files read into
        # the OS's cache now, in the background; Chromium started once the workers have
        # imported their frameworks (on 2 cores they would slow it three-fold) and nothing runs.
        from app.netron_view import prefetch_web_engine

        self._prefetch = prefetch_web_engine()
        self._graph_view_wait = time.monotonic()
        self._graph_view_timer = QTimer(self, interval=200)
        self._graph_view_timer.timeout.connect(self._prepare_graph_view)
        self._graph_view_timer.start()

    def _prepare_graph_view(self) -> None:
        from workflows import warm

        pool = warm.pool()
        settled = pool.settled()
        waited = time.monotonic() - self._graph_view_wait > GRAPH_VIEW_WAIT_S
        if self.busy or self._prefetch.is_alive() or not (settled or waited):
            return
        self._graph_view_timer.stop()
        self.page(InspectPage).netron.prepare()
        freeze_startup_objects()  # Qt WebEngine's wrappers too

    def _warm_up_once(self) -> None:
        self.step_finished.disconnect(self._warm_up_once)
        self.want_workers("onnx", "torch")

    def want_workers(self, *families: str) -> None:
        """Keep step workers of `families` warm (see workflows.warm); started off this thread."""
        import threading

        from workflows import warm

        pool = warm.pool()
        missing = [f for f in families if f not in pool.wanted()]
        if missing and pool.enabled():
            threading.Thread(
                target=pool.want, args=missing, name="dockyard-warm-start", daemon=True
            ).start()

    # -- navigation ----------------------------------------------------------------------
    def go_to(self, index: int) -> None:
        index = max(0, min(index, len(self.pages) - 1))
        if self.stack.currentIndex() != index or self.steps.currentRow() != index:
            self.stack.setCurrentIndex(index)
            self.steps.blockSignals(True)
            self.steps.setCurrentRow(index)
            self.steps.blockSignals(False)
        self.pages[index].on_enter()
        self.back.setEnabled(index > 0)
        self.next.setEnabled(index < len(self.pages) - 1)

    def show_log(self) -> None:
        from app.widgets.log_view import LogDialog

        LogDialog(self.last_log, self.last_step, self).open()

    def open_settings(self) -> None:
        from app.settings import SettingsDialog, output_root

        dialog = SettingsDialog(self)
        dialog.accepted.connect(lambda: setattr(self.session, "output_root", output_root()))
        dialog.open()

    def page(self, cls: type) -> Any:
        return next(p for p in self.pages if isinstance(p, cls))

    def model_loaded(self) -> None:
        self.go_to(1)
        model = (self.session.inspect or {}).get("model") or {}
        self.framework_offer.check_model(model.get("format") or "")

    # -- running steps ---------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def run_step(
        self,
        step: str,
        options: dict[str, Any],
        outputs: list[Path],
        on_done: Callable[[dict], None],
        label: str,
        on_error: Callable[[str], None] | None = None,
        on_data: Callable[[dict], None] | None = None,
        on_unsafe: Callable[[str], None] | None = None,
    ) -> None:
        """Run an engine step off the GUI thread; progress in the status bar; one at a time.

        `on_unsafe(message)` is called when loading the model would run code stored in the file
        (the page then asks the user); without it, that is reported as an error."""
        if self.busy:
            self.show_error("Another step is running; wait for it or cancel it first.")
            return
        from workflows import warm
        from workflows.logs import new_log

        if warm.Pool.enabled() and warm.family_of(step, options) == "tensorflow":
            self.want_workers("tensorflow")  # a TF model: its next steps start warm
        self.status.setText(label + " …")
        self.progress.setValue(0)
        self.cancel_button.setEnabled(True)
        self.last_log, self.last_step = new_log(step), label
        worker = StepWorker(step, options, [Path(p) for p in outputs], self, log=self.last_log)
        worker.progressed.connect(
            lambda f, m: (
                self.progress.setValue(int(f * 1000)),
                self.status.setText(f"{label}: {m}"),
            )
        )
        worker.succeeded.connect(
            lambda result: self._finished(step, True, "Done: " + label, lambda: on_done(result))
        )
        worker.failed.connect(
            lambda message, details: self._finished(
                step,
                False,
                f"{label} failed.",
                lambda: (
                    on_error(message) if on_error else None,
                    self.show_error(message, details),
                ),
            )
        )
        worker.refused_unsafe.connect(
            lambda message: self._finished(
                step,
                False,
                f"{label}: the file would run code; not loaded.",
                (lambda: on_unsafe(message))
                if on_unsafe
                else lambda: (on_error(message) if on_error else None, self.show_error(message)),
            )
        )
        worker.needs_framework.connect(
            lambda family, message: self._finished(
                step,
                False,
                f"{label}: needs a framework the app has not prepared yet.",
                lambda: (
                    self.framework_offer.offer(
                        family,
                        f"The step “{label}” needs it.",
                        lambda: self.run_step(
                            step, options, outputs, on_done, label, on_error, on_data, on_unsafe
                        ),
                    )
                    if family and not self.framework_offer.available(family)
                    else self.show_error(message)  # prepared, and still missing: say so
                ),
            )
        )
        worker.cancelled.connect(lambda: self._finished(step, False, f"{label}: cancelled.", None))
        if on_data is not None:
            worker.data.connect(on_data)
        self.worker = worker
        worker.start()

    def _finished(self, step: str, ok: bool, text: str, then: Callable[[], Any] | None) -> None:
        self.cancel_button.setEnabled(False)
        self.progress.setValue(1000 if ok else 0)
        self.status.setText(text)
        if self.worker is not None:
            self.worker.wait()
            self.worker = None
        if then is not None:
            then()
        self.step_finished.emit(step, ok)

    def cancel(self) -> None:
        if self.worker is not None:
            self.status.setText("Cancelling …")
            self.worker.cancel()

    def show_error(self, message: str, details: str = "") -> None:
        """A non-blocking error dialog: what went wrong, with the details to copy."""
        self.last_error = message
        box = QMessageBox(QMessageBox.Icon.Warning, "Dockyard", message, parent=self)
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        if details:
            box.setDetailedText(details)
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.open()

    # -- drag and drop, closing ---------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        urls = [u for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.go_to(0)
            self.page(LoadPage).load(urls[0].toLocalFile())

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing while a step runs cancels it cleanly (its process is killed, partial output removed)."""
        if self.worker is not None:
            self.worker.cancel()
            self.worker.wait(5000)
        for page in self.pages:
            page.shutdown()
        from workflows import warm

        warm.pool().release()
        event.accept()
