"""Run a step in a child process that streams progress events and can be killed at any moment.

Why a child process and not a thread: converters hold the GIL for long stretches (the GUI would
freeze), cannot be interrupted from a thread, and a segfault in a C extension would take the whole
application down. A killed child's half-written outputs are removed (see `workflows.atomic`).
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
import signal
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from workflows import errors
from workflows.atomic import remove_partials
from workflows.child import NESTED_ENV, child_main, kill_group, resolve
from workflows.progress import DataCallback, Progress, ProgressCallback

__all__ = ["NESTED_ENV", "StepFailed", "StepProcess", "resolve", "run_inline", "run_step"]


class StepFailed(errors.DockyardError):
    """A step raised an unexpected exception in the child; `details` holds its traceback."""

    def __init__(self, message: str, details: str = "", error_type: str = "") -> None:
        super().__init__(message)
        self.details = details
        self.error_type = error_type


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if name == "SIGKILL":
            return "was killed (SIGKILL; out of memory?)"
        return f"crashed ({name})"
    return f"exited with code {code} without a result"


def _rebuild_error(event: dict[str, Any]) -> errors.DockyardError:
    cls = getattr(errors, event["error_type"], None)
    if event.get("expected") and isinstance(cls, type) and issubclass(cls, errors.DockyardError):
        try:
            error = cls(event["message"])
        except TypeError:  # a constructor with more parts (OptionsError(path, problem))
            error = cls.__new__(cls)
            Exception.__init__(error, event["message"])
        if event.get("family"):  # FrameworkMissing: which framework the step needs
            error.family = event["family"]  # type: ignore[attr-defined]
        return error
    return StepFailed(
        f"{event['error_type']}: {event['message']}", event["details"], event["error_type"]
    )


_LIVE: weakref.WeakSet[StepProcess] = weakref.WeakSet()


@atexit.register
def _kill_live() -> None:
    for proc in list(_LIVE):
        proc._kill()


class StepProcess:
    """One step running in a child process. Use `wait()` for the result; `cancel()` from any thread.

    The child is a warm worker when the pool (`workflows.warm`) has one parked for the step's
    framework family, a freshly spawned process otherwise; either way it runs this step alone.
    `log`: the file that receives what the step's libraries print (None: the inherited stderr).
    """

    def __init__(
        self,
        step: str,
        options: Any,
        on_progress: ProgressCallback | None = None,
        outputs: list[Path] | None = None,
        on_data: DataCallback | None = None,
        log: Path | None = None,
    ) -> None:
        from workflows import warm

        self.step = step
        self.options = options
        self.on_progress = on_progress
        self.on_data = on_data
        self.outputs = [Path(p) for p in outputs or []]
        self.log = log
        self._cancelled = threading.Event()
        self.family = warm.family_of(step, options) if warm.Pool.enabled() else "onnx"
        worker = warm.pool().take(self.family)
        # Held for the step's life: the worker may still be unpickling its start-up arguments
        # (its ready-Event's semaphore is unlinked once the parent drops it).
        self._worker = worker
        self.warm = worker is not None
        if worker is not None:
            self.process = worker.process
            self._recv = worker.events
            try:
                worker.jobs.send((step, options, str(log) if log else None))
            except (OSError, ValueError):  # died while parked: start a fresh one instead
                worker.kill()
                worker = None
                self.warm = False
            else:
                worker.jobs.close()
        if worker is None:
            # fork is unsafe with threads (Qt, ORT), absent on Windows
            ctx = mp.get_context("spawn")
            self._recv, send = ctx.Pipe(duplex=False)
            # Not a daemon: a step may start nested steps (the benchmark times each variant in its
            # own process), which daemons may not. Stragglers are killed at exit by _kill_live.
            self.process = ctx.Process(
                target=child_main,
                args=(step, options, send, os.getpid(), str(log) if log else None),
                daemon=False,
            )
            self.process.start()
            send.close()
        _LIVE.add(self)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def cancel(self) -> None:
        """Kill the child (and its process group) now; wait() then raises StepCancelled."""
        self._cancelled.set()
        self._kill()

    def _kill(self) -> None:
        kill_group(self.process)

    def _cleanup(self) -> None:
        if self.pid is None:
            return
        for out in self.outputs:
            remove_partials(out.parent, self.pid)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Relay progress events until the result arrives; raise the step's error otherwise."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                if self._cancelled.is_set():
                    raise errors.StepCancelled(f"{self.step} was cancelled")
                if deadline is not None and time.monotonic() > deadline:
                    self.cancel()
                    raise errors.StepCancelled(f"{self.step} timed out after {timeout} s")
                try:
                    ready = self._recv.poll(0.05)
                    event = self._recv.recv() if ready else None
                except (EOFError, OSError):
                    event = None
                    ready = True
                if event is None:
                    if ready or not self.process.is_alive():
                        self.process.join(timeout=1)
                        if self._cancelled.is_set():
                            raise errors.StepCancelled(f"{self.step} was cancelled")
                        raise errors.StepCrashed(
                            f"the {self.step} step's process {_describe_exit(self.process.exitcode)}; "
                            "nothing was written. Try again, or run it with less data/memory."
                        )
                    continue
                if event["type"] == "progress":
                    if self.on_progress:
                        self.on_progress(event["fraction"], event["message"])
                elif event["type"] == "data":
                    if self.on_data:
                        self.on_data(event["data"])
                elif event["type"] == "result":
                    self.process.join(timeout=5)
                    return event["value"]
                else:
                    self.process.join(timeout=5)
                    raise _rebuild_error(event)
        except BaseException:
            self._kill()
            self._cleanup()
            raise
        finally:
            self._replace_worker()

    def _replace_worker(self) -> None:
        if self.warm:
            from workflows import warm

            self.warm = False  # once
            warm.pool().replace(self.family)


def run_step(
    step: str,
    options: Any,
    on_progress: ProgressCallback | None = None,
    outputs: list[Path] | None = None,
    timeout: float | None = None,
    on_data: DataCallback | None = None,
    log: Path | None = None,
) -> dict[str, Any]:
    """Run `step` with `options` in a child process and return its JSON-serialisable result."""
    return StepProcess(step, options, on_progress, outputs, on_data, log).wait(timeout)


def run_inline(step: str, options: Any, progress: Progress | None = None) -> dict[str, Any]:
    """Run `step` in this process (cheap steps, tests); same result shape as run_step."""
    from workflows.jsonable import jsonable

    return jsonable(resolve(step)(options, progress or Progress()))
