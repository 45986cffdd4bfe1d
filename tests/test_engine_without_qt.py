"""The engine's tests run where Qt is absent (an engine-only install, a headless CI job)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Run pytest with every Qt module made unimportable, as if PySide6 and pytest-qt were absent.
BLOCK_QT = """
import importlib.abc, sys

class NoQt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("PySide6", "shiboken6", "pytestqt", "superqt"):
            raise ImportError(f"{name} is blocked: this run has no Qt")
        return None

sys.meta_path.insert(0, NoQt())
import pytest
sys.exit(pytest.main(sys.argv[1:]))
"""


def test_engine_tests_need_no_qt():
    tests = ["tests/workflows/test_catalogue.py", "tests/workflows/test_present.py",
             "tests/workflows/test_workflow.py::test_bad_workflows_are_explained"]  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-c", BLOCK_QT, "-q", "-p", "no:cacheprovider", "-p", "no:pytest-qt",
         "-W", "ignore::pytest.PytestConfigWarning", *tests],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-3000:]
    assert " passed" in r.stdout and "error" not in r.stdout.lower()


def test_the_block_really_blocks_qt():
    r = subprocess.run(
        [sys.executable, "-c", BLOCK_QT.replace("import pytest", "import PySide6")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode != 0 and "blocked: this run has no Qt" in r.stderr
