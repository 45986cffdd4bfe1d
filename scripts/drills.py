"""Kill drills (issue #12): SIGKILL the CLI or the desktop app, or the step process it started,
at a seeded random moment of a real step, and check what a user would find afterwards:

- no orphan: every process the run started (step child, smoke-test server, its decoding process,
  TorchServe's JVM, onnx2tf, Qt WebEngine's helpers) is gone within 5 s;
- nothing partial, nothing replaced: each output is byte for byte the good one an earlier run
  made (or, when the run had already swapped its new output into place before the kill came,
  that complete new output), and the folder around it holds nothing new (no temp folder left);
- ports released: nothing listens on a port the run had opened.

    python scripts/drills.py [--kills 60] [--seed 1] [--only gui-convert,export-docker]

tests/test_drills.py runs a few of the same drills in CI. Exits 1 on any broken promise.
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
PT2 = str(SAMPLE / "digits_cnn.pt2")


@dataclass(frozen=True)
class Drill:
    name: str
    args: tuple[str, ...]  # the CLI's (or gui_drill.py's) arguments; OUT: the output path
    outputs: tuple[str, ...]  # what the run writes, relative to the drill's folder
    gui: bool = False  # the desktop app (scripts/gui_drill.py), not the CLI


DRILLS = (
    Drill("convert", ("convert", PT2, "-o", "OUT"), ("model.onnx",)),
    Drill("quantize", ("quantize", "MODEL_ONNX", "--mode", "dynamic", "-o", "OUT"), ("quantized",)),
    Drill("export-docker", ("export", "docker", PT2, "-o", "OUT", "--no-build"), ("docker",)),
    Drill("export-torchserve", ("export", "torchserve", PT2, "-o", "OUT"), ("torchserve",)),
    Drill(
        "export-tflite",
        ("export", "tflite", PT2, "-o", "OUT", "--variant", "fp32", "--variant", "dynamic"),
        ("tflite",),
    ),
    # The desktop app: loading (inspect, Netron's view) and then the wizard's buttons.
    Drill(
        "gui-convert",
        ("--root", "OUT", "--model", PT2, "convert"),
        ("digits_cnn/convert", "digits_cnn/validate.json"),
        gui=True,
    ),
    Drill(
        "gui-export-docker",
        ("--root", "OUT", "--model", PT2, "export-docker"),
        ("digits_cnn/export-docker",),
        gui=True,
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


def command(drill: Drill, folder: Path, model_onnx: Path) -> list[str]:
    """The drill's command line; its outputs go under `folder`."""
    out = folder if drill.gui else folder / drill.outputs[0]
    args = [
        str(out) if a == "OUT" else str(model_onnx) if a == "MODEL_ONNX" else a for a in drill.args
    ]
    if drill.gui:
        return [sys.executable, str(ROOT / "scripts" / "gui_drill.py"), *args]
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


def _runs_a_step(p: psutil.Process) -> bool:
    """Not a parked warm worker: those write to their own log in the pool's dockyard-warm-
    folder until a step is handed over (then to the step's log)."""
    try:
        return not any("dockyard-warm-" in f.path for f in p.open_files())
    except psutil.Error:
        return False


def _is_step(p: psutil.Process, top: int) -> bool:
    """A step process of `top`: its spawned child (not its resource tracker), or a warm worker
    forked by one of its fork servers (workflows/warm.py; same command line as the server)."""
    try:
        line = " ".join(p.cmdline())
        if "spawn_main" in line and "resource_tracker" not in line:
            return p.ppid() == top
        if "multiprocessing.forkserver" in line:
            server = psutil.Process(p.ppid())
            return server.ppid() == top and " ".join(server.cmdline()) == line
    except psutil.Error:
        return False
    return False


# How long a killed tree may take to go. Children notice a dead parent within a second; on a busy
# 2-core CI machine a SIGKILLed step holding torch was once still tearing down after 2 s.
EXIT_WINDOW = 5.0


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


class Prepared:
    """What the drills start from, made on a drill's first use (a short run picks a few of the
    drills; preparing all seven took more time than the kills): the ONNX model quantize reads,
    and each drill's full duration from a first, complete run, which also leaves the good output
    every later drill must not touch."""

    def __init__(self, work: Path, log=print) -> None:
        self.work, self.log = work, log
        self.model_onnx = work / "input" / "model.onnx"
        self.durations: dict[str, float] = {}

    def duration(self, drill: Drill) -> float:
        if drill.name not in self.durations:
            if "MODEL_ONNX" in drill.args and not self.model_onnx.exists():
                self.model_onnx.parent.mkdir(parents=True)
                subprocess.run(
                    command(DRILLS[0], self.model_onnx.parent, self.model_onnx),
                    cwd=ROOT,
                    check=True,
                    capture_output=True,
                    timeout=600,
                )
            folder = self.work / drill.name
            folder.mkdir()
            started = time.monotonic()
            done = subprocess.run(
                command(drill, folder, self.model_onnx), cwd=ROOT, capture_output=True, timeout=900
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"{drill.name}'s full run failed:\n{done.stderr.decode()[-3000:]}"
                )
            self.durations[drill.name] = time.monotonic() - started
            self.log(f"{drill.name}: full run {self.durations[drill.name]:.1f} s")
        return self.durations[drill.name]


def _inodes(folder: Path, drill: Drill) -> dict[str, int | None]:
    """Each output's inode (None while absent): a finished step's atomic swap gives a new one."""
    return {o: (folder / o).stat().st_ino if (folder / o).exists() else None for o in drill.outputs}


def _part(snap: dict[str, str], output: str) -> dict[str, str]:
    return {k: v for k, v in snap.items() if k == output or k.startswith(output + "/")}


def changes(
    drill: Drill,
    before: dict[str, str],
    after: dict[str, str],
    inodes_at_start: dict[str, int | None],
    inodes_at_kill: dict[str, int | None],
) -> str:
    """What broke the promise about the folder ('' when nothing did).

    An output may differ from the good one only if the run had put its new one in place before
    the kill (a kill cannot undo a finished swap), and then it must be complete: the same files.
    Nothing else in the folder may change."""
    for output in drill.outputs:
        old, new = _part(before, output), _part(after, output)
        committed_before_kill = inodes_at_kill[output] != inodes_at_start[output]
        if new != old and not (committed_before_kill and sorted(new) == sorted(old)):
            return f"{output} changed: {sorted(set(old.items()) ^ set(new.items()))[:4]}"
    rest_before = {
        k: v for k, v in before.items() if not any(_part({k: v}, o) for o in drill.outputs)
    }
    rest_after = {
        k: v for k, v in after.items() if not any(_part({k: v}, o) for o in drill.outputs)
    }
    if rest_after != rest_before:
        return (
            f"the folder changed: {sorted(set(rest_before.items()) ^ set(rest_after.items()))[:4]}"
        )
    return ""


def one_drill(
    drill: Drill, work: Path, model_onnx: Path, rng: random.Random, duration: float
) -> tuple[str, str] | None:
    """Run `drill` and SIGKILL it at a random moment: (what was done, what broke or ''); None
    when it finished before its moment came (no kill)."""
    folder = work / drill.name
    before = snapshot(folder)
    inodes_at_start = _inodes(folder, drill)
    victim = rng.choice(["parent", "step"])
    delay = rng.uniform(0.05, duration * 0.95)
    parent = subprocess.Popen(
        command(drill, folder, model_onnx),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[int, psutil.Process] = {}
    ports: set[int] = set()
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline and parent.poll() is None:
        kids = descendants(parent.pid)
        seen.update({p.pid: p for p in kids})
        with contextlib.suppress(psutil.Error):
            kids.append(psutil.Process(parent.pid))  # the app's own Netron server
        ports |= listening_ports(kids)
        time.sleep(0.02)
    if parent.poll() is not None:
        return None  # finished before its moment came
    target = parent.pid
    who = "app" if drill.gui else "cli"
    if victim == "step":
        steps = [p for p in descendants(parent.pid) if _is_step(p, parent.pid) and _runs_a_step(p)]
        if steps:
            target = steps[0].pid
            who = "step"
    # What the victim started: it must be gone within EXIT_WINDOW of the kill.
    doomed = descendants(target)
    with contextlib.suppress(psutil.Error):
        if target != parent.pid:
            doomed.append(psutil.Process(target))
    seen.update({p.pid: p for p in doomed})
    with_pid = f"{drill.name}: SIGKILL {who} (pid {target}) after {delay:.2f} s"
    inodes_at_kill = _inodes(folder, drill)  # as close to the kill as it can be
    with contextlib.suppress(ProcessLookupError):
        os.kill(target, signal.SIGKILL)
    killed = time.monotonic()
    # After the CLI or the app dies, the step child notices its parent is gone and kills its own
    # process group. After the step child dies, the CLI (or the app) reports it and goes on;
    # here both then exit, and what they still ran (the app's web view) must go with them.
    problem = _gone_within(doomed, EXIT_WINDOW, "the killed process's")
    took = time.monotonic() - killed
    if target == parent.pid:
        parent.wait(10)
    else:
        try:
            parent.wait(30)
        except subprocess.TimeoutExpired:
            parent.kill()
            parent.wait()
            return with_pid, f"the {who.replace('step', 'parent')} did not exit after its step died"
    problem = problem or _gone_within(list(seen.values()), EXIT_WINDOW, "the exited parent's")
    if problem:
        return with_pid, problem
    time.sleep(0.3)  # a late writer would show now
    problem = changes(drill, before, snapshot(folder), inodes_at_start, inodes_at_kill)
    if problem:
        return with_pid, problem
    busy = [p for p in ports if port_in_use(p)]
    if busy:
        return with_pid, f"port(s) {busy} still in use"
    summary = f"{len(doomed)} of {len(seen)} processes gone in {took:.1f} s, {len(ports)} ports"
    return f"{with_pid} ({summary})", ""


def _gone_within(processes: list[psutil.Process], seconds: float, whose: str) -> str:
    """'' once all of `processes` are gone, waiting at most `seconds` (the rest are then
    killed and named)."""
    end = time.monotonic() + seconds
    while any(alive(p) for p in processes) and time.monotonic() < end:
        time.sleep(0.05)
    orphans = [p for p in processes if alive(p)]
    for p in orphans:
        with contextlib.suppress(psutil.Error):
            p.kill()
    if orphans:
        return f"{len(orphans)} of {whose} processes outlived it by {seconds:g} s: " + str(
            [(p.pid, _name(p)) for p in orphans]
        )
    return ""


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())[:80]
    except psutil.Error:
        return "?"


def run(kills: int, seed: int, only: list[str] | None = None, log=print) -> list[str]:
    """`kills` seeded drills (of the drills named in `only`, else all); the list of broken
    promises (empty when all held)."""
    rng = random.Random(seed)
    drills = tuple(d for d in DRILLS if only is None or d.name in only)
    if only is not None and len(drills) != len(only):
        raise ValueError(f"unknown drills in {only}; known: {[d.name for d in DRILLS]}")
    work = Path(tempfile.mkdtemp(prefix="dockyard-drills-"))
    try:
        prepared = Prepared(work, log)
        failures = []
        done = attempts = 0
        while done < kills and attempts < 2 * kills:
            attempts += 1
            drill = rng.choice(drills)
            duration = prepared.duration(drill)
            outcome = one_drill(drill, work, prepared.model_onnx, rng, duration)
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
    parser.add_argument("--only", help="comma-separated drill names (default: all)")
    args = parser.parse_args()
    started = time.monotonic()
    failures = run(args.kills, args.seed, args.only.split(",") if args.only else None)
    print(
        f"{args.kills} kills (seed {args.seed}) in {time.monotonic() - started:.0f} s: "
        f"{len(failures)} broken promises"
    )
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
