"""Imported first by a warm-worker fork server (workflows/warm.py): sends what the server's own
imports print to nowhere (it holds the parent's stdout and stderr, which may be a terminal, a
pipe someone reads to its end, or JSON; each forked worker gets the parent's own and its step's
log), and ends the server at once when the process that started it is gone while it is still
importing its family's modules.

multiprocessing's fork server notices its parent's exit only in its serving loop, after those
imports (seconds of torch): a CLI killed meanwhile would leave it running on for that long. A
thread here polls the parent until the serving loop starts (its SIGCHLD handler is installed
then), and then ends, so that the server forks its workers with no other thread running.
PR_SET_PDEATHSIG is not used: it follows the thread that started the server, not the process.
Imported anywhere else (the engine's import checks import every module), it does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time


def _watch(parent: int) -> None:
    while signal.getsignal(signal.SIGCHLD) in (signal.SIG_DFL, None):
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.1)


def _quiet() -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def _in_fork_server() -> bool:
    """Imported by multiprocessing's fork server's main() (its preload), not by anything else."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "main" and frame.f_globals.get("__name__") == (
            "multiprocessing.forkserver"
        ):
            return True
        frame = frame.f_back
    return False


if _in_fork_server() and hasattr(signal, "SIGCHLD"):
    _quiet()
    threading.Thread(
        target=_watch, args=(os.getppid(),), name="dockyard-fork-server-guard", daemon=True
    ).start()
