"""What every export target shares: source hashing, tool versions, sample I/O, manifest.json."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import re
import socket
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from workflows import __version__
from workflows.jsonable import jsonable

TOOLS = (
    "onnx",
    "onnxruntime",
    "torch",
    "tensorflow-cpu",
    "keras",
    "tf2onnx",
    "ai-edge-litert",
    "torch-model-archiver",
    "torchserve",
    "numpy",
)


def sha256(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def safe_name(text: str) -> str:
    """A name fit for URLs and Kubernetes (lowercase letters, digits, '-')."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name[:50] or "model"


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools that can shape an export."""
    versions = {"dockyard": __version__}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def mirrored_batch(
    feeds: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A second sample and the batch of both: the first sample mirrored along its last axis
    (same sizes and the same values, so valid for any input: pixels, token ids, a sample rate),
    and each input's two rows joined."""
    other = {k: np.ascontiguousarray(np.flip(v, axis=-1)) for k, v in feeds.items()}
    return other, {k: np.concatenate([feeds[k], other[k]]) for k in feeds}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


V2_DATATYPES = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


def v2_datatype(dtype: Any) -> str:
    """Open Inference Protocol v2 datatype of a numpy dtype ("float32" -> "FP32")."""
    return V2_DATATYPES.get(np.dtype(dtype).name, "BYTES")


def v2_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    """An Open Inference Protocol v2 tensor (flat data) from a numpy array."""
    return {
        "name": name,
        "shape": list(array.shape),
        "datatype": v2_datatype(array.dtype),
        "data": array.ravel().tolist(),
    }


def max_abs_error(got: dict[str, Any], want: dict[str, np.ndarray]) -> float:
    """The largest absolute difference between outputs `got` and `want` (keyed by output name;
    every output of `want` must be in `got`, with its shape)."""
    from workflows.errors import ExportError

    worst = 0.0
    for name, expected in want.items():
        actual = np.asarray(got[name])
        if actual.shape != np.shape(expected):
            raise ExportError(
                f"output {name!r} has shape {list(actual.shape)}, expected "
                f"{list(np.shape(expected))}"
            )
        if actual.size:
            diff = np.abs(actual.astype(np.float64) - np.asarray(expected, np.float64))
            worst = max(worst, float(diff.max()))
    return worst


def export_step(target: str, options: Any) -> dict[str, Any]:
    """The manifest's record of an export: its target and options (the output path left out)."""
    from workflows.options import to_dict

    return {
        "step": "export",
        "target": target,
        "options": {k: v for k, v in to_dict(options).items() if k != "output"},
    }


def portable(value: Any) -> Any:
    """`value` with every absolute path replaced by its file name: a manifest travels with its
    artifact and names no folder of the machine that made it (the sha256 identifies the source)."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v) for v in value]
    if isinstance(value, str) and (
        PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute()
    ):
        return PureWindowsPath(value).name if "\\" in value else PurePosixPath(value).name
    return value


def write_manifest(
    folder: Path,
    *,
    target: str,
    source: Path,
    source_format: str,
    steps: list[dict[str, Any]],
    sample: dict[str, Any] | None,
    validation: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """manifest.json: enough to reproduce this export and to hand it off."""
    manifest = {
        "dockyard_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "target": target,
        "source": {"file": source.name, "format": source_format, "sha256": sha256(source)},
        "steps": steps,
        "tool_versions": tool_versions(),
        "sample": sample,
        "validation": validation,
        **(extra or {}),
    }
    manifest = portable(jsonable(manifest))
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, allow_nan=False))
    return manifest


# The Triton release a Triton repository's README and handoff command name: the one of the
# tritonclient the tests parse config.pbtxt with (2.73.0 is NGC release 26.08: 2.51.0, measured
# in nvidia-pytriton's server, is 24.10, and Triton gains a minor version a month).
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:26.08-py3"
# The TF Serving release a TF Serving export's Dockerfile pins: the one of the TensorFlow that
# writes its SavedModel (tensorflow-cpu 2.21.0; an older server may not know a newer op) and of
# the tensorflow-serving-api the tests read models.config with.
TFSERVING_IMAGE = "tensorflow/serving:2.21.0"

# The options of the targets that send a sample request, described once for both.
SAMPLE_INPUTS_HELP = (
    "One real sample (.npy, or .npz with one array per input) for the sample request and the "
    "smoke test (default: synthetic)"
)
CONVERTED_HELP = (
    "The model already converted to ONNX (a workflow's convert step), used instead of "
    "converting again; the export is still validated against the original"
)
SOURCE_HELP = (
    "In a workflow: which model to hand off, the original or a variant an earlier step made "
    "(pruned, edited, int8-static, int8-dynamic, fp16, sparse, clustered)"
)
DIM_VALUES_HELP = (
    "Sizes of named dynamic dimensions in the synthetic sample request (height=320, …)"
)


def run_sample(
    specs: list[Any],
    sample_inputs: str | None,
    dim_values: dict[str, int],
    model_path: Any,
    run: Any,
) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The sample request's inputs and `run`'s answer to them. The inputs are the user's file
    (.npy/.npz, one sample), else synthetic, with named dynamic dimensions at `dim_values`
    (others at a small guess); a model that refuses them gets an ExportError naming the guessed
    dimensions and the two ways to give real sizes or data."""
    from workflows import inputs
    from workflows.errors import ExportError, first_line

    if sample_inputs:
        feeds = inputs.load_feeds(Path(sample_inputs), specs)
    else:
        feeds = inputs.synthesize(specs, batch=1, seed=0, dim_values=dim_values or None)
    try:
        return feeds, list(run(feeds))
    except Exception as exc:
        if sample_inputs:
            raise ExportError(
                f"{sample_inputs}: the model refused this sample ({first_line(exc)})"
            ) from exc
        guessed = sorted(
            {
                str(d)
                for s in specs
                for axis, d in enumerate(s.shape or ())
                if axis and not isinstance(d, int) and str(d) not in dim_values
            }
        )
        hint = (
            f"its dynamic dimensions {', '.join(guessed)} were guessed as {inputs.DEFAULT_DIM}; "
            f"give their sizes (--dim-values {','.join(f'{g}=N' for g in guessed)}) or a real "
            "sample (--sample-inputs sample.npz, one array per input)"
            if guessed
            else "give a real sample (--sample-inputs sample.npz, one array per input)"
        )
        raise ExportError(
            f"{model_path}: the model refused the synthetic sample request ({first_line(exc)}); "
            f"{hint}"
        ) from exc
