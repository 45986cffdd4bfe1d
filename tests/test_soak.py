"""The soak benchmark's short run (benchmarks/soak.py; the README gives the long run's figures):
the exported server under 50 clients and two streams of maximal 16 MiB requests for 60 s, inside
the generated Kubernetes memory limit: no 5xx, health p99 under 100 ms, RSS flat."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_short_soak_run_passes():
    r = subprocess.run(
        [sys.executable, "benchmarks/soak.py", "--clients", "50", "--seconds", "60"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=500,
    )
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    statuses = re.search(r"statuses: (\{.*\})", r.stdout).group(1)
    counts = {int(k): int(v) for k, v in re.findall(r"(\d+): (\d+)", statuses)}
    assert counts.get(200, 0) > 100 and counts.get(413, 0) >= 1  # maximal requests were sent
    assert set(counts) <= {200, 413, 429}
    health = re.search(r"health p50/p99/worst: ([\d.]+) / ([\d.]+)", r.stdout)
    assert float(health.group(2)) < 100
