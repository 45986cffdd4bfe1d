"""Warm step workers: a parked child runs exactly one step, with the same results, errors,
cancel and clean-up as a freshly spawned one, and is replaced after; idle workers die with
their parent and never outlive the pool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from workflows import warm
from workflows.errors import FormatError, StepCancelled, StepCrashed
from workflows.runner import NESTED_ENV, StepProcess, run_step

STEPS = "tests.workflows.runner_steps"
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "resources" / "sample"


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.delenv(warm.DISABLE_ENV, raising=False)
    p = warm.Pool()
    monkeypatch.setattr(warm, "_POOL", p)
    p.want("onnx")
    assert p.wait_ready(120), "the warm worker did not finish importing"
    yield p
    p.shutdown()


def test_a_warm_worker_runs_one_step_and_is_replaced(capfd, pool):
    parked = pool.idle()["onnx"]
    events: list[float] = []
    proc = StepProcess(f"{STEPS}:echo", {"a": 1}, lambda f, m: events.append(f))
    assert proc.warm and proc.pid == parked
    result = proc.wait(60)
    assert result["echo"] == {"a": 1} and result["nan"] is None
    assert events[-1] == 1.0 and events == sorted(events)
    proc.process.join(10)
    assert proc.process.exitcode == 0  # one step, then it exits
    replacement = pool.idle()["onnx"]
    assert replacement != parked  # parked again for the next step
    assert "noise a library printed" not in capfd.readouterr().out  # not on the parent's stdout


def test_without_a_log_the_step_prints_to_the_inherited_stderr(capfd, monkeypatch):
    monkeypatch.delenv(warm.DISABLE_ENV, raising=False)
    p = warm.Pool()  # started here, not in a fixture: it inherits this test's captured stderr
    monkeypatch.setattr(warm, "_POOL", p)
    try:
        p.want("onnx")
        proc = StepProcess(f"{STEPS}:echo", {})
        assert proc.warm
        proc.wait(60)
        proc.process.join(10)
    finally:
        p.shutdown()
    captured = capfd.readouterr()
    assert "noise a library printed" in captured.err
    assert "noise a library printed" not in captured.out


def test_a_step_log_gets_what_the_libraries_print(capfd, pool, tmp_path):
    log = tmp_path / "echo.log"
    run_step(f"{STEPS}:echo", {}, log=log, timeout=60)
    assert "noise a library printed" in log.read_text()
    assert "noise a library printed" not in capfd.readouterr().err


def test_errors_and_crashes_are_the_same_as_in_a_fresh_process(pool):
    with pytest.raises(FormatError, match="the file is empty"):
        run_step(f"{STEPS}:user_error", {}, timeout=60)
    assert pool.wait_ready(120)
    proc = StepProcess(f"{STEPS}:segfault", {})
    assert proc.warm
    with pytest.raises(StepCrashed, match="SIGSEGV"):
        proc.wait(60)
    assert "onnx" in pool.idle()  # a crash is replaced like any other step


def test_cancelling_a_warm_step_kills_it_and_its_children_and_leaves_nothing(pool, tmp_path):
    target = tmp_path / "export"
    pid_file = tmp_path / "grandchild.pid"
    first = threading.Event()
    proc = StepProcess(
        f"{STEPS}:long_running",
        {"output": str(target), "grandchild_pid_file": str(pid_file)},
        lambda f, m: first.set(),
        outputs=[target],
    )
    assert proc.warm
    outcome: dict[str, BaseException] = {}
    waiter = threading.Thread(target=lambda: _wait(proc, outcome))
    waiter.start()
    assert first.wait(30)
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text():
            break
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    started = time.monotonic()
    proc.cancel()
    elapsed = time.monotonic() - started
    waiter.join(10)
    assert elapsed < 1.0, f"cancel took {elapsed:.2f} s"
    assert isinstance(outcome["error"], StepCancelled)
    assert gone(proc.pid) and gone(grandchild)
    assert not list(tmp_path.glob(".export.dockyard-partial-*")), "partial output left behind"
    assert not target.exists()


def _wait(proc: StepProcess, outcome: dict[str, BaseException]) -> None:
    try:
        proc.wait()
    except BaseException as exc:
        outcome["error"] = exc


def test_no_worker_inside_a_step_or_when_switched_off(pool, monkeypatch):
    monkeypatch.setenv(warm.DISABLE_ENV, "1")
    assert not StepProcess(f"{STEPS}:user_error", {}).warm
    monkeypatch.delenv(warm.DISABLE_ENV)
    monkeypatch.setenv(NESTED_ENV, "1")  # a nested step starts a plain process
    assert not warm.Pool.enabled()


def test_shutdown_kills_the_parked_workers(monkeypatch):
    monkeypatch.delenv(warm.DISABLE_ENV, raising=False)
    p = warm.Pool()
    p.want("onnx")
    pid = p.idle()["onnx"]
    p.shutdown()
    deadline = time.monotonic() + 10
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)
    assert p.start("onnx") is None  # a closed pool starts nothing


PARENT = """
import sys, time
sys.path.insert(0, {root!r})
from workflows import warm
if __name__ == "__main__":
    p = warm.pool()
    p.want("onnx")
    p.wait_ready(120)
    print(p.idle()["onnx"], flush=True)
    time.sleep(600)
"""


def test_an_idle_worker_dies_with_its_killed_parent(tmp_path, monkeypatch):
    monkeypatch.delenv(warm.DISABLE_ENV, raising=False)
    script = tmp_path / "parent.py"
    script.write_text(PARENT.format(root=str(ROOT)))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        assert psutil.pid_exists(worker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while not gone(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(worker), "a parked worker outlived the app that started it"
    finally:
        parent.kill()


FORKS = warm._forks("onnx")


@pytest.mark.skipif(not FORKS, reason="warm workers are forked on Linux only")
def test_a_forked_worker_has_the_parents_environment_and_cwd_of_now_and_its_familys_modules(
    pool, monkeypatch, tmp_path
):
    parked = psutil.Process(pool.idle()["onnx"])
    server = parked.ppid()
    assert server != os.getpid()  # forked by the family's server, which this process started
    assert psutil.Process(server).ppid() == os.getpid()
    # Set after the server started: a forked worker still sees them, as a spawned one would.
    monkeypatch.setenv("DOCKYARD_TEST_MARK", "set later")
    monkeypatch.chdir(tmp_path)
    pool.take("onnx").kill()  # the parked one was forked before: a fresh one for the step
    pool.start("onnx")
    proc = StepProcess(f"{STEPS}:environment", {"name": "DOCKYARD_TEST_MARK"})
    assert proc.warm
    seen = proc.wait(60)
    assert seen == {"value": "set later", "torch": False, "cwd": str(tmp_path)}
    assert psutil.Process(server).is_running()  # one server for every worker of the family


@pytest.mark.skipif(not FORKS, reason="warm workers are forked on Linux only")
def test_torch_workers_are_forked_with_torch_imported_and_onnx_ones_without(pool):
    pool.want("torch")
    assert not pool.settled()  # its server is importing torch: said at once, not waited for
    assert pool.wait_ready(180) and pool.settled()
    torch_worker = psutil.Process(pool.idle()["torch"])
    onnx_worker = psutil.Process(pool.idle()["onnx"])
    servers = [psutil.Process(torch_worker.ppid()), psutil.Process(onnx_worker.ppid())]
    assert servers[0].pid != servers[1].pid  # a server per family

    # ONNX Runtime (whose library may open a SQLite database) is loaded by each worker after
    # its fork, never by a server it forks from.
    def loaded_onnxruntime(p: psutil.Process) -> bool:
        return "libonnxruntime" in " ".join(m.path for m in p.memory_maps())

    assert not any(loaded_onnxruntime(server) for server in servers)
    assert loaded_onnxruntime(onnx_worker) and loaded_onnxruntime(torch_worker)
    options = {"name": "HOME", "model": {"path": str(SAMPLE / "digits_cnn.pt2")}}
    proc = StepProcess(f"{STEPS}:environment", options)  # a .pt2: the torch family's worker
    assert proc.warm and proc.pid == torch_worker.pid and proc.wait(60)["torch"]


KILLED_WHILE_IMPORTING = """
import os, sys, time
sys.path.insert(0, {root!r})
from workflows import warm
if __name__ == "__main__":
    warm.pool().want("torch")  # its server now imports torch for seconds
    time.sleep(0.5)
    import psutil
    for p in psutil.Process().children():
        print(p.pid, "forkserver" in " ".join(p.cmdline()), flush=True)
    os.kill(os.getpid(), 9)
"""


@pytest.mark.skipif(not FORKS, reason="warm workers are forked on Linux only")
def test_a_fork_server_still_importing_dies_with_its_killed_parent(tmp_path, monkeypatch):
    monkeypatch.delenv(warm.DISABLE_ENV, raising=False)
    script = tmp_path / "parent.py"
    script.write_text(KILLED_WHILE_IMPORTING.format(root=str(ROOT)))
    said = tmp_path / "children.txt"
    # A file: with a pipe, run() would also wait for a server still holding it (one that
    # outlived its parent), and the check below would come too late to see it.
    with said.open("w") as out:
        subprocess.run([sys.executable, str(script)], stdout=out, timeout=60)
    children = dict(line.split() for line in said.read_text().splitlines())
    assert "True" in children.values(), children  # its torch server was among them
    deadline = time.monotonic() + 2
    while not all(gone(int(pid)) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(int(pid)) for pid in children), "a fork server outlived its killed parent"


def test_the_family_comes_from_the_models_formats(tmp_path):
    pt2 = str(SAMPLE / "digits_cnn.pt2")
    assert warm.family_of("inspect", {"model": {"path": pt2}}) == "onnx"  # read from its JSON
    assert warm.family_of("convert", {"model": {"path": pt2}}) == "torch"
    from tests.workflows.model_factory import save_onnx

    onnx_file = save_onnx(tmp_path)
    assert warm.family_of("quantize", {"model": {"path": str(onnx_file)}}) == "onnx"
    assert warm.family_of("validate", {"original": {"path": pt2},
                                       "candidate": {"path": str(onnx_file)}}) == "torch"  # fmt: skip
    assert warm.family_of("export-tfserving", {"model": {"path": str(onnx_file)}}) == "tensorflow"
    # The TFLite bundle converts ONNX and PyTorch in onnx2tf's environment: no TensorFlow here.
    assert warm.family_of("export-tflite", {"model": {"path": str(onnx_file)}}) == "onnx"
    assert warm.family_of("export-tflite", {"model": {"path": pt2}}) == "torch"
    assert warm.family_of("inspect", {"model": {"path": str(tmp_path / "missing.pt")}}) == "onnx"
    assert warm.family_of("benchmark", {"models": [str(onnx_file)]}) == "onnx"
