"""The serving benchmark's reading of `hey`'s summary (benchmarks/serving.py): successes, failures
and percentiles from its real output."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from serving import parse_hey

SUCCESS = """
Summary:
  Total:\t10.0057 secs
  Slowest:\t0.0954 secs
  Fastest:\t0.0071 secs
  Average:\t0.0434 secs
  Requests/sec:\t184.2950

Latency distribution:
  10% in 0.0301 secs
  50% in 0.0411 secs
  75% in 0.0512 secs
  99% in 0.0936 secs

Status code distribution:
  [200]\t1840 responses
  [503]\t4 responses
"""

FAILURE = """
Summary:
  Total:\t0.0008 secs
  Requests/sec:\t3641.0904

Latency distribution:

Status code distribution:

Error distribution:
  [3]\tGet "http://127.0.0.1:9/": dial tcp 127.0.0.1:9: connect: connection refused
"""


def test_successes_percentiles_and_non_200_answers():
    r = parse_hey(SUCCESS)
    assert r["requests"] == 1840 and r["errors"] == 4
    assert math.isclose(r["rps"], 1840 / 10.0057)  # successes only, not hey's 184.295
    assert math.isclose(r["p50_ms"], 41.1) and math.isclose(r["p99_ms"], 93.6)


def test_refused_connections_are_errors_not_throughput():
    r = parse_hey(FAILURE)  # hey still prints Requests/sec 3641 here
    assert r["requests"] == 0 and r["errors"] == 3 and r["rps"] == 0
    assert math.isnan(r["p50_ms"])
