"""The child-process runner: progress, results, errors, crashes, cancel within 1 s, clean-up."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import psutil
import pytest

from workflows.atomic import OWNER_MARK
from workflows.errors import FormatError, StepCancelled, StepCrashed
from workflows.runner import StepFailed, StepProcess, run_inline, run_step

STEPS = "tests.workflows.runner_steps"


def test_progress_events_and_result(capfd):
    events = []
    result = run_step(f"{STEPS}:echo", {"a": 1}, lambda f, m: events.append((f, m)), timeout=60)
    assert result["echo"] == {"a": 1}
    assert result["nan"] is None  # non-finite floats are made JSON-safe
    assert events[-1] == (1.0, "step 5 of 5")
    assert [f for f, _ in events] == sorted(f for f, _ in events)
    assert "noise a library printed" not in capfd.readouterr().out


def test_expected_error_keeps_its_type_and_message():
    with pytest.raises(FormatError, match="the file is empty"):
        run_step(f"{STEPS}:user_error", {}, timeout=60)


def test_an_error_with_a_richer_constructor_keeps_its_type_and_message():
    from workflows.errors import OptionsError

    with pytest.raises(OptionsError, match=r"models\[0\]: expected a string, got a mapping"):
        run_step(f"{STEPS}:options_error", {}, timeout=60)


def test_unexpected_error_carries_the_traceback():
    with pytest.raises(StepFailed) as info:
        run_step(f"{STEPS}:bug", {}, timeout=60)
    assert "ZeroDivisionError" in str(info.value)
    assert "return 1 / 0" in info.value.details


def test_segfault_becomes_an_error_not_a_hang():
    started = time.monotonic()
    with pytest.raises(StepCrashed, match="SIGSEGV"):
        run_step(f"{STEPS}:segfault", {}, timeout=60)
    assert time.monotonic() - started < 30


def _start_and_wait_for_progress(options):
    first = threading.Event()
    proc = StepProcess(
        f"{STEPS}:long_running",
        options,
        lambda f, m: first.set(),
        outputs=[Path(options["output"])],
    )
    outcome = {}

    def wait():
        try:
            proc.wait()
        except BaseException as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert first.wait(30), "no progress event arrived"
    return proc, waiter, outcome


@pytest.mark.parametrize("groups", [True, False], ids=["process-group", "no-groups-as-on-windows"])
def test_cancel_kills_within_a_second_and_cleans_up(tmp_path, monkeypatch, groups):
    if not groups:  # Windows: no killpg; the grandchild is found by its parent id
        monkeypatch.delattr(os, "killpg", raising=False)
    target = tmp_path / "export"
    target.mkdir()
    (target / "good.txt").write_text("a good earlier result")
    (target / OWNER_MARK).write_text("")  # Dockyard's own earlier output, replaceable
    pid_file = tmp_path / "grandchild.pid"
    proc, waiter, outcome = _start_and_wait_for_progress(
        {"output": str(target), "grandchild_pid_file": str(pid_file)}
    )
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert list(tmp_path.glob(".export.dockyard-partial-*")), "the step should be mid-write"

    started = time.monotonic()
    proc.cancel()
    elapsed = time.monotonic() - started
    waiter.join(10)
    assert elapsed < 1.0, f"cancel took {elapsed:.2f} s"
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == "zombie"
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie"
    assert isinstance(outcome["error"], StepCancelled)
    assert not list(tmp_path.glob(".export.dockyard-partial-*")), "partial output left behind"
    assert (target / "good.txt").read_text() == "a good earlier result"


def test_timeout_cancels(tmp_path):
    with pytest.raises(StepCancelled, match="timed out"):
        run_step(
            f"{STEPS}:long_running",
            {"output": str(tmp_path / "x")},
            timeout=1.5,
            outputs=[tmp_path / "x"],
        )
    assert not list(tmp_path.iterdir())


def test_run_inline_same_shape():
    assert run_inline(f"{STEPS}:echo", {"b": 2})["echo"] == {"b": 2}


def test_finished_child_is_reaped():
    proc = StepProcess(f"{STEPS}:echo", {})
    proc.wait(timeout=60)
    assert proc.process.exitcode == 0
    assert not psutil.pid_exists(proc.pid)


# A parent that starts a long step (which itself starts a grandchild), prints their pids, waits.
PARENT = """
import sys, time
from pathlib import Path
from workflows.runner import StepProcess

out, pid_file = Path(sys.argv[1]), Path(sys.argv[2])
proc = StepProcess("tests.workflows.runner_steps:long_running",
                   {"output": str(out), "grandchild_pid_file": str(pid_file)},
                   lambda f, m: None, outputs=[out])
print(proc.pid, flush=True)
proc.wait()
"""


def kill_parent_mid_step(tmp_path: Path) -> tuple[list[int], float, Path]:
    """SIGKILL a parent (the CLI, the app) while its step and the step's grandchild run, with a
    good earlier output in place: (pids left after 5 s, seconds until all were gone, the
    output folder). Also a corpus entry (tests/corpus/other.yaml, f-parent-killed)."""
    import os
    import signal
    import subprocess
    import sys

    target = tmp_path / "export"
    target.mkdir()
    (target / "good.txt").write_text("a good earlier result")
    (target / OWNER_MARK).write_text("")
    pid_file = tmp_path / "grandchild.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(target), str(pid_file)],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
    )
    child = int(parent.stdout.readline())
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)  # no cancel, no clean-up
    parent.wait()
    parent.stdout.close()
    killed = time.monotonic()

    def gone(pid: int) -> bool:
        return not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"

    while not (gone(child) and gone(grandchild)) and time.monotonic() - killed < 5:
        time.sleep(0.05)
    took = time.monotonic() - killed
    time.sleep(0.5)  # a late writer would show now
    return [p for p in (child, grandchild) if not gone(p)], took, target


def test_a_step_dies_with_its_killed_parent_and_writes_nothing(tmp_path):
    orphans, took, target = kill_parent_mid_step(tmp_path)
    assert orphans == [], "orphaned step processes"
    assert took < 2.0
    assert sorted(p.name for p in target.iterdir()) == sorted(["good.txt", OWNER_MARK])
    assert (target / "good.txt").read_text() == "a good earlier result"
