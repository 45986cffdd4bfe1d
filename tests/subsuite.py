"""Run a folder of tests with `pytest` in a fresh process of its own (see conftest.py for why)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_in_own_process(folder: str, timeout: float) -> None:
    """`python -m pytest -q folder`; fails with its output unless every test passed."""
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", folder],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    print(r.stdout[-3000:])
    assert r.returncode == 0, f"{summary}\n{r.stdout[-20000:]}\n{r.stderr[-5000:]}"
    assert " passed" in summary and "failed" not in summary, summary
