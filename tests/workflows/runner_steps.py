"""Steps used only by the runner tests (imported by name in the child process)."""

from __future__ import annotations

import ctypes
import subprocess
import time
from pathlib import Path

from workflows.atomic import atomic_dir
from workflows.errors import FormatError


def echo(options, progress):
    for i in range(5):
        progress.update((i + 1) / 5, f"step {i + 1} of 5")
        time.sleep(0.06)
    print("noise a library printed")  # must not reach the parent's stdout
    return {"echo": options, "nan": float("nan")}


def long_running(options, progress):
    """Writes into an atomic folder and never finishes on its own (60 s)."""
    with atomic_dir(Path(options["output"])) as tmp:
        (tmp / "half.bin").write_bytes(b"x" * 1000)
        if options.get("grandchild_pid_file"):
            child = subprocess.Popen(["sleep", "60"])
            Path(options["grandchild_pid_file"]).write_text(str(child.pid))
        for i in range(1200):
            progress.update(i / 1200, f"tick {i}")
            time.sleep(0.05)
    return {}


def segfault(options, progress):
    progress.update(0.5, "about to crash")
    ctypes.string_at(0)  # dereference NULL: SIGSEGV


def user_error(options, progress):
    raise FormatError("model.onnx: the file is empty")


def options_error(options, progress):
    from workflows.errors import OptionsError

    raise OptionsError("models[0]", "expected a string, got a mapping")


def bug(options, progress):
    return 1 / 0


def needs_torch(options, progress):
    """What a step of the installed app does without its framework: fails importing it."""
    from workflows.frameworks import framework_missing

    if Path(options["marker"]).exists():  # prepared meanwhile: the retried step succeeds
        return {"ran": True}
    raise framework_missing("torch")


def environment(options, progress):
    """What a step sees of its process: an environment variable, its modules, its cwd."""
    import os
    import sys

    return {
        "value": os.environ.get(options["name"]),
        "torch": "torch" in sys.modules,
        "cwd": os.getcwd(),
    }
