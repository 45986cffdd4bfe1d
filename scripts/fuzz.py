"""The long fuzzing run (issue #12): every target in tests/fuzz_targets.py for --seconds each
(600 by default), or the ones named, with hypothesis or, coverage-guided, with atheris
(libFuzzer; Linux and macOS wheels only). Prints examples per target; exits 1 on the first
failure, after printing the failing input (make it a tests/corpus/ entry).

    python scripts/fuzz.py [--seconds 600] [--engine hypothesis|atheris] [decode torchserve loaders]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import fuzz_targets  # noqa: E402

# Only Dockyard's own code is instrumented for coverage: instrumenting torch or TensorFlow would
# take minutes and guide the fuzzer into their internals instead of our checks.
INSTRUMENTED = ["workflows", "server", "dockyard_fuzz_handler"]


def atheris_child(name: str, libfuzzer_args: list[str]) -> None:
    """Runs inside the fuzzing process: libFuzzer never returns, it exits (non-zero on a crash)."""
    import atheris

    with atheris.instrument_imports(include=INSTRUMENTED):
        fuzz_targets.warm_up(name)
    if name == "torchserve":
        # The handler is loaded from its file (as TorchServe does), past the import hook.
        _instrument_module(sys.modules["dockyard_fuzz_handler"])
    one_input = fuzz_targets.one_input(name)
    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def _instrument_module(module) -> None:
    import inspect

    import atheris

    for value in vars(module).values():
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(value):
            atheris.instrument_func(value)
        elif inspect.isclass(value):
            for member in vars(value).values():
                if inspect.isfunction(member):
                    atheris.instrument_func(member)


def _rss_limit_mb() -> int:
    """libFuzzer's memory limit for the child: 4 GB of its own. It reads getrusage's ru_maxrss,
    which a child inherits from the process that started it (Linux keeps the high-water mark
    across fork and exec), so this process's peak is added."""
    import resource

    inherited = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB -> MiB
    return 4096 + inherited


def run_atheris(name: str, seconds: float, log=print) -> int:
    """Fuzz target `name` with atheris for `seconds`; the number of inputs run. Raises
    AssertionError (with libFuzzer's report) on a crash."""
    with tempfile.TemporaryDirectory(prefix=f"dockyard-atheris-{name}-") as tmp:
        corpus = Path(tmp, "corpus")
        corpus.mkdir()
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--atheris-child",
                name,
                f"-max_total_time={int(seconds)}",
                f"-artifact_prefix={tmp}/",
                f"-rss_limit_mb={_rss_limit_mb()}",
                str(corpus),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=seconds + 600,
        )
        report = done.stderr
        if done.returncode != 0:
            crashes = sorted(Path(tmp).glob("crash-*")) + sorted(Path(tmp).glob("oom-*"))
            inputs = [f"{p.name}: {p.read_bytes()[:400]!r}" for p in crashes]
            raise AssertionError(f"atheris found a failure in {name}:\n{report[-6000:]}\n{inputs}")
        runs = re.findall(r"#(\d+)\s+DONE", report) or re.findall(r"#(\d+)\s", report)
        coverage = re.findall(r"cov: (\d+)", report)
        log(
            f"{name}: coverage {coverage[-1] if coverage else '?'} edges, corpus "
            f"{len(list(corpus.iterdir()))} inputs"
        )
        return int(runs[-1]) if runs else 0


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--atheris-child":
        atheris_child(sys.argv[2], sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--engine", choices=["hypothesis", "atheris"], default="hypothesis")
    parser.add_argument("targets", nargs="*", default=sorted(fuzz_targets.TARGETS))
    args = parser.parse_args()
    for name in args.targets:
        started = time.monotonic()
        try:
            if args.engine == "atheris":
                examples = run_atheris(name, args.seconds)
            else:
                examples = fuzz_targets.run(name, args.seconds)
        except Exception as exc:
            print(f"{name}: FAILED after {time.monotonic() - started:.0f} s: {exc}")
            return 1
        print(
            f"{name} ({args.engine}): {examples} examples in "
            f"{time.monotonic() - started:.0f} s, no failure"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
