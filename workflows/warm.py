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
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
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
# TFLiteConverter and TF Serving's SavedModel, whatever the source.
STEP_FAMILY = {"export-tflite": "tensorflow", "export-tfserving": "tensorflow"}
DISABLE_ENV = "DOCKYARD_NO_WARM_WORKERS"  # set to 1: every step starts a fresh process


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
    from workflows import catalogue

    steps = tuple(spec.module for spec in catalogue.STEPS.values())  # no framework at import
    base = PREIMPORTS["onnx"]
    framework = PREIMPORTS[family] if family != "onnx" else ()
    for module in (*base[:3], *framework, *base[3:], *steps):
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


def _worker_main(family: str, jobs: Any, events: Any, ready: Any, parent: int, log: str) -> None:
    """A warm worker: enter the step child's state, import, wait for one step, run it, exit."""
    from workflows import child

    child.enter_child(parent, log)
    _preimport(family, lambda: jobs.poll(0))
    ready.set()
    try:
        step, options, step_log = jobs.recv()
    except (EOFError, OSError):  # the pool was shut down before handing over a step
        os._exit(0)
    child.switch_log(log, step_log)
    child.serve_step(step, options, events, parent)


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

    def kill(self) -> None:
        from workflows.child import kill_group

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
            ctx = mp.get_context("spawn")
            jobs_recv, jobs_send = ctx.Pipe(duplex=False)
            events_recv, events_send = ctx.Pipe(duplex=False)
            ready = ctx.Event()
            log = self._logs / f"{family}-{len(os.listdir(self._logs))}.log"
            process = ctx.Process(
                target=_worker_main,
                args=(family, jobs_recv, events_send, ready, os.getpid(), str(log)),
                daemon=False,  # a step may start nested steps, which daemons may not
                name=f"dockyard-warm-{family}",
            )
            process.start()
            jobs_recv.close()
            events_send.close()
            worker = Worker(family, process, jobs_send, events_recv, ready, log)
            self._idle[family] = worker
            return worker

    def take(self, family: str) -> Worker | None:
        """The idle worker of `family` (even one still importing: it is ahead of a fresh one)."""
        if not self.enabled():
            return None
        with self._lock:
            worker = self._idle.pop(family, None)
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
        return all(w.ready.wait(timeout) for w in workers)

    def idle(self) -> dict[str, int]:
        """family -> pid of the parked workers."""
        with self._lock:
            return {f: w.process.pid for f, w in self._idle.items() if w.alive()}

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
