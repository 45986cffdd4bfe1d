"""ONNX -> TensorFlow SavedModel with onnx2tf, and from it the TFLite variants, run from onnx2tf's
own isolated environment (resources/toolenvs/onnx2tf_convert.py, one process: TensorFlow is
imported there once, and the step that asked needs none of its own).

onnx2tf transposes image inputs from NCHW to NHWC (TFLite's native layout); the bundle records the
layout and its validation feeds the original data transposed accordingly.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from workflows import toolenv
from workflows.errors import ConversionError, ExportError
from workflows.formats.onnx_format import copy_onnx
from workflows.progress import Progress, null_progress
from workflows.resources import resource

MARK = b"@@dockyard "


class Onnx2TF:
    """onnx2tf (and TFLiteConverter for `variants`) running in its own environment's Python,
    started now and awaited by `finish` and `variant` (the TFLite bundle starts it before
    loading the original model, which then loads beside it on the other core)."""

    def __init__(
        self, bin_dir: Path, onnx_path: Path, out_dir: Path, variants: Iterable[str] = ()
    ) -> None:
        env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "PYTHONNOUSERSITE": "1",
        }
        env.pop("PYTHONPATH", None)
        python = bin_dir / ("python.exe" if os.name == "nt" else "python")
        # onnx2tf simplifies its input with onnxsim and writes the result back over it: it gets a
        # copy, so the model it was given (a workflow's convert output, read by the other
        # exports, maybe beside this one) stays as it was. The variants are written there too.
        self._scratch = Path(tempfile.mkdtemp(prefix="dockyard-onnx2tf-"))
        self.variants = list(variants)
        cmd = [str(python), str(resource("toolenvs", "onnx2tf_convert.py")),
               str(self._scratch / onnx_path.name), str(out_dir)]  # fmt: skip
        if self.variants:
            cmd += ["--tflite", str(self._scratch), "--variants", ",".join(self.variants)]
        self.onnx_path, self.out_dir = onnx_path, out_dir
        self._events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=12)
        self._files: dict[str, Path] = {}
        self._saved = False
        try:
            copy_onnx(onnx_path, self._scratch, onnx_path.name)
            # In this step's process group: a cancel's group kill ends it too.
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
            )
        except BaseException:  # no copy left behind when it cannot start
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise
        self._reader = threading.Thread(
            target=self._read, name="dockyard-onnx2tf-output", daemon=True
        )
        self._reader.start()

    def _read(self) -> None:
        """Sort the tool's output: Dockyard's events into the queue, the rest kept as its tail."""
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if raw.startswith(MARK):
                self._events.put(json.loads(raw[len(MARK) :]))
            elif raw.strip():
                self._tail.append(raw.decode(errors="replace").rstrip())
        self._events.put(None)  # the tool ended

    def _next(self, waiting_for: str) -> dict[str, Any]:
        """The tool's next event; ConversionError with its last lines when it ended without."""
        try:
            event = self._events.get(timeout=1800)
        except queue.Empty:
            self.close()
            raise ConversionError(
                f"{self.onnx_path}: onnx2tf took more than 30 minutes ({waiting_for})"
            ) from None
        if event is None:
            self.proc.wait()
            self._events.put(None)  # every later wait ends too
            tail = "\n".join(self._tail)
            raise ConversionError(f"{self.onnx_path}: onnx2tf could not convert the model:\n{tail}")
        if event["event"] == "error":
            self._events.put(None)
            raise ExportError(
                f"TFLiteConverter failed for the {event['variant']} variant: {event['message']}"
            )
        return event

    def finish(self, progress: Progress | None = None) -> Path:
        """Wait for the SavedModel; ConversionError with onnx2tf's last lines when it failed."""
        progress = progress or null_progress()
        progress.update(0.65, "Converting ONNX to a TensorFlow SavedModel (onnx2tf)")
        while not self._saved:
            if self._next("the SavedModel")["event"] == "savedmodel":
                self._saved = True
        if not self.variants:
            self.proc.wait()
        progress.update(1.0, "SavedModel ready")
        return self.out_dir

    def variant(self, variant: str) -> bytes:
        """The `variant`'s flatbuffer (asked for when started), once the tool has written it."""
        if variant not in self.variants:
            raise ValueError(f"{variant} was not asked of onnx2tf ({self.variants})")
        self.finish()
        while variant not in self._files:
            event = self._next(f"the {variant} variant")
            if event["event"] == "variant":
                self._files[event["variant"]] = Path(event["file"])
        return self._files[variant].read_bytes()

    def calibrate(
        self, input_name: str, representative: Callable[[], Iterator[dict[str, np.ndarray]]]
    ) -> None:
        """Stream INT8's representative data (TFLiteConverter's `representative_dataset`: one
        {input_name: sample} per call, TFLite layout) to the tool as it reads it."""
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(json.dumps({"input": input_name}).encode() + b"\n")
            for feeds in representative():
                data = np.ascontiguousarray(feeds[input_name], dtype=np.float32)
                stdin.write(json.dumps({"shape": list(data.shape)}).encode() + b"\n")
                stdin.write(data.tobytes())
            stdin.write(b'{"end": true}\n')
            stdin.flush()
        except OSError:  # the tool ended: its own reason is the error to show
            while True:
                self._next("the representative data")

    def close(self) -> None:
        """Kill it if it still runs (the export failed or finished without it)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._reader.join(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a broken pipe has nothing left to flush
                    pipe.close()
        shutil.rmtree(self._scratch, ignore_errors=True)


def onnx_to_savedmodel(onnx_path: Path, out_dir: Path, progress: Progress | None = None) -> Path:
    """Convert `onnx_path` into a SavedModel at `out_dir` (signature serving_default)."""
    progress = progress or null_progress()
    bin_dir = toolenv.ensure(toolenv.ONNX2TF, progress=progress.scaled(0.0, 0.6))
    tool = Onnx2TF(bin_dir, onnx_path, out_dir)
    try:
        return tool.finish(progress)
    finally:
        tool.close()
