"""The child side of a step: becoming a step process (own process group, dies with its parent,
framework output into a log) and serving one step's events over a pipe; and `kill_group`, how
the parent ends one.

Both the runner's freshly spawned children and the warm workers (`workflows.warm`) run this.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workflows import catalogue, errors
from workflows.atomic import FINISH_CHECKS, remove_open_partials
from workflows.progress import Progress


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


def kill_group(process: Any) -> None:
    """SIGKILL a step child (a multiprocessing Process) and its process group, then reap it.

    The whole group, even when the child itself has already died (killed by the OOM killer,
    say): what it started (a smoke-test server, TorchServe, nested steps) must not outlive it.
    Windows has no process groups to kill: there the child's descendants are found by their
    parent ids (which Windows keeps after the parent dies) and killed first."""
    if hasattr(os, "killpg") and process.pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    elif process.pid:
        _kill_descendants(process.pid)
    if process.exitcode is None:
        process.kill()
        process.join(timeout=2)


def _kill_descendants(pid: int) -> None:
    """Kill every process descended from `pid` (alive or not), from one snapshot of the
    process table's parent ids."""
    import psutil

    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        children.setdefault(proc.info["ppid"], []).append(proc.pid)
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        if child != pid and child not in found:
            found.append(child)
            todo += children.get(child, [])
    for child in found:
        with contextlib.suppress(psutil.Error):
            psutil.Process(child).kill()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


_ORIGINAL_STDERR: int | None = None  # the inherited stderr, kept while fd 2 goes to a log


def enter_child(parent: int | None, log: str | None = None) -> None:
    """Make this process a step child: its own process group that dies with `parent`, and
    stdout/stderr (what frameworks print) into `log`, or both into the inherited stderr."""
    global _ORIGINAL_STDERR
    if hasattr(os, "setsid") and not os.environ.get(NESTED_ENV):
        # Own process group: a cancel kills whatever the step spawned, including nested steps
        # (which stay in this group so that one kill reaches them all).
        os.setsid()
        if parent is not None:
            _die_with_parent(parent)
    os.environ[NESTED_ENV] = "1"
    from workflows import frameworks

    frameworks.activate()  # the installed app: the prepared PyTorch/TensorFlow folders
    if log:
        _ORIGINAL_STDERR = os.dup(2)
        _redirect(log)
    else:
        # Libraries that print must not pollute the parent's stdout (it may carry JSON).
        os.dup2(2, 1)


def _redirect(log: str) -> None:
    _flush()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def switch_log(current: str, log: str | None) -> None:
    """Move from a warm worker's own log to the step's (`log`; None: the inherited stderr),
    carrying over what the imports printed while the worker waited."""
    with contextlib.suppress(OSError):
        earlier = Path(current).read_bytes()
        if earlier and log:
            with open(log, "ab") as f:
                f.write(earlier)
        elif earlier and _ORIGINAL_STDERR is not None:
            os.write(_ORIGINAL_STDERR, earlier)
    if log:
        _redirect(log)
    elif _ORIGINAL_STDERR is not None:
        _flush()
        os.dup2(_ORIGINAL_STDERR, 2)
        os.dup2(_ORIGINAL_STDERR, 1)


def child_main(
    step: str, options: Any, conn: Any, parent: int | None = None, log: str | None = None
) -> None:
    """A freshly spawned step child: set up, run `step`, exit."""
    enter_child(parent, log)
    serve_step(step, options, conn, parent)


def serve_step(step: str, options: Any, conn: Any, parent: int | None) -> None:
    """Run `step` in this (child) process, send its events over `conn`, then exit."""
    last = [0.0]

    def send_progress(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.05 or fraction >= 1.0:
            last[0] = now
            conn.send({"type": "progress", "fraction": fraction, "message": message})

    def send_data(data: dict[str, Any]) -> None:
        conn.send({"type": "data", "data": data})

    try:
        from workflows import frameworks
        from workflows.jsonable import jsonable

        frameworks.activate()  # again: prepared while this (warm) worker waited
        result = resolve(step)(options, Progress(send_progress, send_data))
        conn.send({"type": "result", "value": jsonable(result)})
    except BaseException as caught:  # everything goes back to the parent as an error event
        from workflows.frameworks import missing_framework

        exc = missing_framework(caught) or caught
        with contextlib.suppress(OSError):  # BrokenPipeError: the parent is gone
            conn.send(
                {
                    "type": "error",
                    "error_type": type(exc).__name__,
                    "message": str(exc) or type(exc).__name__,
                    "expected": isinstance(exc, errors.DockyardError),
                    "family": getattr(exc, "family", None),  # FrameworkMissing's
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
    _flush()
    os._exit(0)
