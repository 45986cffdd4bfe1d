"""Run a folder of tests with `pytest` in a fresh process of its own (see conftest.py for why).

The GUI suite and the real-model suite are the two longest parts of the run (7 and 11 minutes one
after the other on a 2-core AVX2-only CPU) and neither times anything, nor uses both cores for
long: the first of their runner tests starts both processes (12 minutes together) and each runner
test waits for its own folder's result. Nothing else runs meanwhile (tried: the heavy engine tests
beside them ran past their timeouts, the machine already being 1.7 cores busy)."""

from __future__ import annotations

import atexit
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]

# The runner test files and the folder each runs (conftest.py records which pytest selected).
RUNNERS = {
    "tests/test_gui_suite.py": "tests/app",
    "tests/test_real_models_suite.py": "tests/real_models",
}
SELECTED: set[str] = set()
_running: dict[str, tuple[subprocess.Popen, IO[str]]] = {}


def _start(folder: str) -> None:
    if folder in _running:
        return
    # A file, not a pipe (nobody reads while it runs), open until its runner test reads it.
    out = tempfile.TemporaryFile("w+")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", folder],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _running[folder] = (process, out)


@atexit.register
def _stop_all() -> None:
    """A run cut short (timeout, Ctrl-C) leaves no subsuite behind."""
    for process, _ in _running.values():
        if process.poll() is None:
            process.kill()


def run_in_own_process(folder: str, timeout: float) -> None:
    """`python -m pytest -q folder` (started now, or earlier beside another selected subsuite);
    fails with its output unless every test passed."""
    for each in sorted(SELECTED | {folder}):  # the selected ones start together
        _start(each)
    process, out = _running[folder]
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    out.seek(0)
    stdout = out.read()
    summary = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    print(stdout[-3000:])
    assert process.returncode == 0, f"{summary}\n{stdout[-25000:]}"
    assert " passed" in summary and "failed" not in summary, summary
