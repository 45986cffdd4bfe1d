"""Warm step workers: child processes started ahead of time, their frameworks already imported.

A step's child process spends most of its life importing: spawning Python and importing torch
takes seconds, while the sample's inspect takes milliseconds. A warm worker is the same child
the runner would start (own process group, dies with its parent, killed on cancel), started
earlier and parked after its imports until a step is handed to it. Each worker runs exactly one
step and then exits, so crash isolation and cancel-by-kill are unchanged; the pool starts its
replacement when the step ends, not while it runs (a benchmark must not share the CPU with a
framework import).

One idle worker at most per framework family; the GUI starts "onnx" and "torch" after its
window has painted and "tensorflow" only once a TensorFlow model is opened, and `dockyard-cli
run` starts the next step's family while a step runs (not during a benchmark). Which family a
step needs is a guess from its models' formats: a wrong guess costs the imports, never
correctness (a step imports what it needs either way).

On Linux (not in the frozen app) the ONNX and PyTorch workers are forked from a fork server of
their family (multiprocessing's forkserver, one per family), which imported the family's
modules once: a replacement worker is ready in ~0.1 s of CPU instead of seconds of imports,
which on 2 cores the steps running meanwhile paid for. The forked worker is still a fresh process
with its own process group that runs one step; it takes the parent's current environment and
watches the fork server, which exits as soon as the parent is gone. TensorFlow workers are
spawned as before (TensorFlow does not promise a usable state after fork). DOCKYARD_WARM_FORK=0
spawns every worker.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAMILIES = ("onnx", "torch", "tensorflow")
# What each family imports while it waits, most needed first (a worker handed a step before it
# is done stops importing). Every family has the engine and ONNX Runtime; the framework modules
# are the ones the steps' formats import (formats/_torch.py, _tf.py).
PREIMPORTS: dict[str, tuple[str, ...]] = {
    "onnx": ("numpy", "onnx", "onnxruntime", "onnxruntime.quantization", "workflows.formats"),
    # torch.export.load pulls in dynamo, sympy and networkx (1,270 modules, ~0.9 s for the
    # sample .pt2 after `import torch`); the first conversion adds the ONNX exporter, onnxscript
    # and onnxslim (which imports onnx.reference: 720 modules, 0.75 s). Imported here, the
    # sample's inspect takes 0.16 s and its conversion 0.85 s (1.3 s without the exporter's).
    "torch": ("torch", "torch.export", "torch._dynamo", "torch._export.serde.serialize",
              "sympy", "networkx", "torch.onnx", "torch.onnx._internal.exporter._core",
              "onnxscript", "onnxscript.function_libs.torch_lib.ops",
              "torch._functorch.aot_autograd", "onnxslim", "onnx.reference"),
    "tensorflow": ("tensorflow", "keras", "tf2onnx", "onnxslim", "onnx.reference"),
}  # fmt: skip
FORMAT_FAMILY = {
    "exported_program": "torch",
    "torchscript": "torch",
    "pytorch_eager": "torch",
    "keras": "tensorflow",
    "savedmodel": "tensorflow",
}
# Formats a step reads without their framework (inspect: a .pt2 from its JSON).
WITHOUT_FRAMEWORK = {"inspect": {"exported_program"}}
# TF Serving's SavedModel, whatever the source. (The TFLite bundle of an ONNX or PyTorch model is
# converted in onnx2tf's own environment: its step imports no TensorFlow.)
STEP_FAMILY = {"export-tfserving": "tensorflow"}
DISABLE_ENV = "DOCKYARD_NO_WARM_WORKERS"  # set to 1: every step starts a fresh process
FORK_ENV = "DOCKYARD_WARM_FORK"  # set to 0: warm workers are spawned, never forked
FORKED_FAMILIES = ("onnx", "torch")


def _modules(family: str) -> tuple[str, ...]:
    """What a `family` worker imports, in order: ONNX Runtime, the framework, then the steps."""
    from workflows import catalogue

    steps = tuple(spec.module for spec in catalogue.STEPS.values())  # no framework at import
    base = PREIMPORTS["onnx"]
    framework = PREIMPORTS[family] if family != "onnx" else ()
    return (*base[:3], *framework, *base[3:], *steps)


def family_of(step: str, options: Any) -> str:
    """The framework family a step will import: from the formats of the models it names."""
    from workflows.formats import detect

    family = STEP_FAMILY.get(step, "onnx")
    for path in _model_paths(options):
        try:
            name = detect(Path(path)).NAME
        except Exception:  # the step itself reports a bad file; any worker can do that
            continue
        found = (
            "onnx" if name in WITHOUT_FRAMEWORK.get(step, ()) else FORMAT_FAMILY.get(name, "onnx")
        )
        if FAMILIES.index(found) > FAMILIES.index(family):
            family = found
    return family


def _model_paths(options: Any) -> list[str]:
    """Paths of the models in a step's options: every mapping with a string "path"."""
    found: list[str] = []
    if isinstance(options, dict):
        if isinstance(options.get("path"), str):
            found.append(options["path"])
        for value in options.values():
            found.extend(_model_paths(value))
    elif isinstance(options, list):
        for value in options:
            found.extend(_model_paths(value))
    return found


def _preimport(family: str, handed_over: Callable[[], bool] = lambda: False) -> None:
    """Import what `family`'s steps will need, most needed first; stop as soon as a step has
    been handed over (it imports what it needs itself, and must not wait for the rest). A
    module that fails here fails in the step, with its message."""
    for module in _modules(family):
        if handed_over():
            return
        with contextlib.suppress(Exception):
            importlib.import_module(module)
    with contextlib.suppress(Exception):  # the graph view's layouts (without matplotlib)
        from workflows.graph_layout import import_igraph

        import_igraph()
    with contextlib.suppress(Exception):  # cached: py-cpuinfo's second (macOS, Windows, Arm)
        from workflows.machine import cpu_features

        cpu_features()


def _worker_main(
    family: str,
    jobs: Any,
    events: Any,
    ready: Any,
    parent: int,
    log: str,
    environ: dict[str, str] | None = None,
    stdio: _Stdio | None = None,
) -> None:
    """A warm worker: enter the step child's state, import, wait for one step, run it, exit.
    `environ`: forked from a fork server, which was started with an older environment: the
    parent's as it is now replaces it, and the fork server (which exits with the parent) is
    the process this worker dies with; `stdio`: the parent's stdout and stderr, for the ones
    the server inherited when it started."""
    from workflows import child

    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
        parent = os.getppid()
    if stdio is not None:
        stdio.adopt()
    child.enter_child(parent, log)
    _preimport(family, lambda: jobs.poll(0))
    ready.set()
    try:
        step, options, step_log = jobs.recv()
    except (EOFError, OSError):  # the pool was shut down before handing over a step
        os._exit(0)
    child.switch_log(log, step_log)
    child.serve_step(step, options, events, parent)


class _Stdio:
    """The parent's stdout and stderr as they are when a worker is forked, sent with it (a
    fork server's own are the parent's when the server started: a test's capture since ended,
    say). Pickled for a fork server only: the descriptors go over its socket."""

    def __init__(self, fds: tuple[Any, ...] = ()) -> None:
        self.fds = [fd.detach() for fd in fds]  # in the worker: the received descriptors

    def __reduce__(self) -> tuple[Any, ...]:
        from multiprocessing import reduction

        return (_Stdio, ((reduction.DupFd(1), reduction.DupFd(2)),))

    def adopt(self) -> None:
        for target, fd in zip((1, 2), self.fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)


@dataclass
class Worker:
    """One parked worker: its process, the pipe a step is handed over on, the events it sends."""

    family: str
    process: Any
    jobs: Any
    events: Any
    ready: Any
    log: Path

    def alive(self) -> bool:
        return self.process.exitcode is None and self.process.is_alive()

    def forking(self) -> bool:
        """Still being forked (no pid yet: the fork server is importing)."""
        return isinstance(self.process, _FORKED) and self.process.pending()

    def kill(self) -> None:
        from workflows.child import kill_group

        if isinstance(self.process, _FORKED):
            self.process.doom()  # a worker still being forked goes once it is
        else:
            kill_group(self.process)


class Pool:
    """At most one idle worker per family. Thread-safe: the GUI starts workers off its thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, Worker] = {}
        self._wanted: set[str] = set()
        self._closed = False
        self._logs = Path(tempfile.mkdtemp(prefix="dockyard-warm-"))

    @staticmethod
    def enabled() -> bool:
        """Off inside a step (nested steps start plain processes) and when DISABLE_ENV is set."""
        from workflows.child import NESTED_ENV

        return not os.environ.get(NESTED_ENV) and os.environ.get(DISABLE_ENV, "") in ("", "0")

    def want(self, *families: str) -> None:
        """Keep a worker of each family ready from now on (started now, replaced after use)."""
        for family in families:
            if family not in FAMILIES:
                raise ValueError(f"unknown worker family {family!r}; families: {FAMILIES}")
        with self._lock:
            self._wanted.update(families)
        for family in families:
            self.start(family)

    def wanted(self) -> set[str]:
        with self._lock:
            return set(self._wanted)

    def start(self, family: str) -> Worker | None:
        """Start an idle worker of `family` unless one is parked already."""
        if not self.enabled():
            return None
        with self._lock:
            if self._closed:
                return None
            current = self._idle.get(family)
            if current is not None and current.alive():
                return current
            log = self._logs / f"{family}-{len(os.listdir(self._logs))}.log"
            started = self._start_process(family, log, forked=_forks(family))
            process, jobs_send, events_recv, ready = started
            worker = Worker(family, process, jobs_send, events_recv, ready, log)
            self._idle[family] = worker
            return worker

    @staticmethod
    def _start_process(family: str, log: Path, forked: bool) -> tuple[Any, ...]:
        ctx = mp.get_context("forkserver" if forked else "spawn")
        jobs_recv, jobs_send = ctx.Pipe(duplex=False)
        events_recv, events_send = ctx.Pipe(duplex=False)
        ready = ctx.Event()
        args = (family, jobs_recv, events_send, ready, os.getpid(), str(log))
        kind = _ForkedProcess if forked else ctx.Process
        process = kind(
            target=_worker_main,
            args=(*args, dict(os.environ), _Stdio()) if forked else args,
            daemon=False,  # a step may start nested steps, which daemons may not
            name=f"dockyard-warm-{family}",
        )
        if forked:
            process.family = family
            process.start_closing((jobs_recv, events_send))
        else:
            try:
                process.start()
            finally:
                jobs_recv.close()
                events_send.close()
        return process, jobs_send, events_recv, ready

    def take(self, family: str) -> Worker | None:
        """The idle worker of `family` (even one still importing: it is ahead of a fresh one)."""
        if not self.enabled():
            return None
        with self._lock:
            worker = self._idle.pop(family, None)
        if worker is not None and isinstance(worker.process, _FORKED):
            worker.process.wait_forked()  # the server's first fork waits for its imports
        if worker is None or not worker.alive():
            return None
        return worker

    def replace(self, family: str) -> None:
        """After a step of `family` ended: park a new worker if that family is wanted."""
        if family in self.wanted():
            self.start(family)

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Block until every parked worker has finished importing (benchmarks, tests)."""
        with self._lock:
            workers = list(self._idle.values())
        deadline = time.monotonic() + timeout
        for worker in workers:
            while not worker.ready.wait(max(0.0, min(0.1, deadline - time.monotonic()))):
                if not worker.alive() or time.monotonic() >= deadline:
                    return False
        return True

    def idle(self) -> dict[str, int]:
        """family -> pid of the parked workers (waits for one being forked: not on a GUI
        thread, which asks `settled`)."""
        with self._lock:
            workers = dict(self._idle)
        return {f: pid for f, w in workers.items() if (pid := w.process.pid) and w.alive()}

    def settled(self) -> bool:
        """Whether every wanted family has a parked worker done importing. Never blocks."""
        with self._lock:
            workers = dict(self._idle)
            wanted = set(self._wanted)
        return all(
            f in workers
            and not workers[f].forking()
            and workers[f].alive()
            and workers[f].ready.is_set()
            for f in wanted
        )

    def release(self) -> None:
        """Kill the parked workers and forget the wanted families (the app's window closed)."""
        with self._lock:
            workers = list(self._idle.values())
            self._idle.clear()
            self._wanted.clear()
        for worker in workers:
            worker.kill()

    def shutdown(self) -> None:
        """Release, and start nothing any more (this process is exiting)."""
        with self._lock:
            self._closed = True
        self.release()
        shutil.rmtree(self._logs, ignore_errors=True)
        _stop_servers()


def _forks(family: str) -> bool:
    """Whether `family`'s workers are forked from its fork server (see the module's doc)."""
    from workflows.frozen import is_frozen

    return (
        family in FORKED_FAMILIES
        and sys.platform == "linux"
        and not is_frozen()
        and os.environ.get(FORK_ENV, "") != "0"
        and family not in _BROKEN
    )


# multiprocessing has one fork server per process; a worker family needs its own (an ONNX worker
# must not hold torch), so each family gets a ForkServer of its own and a Popen that asks it.
# multiprocessing's own forkserver code does the rest: file descriptors sent over a Unix socket,
# the child's exit status, the server exiting when this process ends.
_SERVERS: dict[str, Any] = {}
_BROKEN: set[str] = set()  # families whose fork server failed: their workers are spawned
_GENERATION = [0]  # how many times the servers were stopped (a fork failing after that is not)
_SERVERS_LOCK = threading.Lock()


def _stop_servers() -> None:
    """Stop the fork servers (they also exit by themselves when this process ends)."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
        _GENERATION[0] += 1
    for server in servers:
        with contextlib.suppress(OSError, TypeError):
            # Killed, not asked: a server still importing would read its lifeline only after.
            os.kill(server._forkserver_pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            server._stop()  # close its lifeline, reap it, remove its socket


def _server(family: str) -> Any:
    from multiprocessing import forkserver

    with _SERVERS_LOCK:
        if family not in _SERVERS:
            server = forkserver.ForkServer()
            # Not ONNX Runtime: its library opens a SQLite database (~/.cache/Microsoft/
            # DeveloperTools) that forked children must not share; each worker imports it
            # after the fork (0.05 s once the rest is in).
            modules = [m for m in _modules(family) if m.split(".")[0] != "onnxruntime"]
            server.set_forkserver_preload(["workflows.warm_guard", *modules])
            _SERVERS[family] = server
        return _SERVERS[family]


def _forked_popen(process: Any) -> Any:
    import io
    from multiprocessing import popen_forkserver, spawn, util
    from multiprocessing.context import reduction, set_spawning_popen

    class FamilyPopen(popen_forkserver.Popen):
        def _launch(self, process_obj: Any) -> None:
            # popen_forkserver.Popen._launch (CPython 3.11), asking the family's server.
            prep_data = spawn.get_preparation_data(process_obj._name)
            buf = io.BytesIO()
            set_spawning_popen(self)
            try:
                reduction.dump(prep_data, buf)
                reduction.dump(process_obj, buf)
            finally:
                set_spawning_popen(None)
            server = _server(process_obj.family)
            self.sentinel, w = server.connect_to_new_process(self._fds)
            _parent_w = os.dup(w)
            self.finalizer = util.Finalize(self, util.close_fds, (_parent_w, self.sentinel))
            with open(w, "wb", closefd=True) as f:
                f.write(buf.getbuffer())
            self.pid = popen_forkserver.forkserver.read_signed(self.sentinel)

    return FamilyPopen(process)


if "forkserver" in mp.get_all_start_methods():

    class _ForkedProcess(mp.context.ForkServerProcess):  # type: ignore[name-defined]
        """A worker forked by its family's fork server. `start` returns at once: the first
        fork waits for the server's imports, which must not hold up the caller (the CLI's main
        thread, the app before its window); the process's methods wait for the fork."""

        family = "onnx"
        _launch: threading.Thread | None = None
        _doomed = False

        @staticmethod
        def _Popen(process_obj: Any) -> Any:
            return _forked_popen(process_obj)

        def start(self) -> None:
            raise NotImplementedError("start_closing: the child's ends close after the fork")

        def start_closing(self, child_ends: tuple[Any, ...]) -> None:
            """Fork in the background; then close this process's copies of `child_ends`."""

            generation = _GENERATION[0]

            def launch() -> None:
                try:
                    super(_ForkedProcess, self).start()
                except Exception:
                    if generation == _GENERATION[0]:  # the server failed, not stopped by us:
                        _BROKEN.add(self.family)  # this family's workers are spawned now
                    return
                finally:
                    for end in child_ends:
                        end.close()
                if self._doomed:  # killed while it was being forked
                    from workflows.child import kill_group

                    kill_group(self)

            self._launch = threading.Thread(target=launch, name="dockyard-fork", daemon=True)
            self._launch.start()

        def __getstate__(self) -> dict[str, Any]:  # sent to the server: not the thread
            return {k: v for k, v in self.__dict__.items() if k != "_launch"}

        def wait_forked(self) -> None:
            if self._launch is not None and self._launch is not threading.current_thread():
                self._launch.join()

        def is_alive(self) -> bool:
            if self.pending():
                return True  # being forked
            return self._popen is not None and super().is_alive()

        @property
        def exitcode(self) -> int | None:
            if self.pending():
                return None
            if self._popen is None:
                return 1  # never started: the server failed
            return super().exitcode

        @property
        def pid(self) -> int | None:  # type: ignore[override]
            self.wait_forked()
            return super().pid

        def pending(self) -> bool:
            return self._launch is not None and self._launch.is_alive()

        def doom(self) -> None:
            """Kill it once forked, without waiting for that here (see Worker.kill)."""
            self._doomed = True
            if not self.pending():
                from workflows.child import kill_group

                kill_group(self)

        def kill(self) -> None:
            self.wait_forked()
            if self._popen is not None:
                super().kill()

        def join(self, timeout: float | None = None) -> None:
            self.wait_forked()
            if self._popen is not None:
                super().join(timeout)


_FORKED: tuple[type, ...] = (_ForkedProcess,) if "forkserver" in mp.get_all_start_methods() else ()

_POOL: Pool | None = None
_POOL_LOCK = threading.Lock()


def pool() -> Pool:
    """The process's pool, created on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = Pool()
            # multiprocessing's exit handler joins every non-daemon child, a parked worker too,
            # forever. Imported first, it is registered first and so (LIFO) runs after ours.
            import multiprocessing.util  # noqa: F401

            atexit.register(_POOL.shutdown)
        return _POOL
