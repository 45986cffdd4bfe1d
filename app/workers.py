"""The one place that turns an engine step into Qt signals.

Heavy steps run in the engine's child-process runner (killable, crash-proof) and a QThread waits on
it and relays progress; light ones (a data preview) run in the QThread itself (`inline=True`),
cancelled at their next progress check. Signals cross to the GUI thread through queued connections.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from workflows.errors import DockyardError, FrameworkMissing, StepCancelled, UnsafeModelError
from workflows.progress import Progress
from workflows.runner import StepFailed, StepProcess, run_inline


class StepWorker(QThread):
    """Runs one engine step off the GUI thread. Connect to the signals, then start()."""

    progressed = Signal(float, str)
    succeeded = Signal(
        object
    )  # the result dict; `object` passes it by reference (no QVariant copy)
    failed = Signal(str, str)  # message, details
    # Loading the model would run code stored in the file (UnsafeModelError): a question for the
    # user, not an error; the message names the file and what would run.
    refused_unsafe = Signal(str)
    cancelled = Signal()
    # The installed app lacks the framework the step needs (FrameworkMissing): family, message.
    needs_framework = Signal(str, str)
    data = Signal(object)  # partial results the step publishes (live benchmark latencies)

    def __init__(
        self,
        step: str,
        options: dict[str, Any],
        outputs: list[Path] | None = None,
        parent: QObject | None = None,
        inline: bool = False,
        log: Path | None = None,
    ) -> None:
        super().__init__(parent)
        self.step = step
        self.options = options
        self.outputs = outputs or []
        self.inline = inline
        self.log = log  # what the step's libraries print (None: the app's stderr)
        self.ran_warm = False  # the step went to a warm worker (workflows.warm)
        self._process: StepProcess | None = None
        self._progress: Progress | None = None
        self._cancel_requested = False

    def run(self) -> None:  # runs in the worker thread
        # Held only while running: its callbacks reference this object, and a lasting cycle would
        # leave the QThread to Python's cyclic GC, which may free it at any moment, in any state.
        progress = self._progress = Progress(self.progressed.emit, self.data.emit)
        try:
            if self._cancel_requested:
                raise StepCancelled("cancelled")
            if self.inline:
                result = run_inline(self.step, self.options, progress)
            else:
                self._process = StepProcess(
                    self.step,
                    self.options,
                    self.progressed.emit,
                    self.outputs,
                    self.data.emit,
                    self.log,
                )
                self.ran_warm = self._process.warm
                if self._cancel_requested:  # asked while the process was starting
                    self._process.cancel()
                result = self._process.wait()
        except StepCancelled:
            self.cancelled.emit()
        except UnsafeModelError as exc:
            self.refused_unsafe.emit(str(exc))
        except FrameworkMissing as exc:
            self.needs_framework.emit(exc.family, str(exc))
        except StepFailed as exc:
            self.failed.emit(str(exc), exc.details)
        except DockyardError as exc:
            self.failed.emit(str(exc), "")
        except Exception as exc:  # a bug: still a message, never a crash of the window
            self.failed.emit(f"{type(exc).__name__}: {exc}", traceback.format_exc())
        else:
            self.succeeded.emit(result)
        finally:
            self._progress = self._process = None

    def cancel(self) -> None:
        """Kill the step's process (takes effect within a second); `cancelled` follows."""
        self._cancel_requested = True
        progress = self._progress
        if progress is not None:
            progress.cancel()
        process = self._process
        if process is not None:
            process.cancel()


class LatestOnly(QObject):
    """Runs a light step again and again; only the newest request's answer is delivered.

    A new request cancels the one before; answers from older requests are dropped. Finished
    threads are freed at the next request (never inside their own signals), and `shutdown()`
    waits for any still running, since a QThread must not be destroyed while it runs.
    """

    succeeded = Signal(object)
    failed = Signal(str, str)

    def __init__(self, step: str, parent: QObject | None = None, inline: bool = True) -> None:
        super().__init__(parent)
        self.step = step
        # inline=False: each request runs in a child process (a step holding the GIL in C for
        # long, like a 10,000-node layout, would otherwise stall the window).
        self.inline = inline
        self._current: StepWorker | None = None
        self._workers: list[StepWorker] = []

    def run(self, options: dict[str, Any]) -> None:
        """Start `options` as the newest request (the previous one is cancelled)."""
        self.cancel()
        worker = StepWorker(self.step, options, inline=self.inline)
        worker.succeeded.connect(self._succeeded)
        worker.failed.connect(self._failed)
        self._workers = [w for w in self._workers if not w.isFinished()] + [worker]
        self._current = worker
        worker.start()

    def cancel(self) -> None:
        """Cancel the newest request; nothing is delivered until the next `run`."""
        if self._current is not None:
            self._current.cancel()
            self._current = None

    def shutdown(self) -> None:
        """Cancel everything and wait for the threads (the window is closing)."""
        self.cancel()
        for worker in self._workers:
            worker.cancel()
            worker.wait()

    def _succeeded(self, result: dict) -> None:
        if self.sender() is self._current:
            self.succeeded.emit(result)

    def _failed(self, message: str, details: str) -> None:
        if self.sender() is self._current:
            self.failed.emit(message, details)
