"""The long fuzzing run (issue #12): every target in tests/fuzz_targets.py for --seconds each
(600 by default), or the ones named. Prints examples per target; exits 1 on the first failure,
after hypothesis has printed the minimal failing input (make it a tests/corpus/ entry).

    python scripts/fuzz.py [--seconds 600] [decode torchserve loaders]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import fuzz_targets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("targets", nargs="*", default=sorted(fuzz_targets.TARGETS))
    args = parser.parse_args()
    for name in args.targets:
        started = time.monotonic()
        try:
            examples = fuzz_targets.run(name, args.seconds)
        except Exception as exc:
            print(f"{name}: FAILED after {time.monotonic() - started:.0f} s: {type(exc).__name__}")
            return 1
        print(f"{name}: {examples} examples in {time.monotonic() - started:.0f} s, no failure")
    return 0


if __name__ == "__main__":
    sys.exit(main())
