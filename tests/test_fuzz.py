"""Fuzzing in CI (issue #12): each target in tests/fuzz_targets.py for FUZZ_SECONDS (60 by
default; `python scripts/fuzz.py --seconds 600` is the long run). A failure prints hypothesis's
minimal failing input: add it to tests/corpus/ as an entry, then fix it."""

from __future__ import annotations

import os

import pytest

from tests import fuzz_targets

SECONDS = float(os.environ.get("FUZZ_SECONDS", "60"))


@pytest.mark.timeout(int(SECONDS * 3 + 300))
@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_fuzz(target):
    examples = fuzz_targets.run(target, SECONDS)
    print(f"{target}: {examples} examples in {SECONDS:g} s")
    assert examples > 0
