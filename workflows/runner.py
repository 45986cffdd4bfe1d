"""Run a step in a child process that streams progress events and can be killed at any moment.

Why a child process and not a thread: converters hold the GIL for long stretches (the GUI would
freeze), cannot be interrupted from a thread, and a segfault in a C extension would take the whole
application down. A killed child's half-written outputs are removed (see `workflows.atomic`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workflows import catalogue, errors
from workflows.atomic import FINISH_CHECKS, remove_open_partials, remove_partials
from workflows.progress import DataCallback, Progress, ProgressCallback


class StepFailed(errors.DockyardError):
    """A step raised an unexpected exception in the child; `details` holds its traceback."""

    def __init__(self, message: str, details: str = "", error_type: str = "") -> None:
        super().__init__(message)
        self.details = details
        self.error_type = error_type


def resolve(step: str) -> Callable[[Any, Progress], dict[str, Any]]:
    """The function behind a step name ("convert", see `workflows.catalogue`) or a
    "package.module:function" path (tests run their own steps that way)."""
    module_name, _, func = step.partition(":")
    if not func:
        return catalogue.spec(step).run_function()
    return getattr(importlib.import_module(module_name), func)


NESTED_ENV = "DOCKYARD_RUNNER_CHILD"


def _die_with_parent(parent: int) -> None:
    """Kill this step's process group as soon as the process that started it is gone.

    A parent killed with SIGKILL (the CLI, the app) cannot cancel its step; without this the
    step would run on and could replace its output seconds later. Polling getppid is portable
    across POSIX systems (PR_SET_PDEATHSIG is Linux-only and reaches this process alone, not the
    servers and nested steps in its group)."""

    def still_wanted() -> None:
        if os.getppid() != parent:
            raise errors.StepCancelled("the process that started this step is gone")

    FINISH_CHECKS.append(still_wanted)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        with contextlib.suppress(Exception):  # nothing half-written stays behind
            remove_open_partials()
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="dockyard-parent-watch", daemon=True).start()


def _child_main(step: str, options: Any, conn: Any, parent: int | None = None) -> None:
    if hasattr(os, "setsid") and not os.environ.get(NESTED_ENV):
        # Own process group: a cancel kills whatever the step spawned, including nested steps
        # (which stay in this group so that one kill reaches them all).
        os.setsid()
        if parent is not None:
            _die_with_parent(parent)
    os.environ[NESTED_ENV] = "1"
    os.dup2(2, 1)  # libraries that print must not pollute the parent's stdout (it may carry JSON)
    last = [0.0]

    def send_progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.05 or fraction >= 1.0:
            last[0] = now
            conn.send({"type": "progress", "fraction": fraction, "message": message})

    def send_data(data: dict[str, Any]) -> None:
        conn.send({"type": "data", "data": data})

    try:
        from workflows.jsonable import jsonable

        result = resolve(step)(options, Progress(send_progress, send_data))
        conn.send({"type": "result", "value": jsonable(result)})
    except BaseException as exc:  # everything goes back to the parent as an error event
        with contextlib.suppress(OSError):  # BrokenPipeError: the parent is gone
            conn.send(
                {
                    "type": "error",
                    "error_type": type(exc).__name__,
                    "message": str(exc) or type(exc).__name__,
                    "expected": isinstance(exc, errors.DockyardError),
                    "details": traceback.format_exc(),
                }
            )
    finally:
        conn.close()
        if parent is not None and os.getppid() != parent and hasattr(os, "killpg"):
            os.killpg(0, signal.SIGKILL)  # orphaned: take what this step started along
    # The answer is sent and every output is closed and in place. Run the exit handlers
    # (multiprocessing's semaphore cleanup, logging, _kill_live for a nested step) but skip the
    # interpreter's teardown of its modules: with TensorFlow loaded that takes a second or more,
    # during which the parent waits and the parent-death watch no longer runs. (atexit has no
    # public "run the handlers now"; _run_exitfuncs is what Py_Finalize itself calls.)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


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
        return cls(event["message"])
    return StepFailed(
        f"{event['error_type']}: {event['message']}", event["details"], event["error_type"]
    )


_LIVE: weakref.WeakSet[StepProcess] = weakref.WeakSet()


@atexit.register
def _kill_live() -> None:
    for proc in list(_LIVE):
        proc._kill()


class StepProcess:
    """One step running in a child process. Use `wait()` for the result; `cancel()` from any thread."""

    def __init__(
        self,
        step: str,
        options: Any,
        on_progress: ProgressCallback | None = None,
        outputs: list[Path] | None = None,
        on_data: DataCallback | None = None,
    ) -> None:
        self.step = step
        self.options = options
        self.on_progress = on_progress
        self.on_data = on_data
        self.outputs = [Path(p) for p in outputs or []]
        self._cancelled = threading.Event()
        ctx = mp.get_context("spawn")  # fork is unsafe with threads (Qt, ORT) and absent on Windows
        self._recv, send = ctx.Pipe(duplex=False)
        # Not a daemon: a step may start nested steps (the benchmark times each variant in its own
        # process), which daemons may not. Stragglers are killed at exit by _kill_live instead.
        self.process = ctx.Process(
            target=_child_main, args=(step, options, send, os.getpid()), daemon=False
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
        # The whole group, even when the step's own process has already died (killed by the
        # OOM killer, say): what it started (a smoke-test server, TorchServe) must not outlive it.
        if hasattr(os, "killpg") and self.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join(timeout=2)

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


def run_step(
    step: str,
    options: Any,
    on_progress: ProgressCallback | None = None,
    outputs: list[Path] | None = None,
    timeout: float | None = None,
    on_data: DataCallback | None = None,
) -> dict[str, Any]:
    """Run `step` with `options` in a child process and return its JSON-serialisable result."""
    return StepProcess(step, options, on_progress, outputs, on_data).wait(timeout)


def run_inline(step: str, options: Any, progress: Progress | None = None) -> dict[str, Any]:
    """Run `step` in this process (cheap steps, tests); same result shape as run_step."""
    from workflows.jsonable import jsonable

    return jsonable(resolve(step)(options, progress or Progress()))
