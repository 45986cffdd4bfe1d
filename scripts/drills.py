"""Kill drills (issue #12): SIGKILL the CLI, or the step process it started, at a seeded random
moment of a real step, and check what a user would find afterwards:

- no orphan: every process the run started (step child, smoke-test server, its decoding process,
  TorchServe) is gone within 2 s;
- nothing partial, nothing replaced: the output is byte for byte the good one an earlier run made
  (or, when the run had already swapped its new output into place before the kill came, that
  complete new output), and the folder around it holds nothing new (no temp folder left behind);
- ports released: nothing listens on a port the run had opened.

    python scripts/drills.py [--kills 60] [--seed 1]     # the long run (README figures)

tests/test_drills.py runs a few of the same drills in CI. Exits 1 on the first broken promise.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample"


@dataclass(frozen=True)
class Drill:
    name: str
    args: tuple[str, ...]  # the CLI's arguments; OUT is replaced by the output path
    output: str  # file or folder name of the output


DRILLS = (
    Drill("convert", ("convert", str(SAMPLE / "digits_cnn.pt2"), "-o", "OUT"), "model.onnx"),
    Drill(
        "quantize",
        ("quantize", "MODEL_ONNX", "--mode", "dynamic", "-o", "OUT"),
        "quantized",
    ),
    Drill(
        "export-docker",
        ("export", "docker", str(SAMPLE / "digits_cnn.pt2"), "-o", "OUT", "--no-build"),
        "docker",
    ),
)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (relative path -> sha256), the folder listing included."""
    return {
        str(p.relative_to(folder)): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        )
        for p in sorted(folder.rglob("*"))
    }


def command(drill: Drill, out: Path, model_onnx: Path) -> list[str]:
    args = [
        str(out) if a == "OUT" else str(model_onnx) if a == "MODEL_ONNX" else a for a in drill.args
    ]
    return [sys.executable, "-m", "workflows.cli", *args]


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def listening_ports(processes: list[psutil.Process]) -> set[int]:
    ports = set()
    for p in processes:
        try:
            for c in p.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    ports.add(c.laddr.port)
        except psutil.Error:
            continue
    return ports


def _is_step(p: psutil.Process) -> bool:
    """The step process (multiprocessing's spawned child), not its resource tracker."""
    try:
        line = " ".join(p.cmdline())
    except psutil.Error:
        return False
    return "spawn_main" in line and "resource_tracker" not in line


def _inode(path: Path) -> int:
    """The output's inode: a finished step's atomic swap gives it a new one."""
    return path.stat().st_ino


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def prepare(work: Path) -> tuple[Path, dict[str, float]]:
    """The ONNX model quantize reads, and each drill's full duration (a first, complete run that
    also leaves the good output every later drill must not touch)."""
    model_onnx = work / "input" / "model.onnx"
    model_onnx.parent.mkdir(parents=True)
    subprocess.run(
        command(DRILLS[0], model_onnx, model_onnx),
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    durations = {}
    for drill in DRILLS:
        folder = work / drill.name
        folder.mkdir()
        started = time.monotonic()
        subprocess.run(
            command(drill, folder / drill.output, model_onnx),
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=900,
        )
        durations[drill.name] = time.monotonic() - started
    return model_onnx, durations


def one_drill(
    drill: Drill, work: Path, model_onnx: Path, rng: random.Random, duration: float
) -> tuple[str, str] | None:
    """Run `drill` and SIGKILL it at a random moment: (what was done, what broke or ''); None
    when it finished before its moment came (no kill)."""
    folder = work / drill.name
    before = snapshot(folder)
    inode_at_start = _inode(folder / drill.output)
    victim = rng.choice(["cli", "step"])
    delay = rng.uniform(0.05, duration * 0.95)
    cli = subprocess.Popen(
        command(drill, folder / drill.output, model_onnx),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[int, psutil.Process] = {}
    ports: set[int] = set()
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and cli.poll() is None:
        kids = descendants(cli.pid)
        seen.update({p.pid: p for p in kids})
        ports |= listening_ports(kids)
        time.sleep(0.02)
    if cli.poll() is not None:
        return None  # finished before its moment came
    target = cli.pid
    if victim == "step":
        steps = [p for p in descendants(cli.pid) if p.ppid() == cli.pid and _is_step(p)]
        if steps:
            target = steps[0].pid
    with_pid = f"{drill.name}: SIGKILL {victim} (pid {target}) after {delay:.2f} s"
    output = folder / drill.output
    inode_before = _inode(output)  # as close to the kill as it can be
    with contextlib.suppress(ProcessLookupError):
        os.kill(target, signal.SIGKILL)
    killed = time.monotonic()
    # After the step child dies, the CLI reports it and exits on its own; after the CLI dies,
    # the step child notices its parent is gone and kills its own process group.
    if victim == "cli":
        cli.wait(10)
    else:
        try:
            cli.wait(30)
        except subprocess.TimeoutExpired:
            cli.kill()
            cli.wait()
            return with_pid, "the CLI did not exit after its step was killed"
    while any(alive(p) for p in seen.values()) and time.monotonic() - killed < 5:
        time.sleep(0.05)
    orphans = [p for p in seen.values() if alive(p)]
    gone_after = time.monotonic() - killed
    for p in orphans:
        p.kill()
    if orphans:
        return with_pid, f"{len(orphans)} orphan(s): {[p.pid for p in orphans]}"
    if gone_after > 2.0:
        return with_pid, f"its processes took {gone_after:.1f} s to go"
    time.sleep(0.3)  # a late writer would show now
    after = snapshot(folder)
    if after != before:
        # Only a run that had already put its new output in place before the kill may leave
        # it (a kill cannot undo a finished swap); it must then be complete: the same files.
        committed_before_kill = inode_before != inode_at_start
        complete = sorted(after) == sorted(before)
        if not (committed_before_kill and complete):
            changed = sorted(set(before.items()) ^ set(after.items()))[:4]
            return with_pid, f"the output folder changed: {changed}"
    busy = [p for p in ports if port_in_use(p)]
    if busy:
        return with_pid, f"port(s) {busy} still in use"
    return with_pid, ""


def run(kills: int, seed: int, log=print) -> list[str]:
    """`kills` seeded drills; the list of broken promises (empty when all held)."""
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="dockyard-drills-"))
    try:
        model_onnx, durations = prepare(work)
        log(f"full runs: {', '.join(f'{k} {v:.1f} s' for k, v in durations.items())}")
        failures = []
        done = attempts = 0
        while done < kills and attempts < 2 * kills:
            attempts += 1
            drill = rng.choice(DRILLS)
            outcome = one_drill(drill, work, model_onnx, rng, durations[drill.name])
            if outcome is None:
                log(f"{drill.name}: finished before its kill, not counted")
                continue
            done += 1
            what, problem = outcome
            log(f"drill {done}/{kills} {what}: {problem or 'ok'}")
            if problem:
                failures.append(f"{what}: {problem}")
        return failures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    failures = run(args.kills, args.seed)
    print(
        f"{args.kills} kills (seed {args.seed}) in {time.monotonic() - started:.0f} s: "
        f"{len(failures)} broken promises"
    )
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
