"""Kill drills in CI (issue #12; `python scripts/drills.py --kills 60` is the long run): the CLI,
the desktop app (scripts/gui_drill.py) or the step process they started, SIGKILLed at seeded
random moments of convert, quantize and the three exports (smoke-test server, TorchServe,
onnx2tf running) or of the wizard's convert and Docker export: no orphan within 5 s (Qt
WebEngine's helpers included), the earlier good output untouched, nothing left beside it, its
ports free."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("DRILL_KILLS", "5"))


@pytest.mark.timeout(1200)
def test_seeded_kill_drills():
    spec = importlib.util.spec_from_file_location("drills", ROOT / "scripts" / "drills.py")
    drills = importlib.util.module_from_spec(spec)
    sys.modules["drills"] = drills  # dataclasses look their module up there
    spec.loader.exec_module(drills)
    lines: list[str] = []
    failures = drills.run(KILLS, seed=7, log=lines.append)
    print("\n".join(lines))
    assert failures == [], failures
    assert sum(": ok" in line for line in lines) == KILLS
