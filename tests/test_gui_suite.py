"""The GUI tests (tests/app), run by `pytest` in a fresh process of their own: Qt WebEngine and
TensorFlow cannot share one (see pytest_ignore_collect in conftest.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(1800)
def test_gui_suite_in_its_own_process():
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/app"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    print(r.stdout[-3000:])
    assert r.returncode == 0, f"{summary}\n{r.stdout[-20000:]}\n{r.stderr[-5000:]}"
    assert " passed" in summary and "failed" not in summary, summary
