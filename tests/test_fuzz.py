"""Fuzzing in CI (issue #12): each target in tests/fuzz_targets.py for FUZZ_SECONDS with
hypothesis (12 by default) and ATHERIS_SECONDS coverage-guided with atheris (10; where its wheel
installs): small CI budgets, as the suite nears its 30 minutes. `python scripts/fuzz.py
--seconds 600 [--engine atheris]` is the long run. A failure prints the failing input: add it to
tests/corpus/ as an entry, then fix it."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from tests import fuzz_targets

SECONDS = float(os.environ.get("FUZZ_SECONDS", "12"))
ATHERIS_SECONDS = float(os.environ.get("ATHERIS_SECONDS", "10"))
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(int(SECONDS * 3 + 300))
@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_fuzz(target):
    examples = fuzz_targets.run(target, SECONDS)
    print(f"{target}: {examples} examples in {SECONDS:g} s")
    assert examples > 0


@pytest.mark.timeout(int(ATHERIS_SECONDS + 900))
@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_fuzz_coverage_guided(target):
    pytest.importorskip("atheris", reason="atheris has wheels for Linux x86-64 only")
    spec = importlib.util.spec_from_file_location("fuzz_script", ROOT / "scripts" / "fuzz.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_script"] = script
    spec.loader.exec_module(script)
    lines: list[str] = []
    examples = script.run_atheris(target, ATHERIS_SECONDS, log=lines.append)
    print(*lines, f"{target}: {examples} inputs in {ATHERIS_SECONDS:g} s")
    coverage = int(lines[-1].split("coverage ")[1].split()[0])
    assert examples > 100 and coverage > 20  # it ran, instrumented, and found new paths
