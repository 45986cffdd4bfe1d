"""Step logs: where what the frameworks print goes (TensorFlow's C++ logging, absl, converter
chatter, Python warnings), so that it never lands between the CLI's own lines.

Every step's child process writes into its own log file; `dockyard-cli --verbose` lets it through
to the terminal instead. One-off commands log into the user's log folder (the newest
`KEEP` files are kept); `dockyard-cli run` logs into `<run folder>/<model>/logs/`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

KEEP = 100
LOG_DIR_ENV = "DOCKYARD_LOG_DIR"


def log_dir() -> Path:
    """The per-user log folder ($DOCKYARD_LOG_DIR, else the platform's usual place)."""
    if os.environ.get(LOG_DIR_ENV):
        return Path(os.environ[LOG_DIR_ENV])
    home = Path.home()
    if sys.platform == "win32":
        return (
            Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "Dockyard" / "logs"
        )
    if sys.platform == "darwin":
        return home / "Library" / "Logs" / "Dockyard"
    return Path(os.environ.get("XDG_STATE_HOME", home / ".local" / "state")) / "dockyard" / "logs"


def new_log(step: str, folder: Path | None = None) -> Path:
    """A fresh log file's path for `step` (the folder is created; old logs beyond KEEP go)."""
    folder = folder or log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}-{step}-{os.getpid()}.log"
    logs = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
    for old in logs[: max(0, len(logs) - KEEP + 1)]:
        with contextlib.suppress(OSError):
            old.unlink()
    return path


def mention(log: Path | None) -> str:
    """ " (framework output: PATH)" for an error message when the log holds anything."""
    try:
        return f" (framework output: {log})" if log and log.stat().st_size else ""
    except OSError:
        return ""
