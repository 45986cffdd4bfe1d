"""TF Serving target: a model base path TensorFlow Serving loads as it is.

    OUT/NAME/1/                SavedModel: `serving_default` with the model's own input and
                               output names, in the original's layout (NCHW for ONNX/PyTorch
                               sources, transposed inside the graph) unless NHWC is asked for
    OUT/models.config          ModelServerConfig (text proto) for --model_config_file
    OUT/Dockerfile             FROM tensorflow/serving (pinned), the model copied in
    OUT/README.md              docker run, REST and gRPC calls
    OUT/sample_request.json    a TF Serving REST request and the answer to expect
    OUT/sample_response.json

Sources: a SavedModel or Keras model as it is, ONNX and PyTorch (via ONNX) through onnx2tf. The
SavedModel is validated by loading it afresh with TensorFlow and calling `serving_default`
against the original on the sample and on a batch of two, and its signature is read back from
saved_model.pb (what TF Serving reads). No TF Serving runs here (no Docker engine): the README
says so.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from workflows import __version__, formats
from workflows.errors import ExportError
from workflows.exporters.base import Exporter
from workflows.exporters.common import (
    CONVERTED_HELP,
    DIM_VALUES_HELP,
    SAMPLE_INPUTS_HELP,
    SOURCE_HELP,
    TFSERVING_IMAGE,
    max_abs_error,
    mirrored_batch,
)
from workflows.exporters.docker import hadolint
from workflows.exporters.savedmodel_source import source_savedmodel, start_onnx2tf
from workflows.formats import _tf
from workflows.model import Model, TensorSpec
from workflows.options import LoadOptions, Options, from_dict, option
from workflows.progress import Progress
from workflows.resources import resource

TOLERANCE = 1e-4  # the SavedModel's serving_default against the original framework
LAYOUTS = ("original", "NHWC")


@dataclass
class TFServingExportOptions(Options):
    """Options of the TF Serving target."""

    model: LoadOptions = option(None, "The model (SavedModel, Keras, ONNX, PyTorch)")
    output: str = option("", "The model base path folder to write")
    name: str | None = option(None, "Model name in TF Serving's URLs (default: the file name)")
    signature_layout: str = option(
        "original",
        "Layout of serving_default's tensors: original (NCHW for ONNX/PyTorch sources, "
        "transposed inside the SavedModel) or NHWC (onnx2tf's own, no transposes)",
        choices=LAYOUTS,
    )
    opset: int = option(18, "ONNX opset when a PyTorch model is converted first")
    converted: str | None = option(None, CONVERTED_HELP)
    source: str = option("original", SOURCE_HELP)
    sample_inputs: str | None = option(None, SAMPLE_INPUTS_HELP)
    dim_values: dict[str, int] = option({}, DIM_VALUES_HELP)


class TFServingExporter(Exporter):
    """NAME/1/ SavedModel, models.config, Dockerfile, README and a sample request."""

    target = "tfserving"

    @classmethod
    def check(cls, opts: TFServingExportOptions, model: Model) -> None:
        _tf.quiet_tensorflow()
        if model.format == "tflite":
            raise ExportError(
                f"{model.path}: TF Serving serves SavedModels, and a .tflite cannot be turned "
                "back into one; export from the original model (Keras, SavedModel, ONNX, PyTorch)"
            )

    @classmethod
    def start_early(cls, opts: TFServingExportOptions, work: Path) -> Any:
        return start_onnx2tf(opts, work)

    def stage(self) -> None:
        from workflows.converters import serving_signature
        from workflows.exporters.common import run_sample
        from workflows.formats import onnx_format

        opts, model = self.opts, self.model
        converted = source_savedmodel(self, self.progress.scaled(0.05, 0.5))
        # The signature's names: the model's own; through ONNX, the ONNX model's (the names
        # onnx2tf kept), each fed to the original by position.
        via_onnx = model.format not in ("savedmodel", "keras")
        if via_onnx:
            served = onnx_format.load(self.onnx())
            self.inputs, self.outputs = served.inputs, served.outputs
        elif model.format == "keras":
            self.inputs, self.outputs = keras_names(model)
        else:
            self.inputs, self.outputs = model.inputs, model.outputs
        original = formats.by_name(model.format).session(model)

        def run_original(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            own = zip(model.inputs, self.inputs, strict=True)
            return list(original({m.name: feeds[s.name] for m, s in own}))

        self.run_original = run_original
        self.progress.update(0.55, "Running the original on the sample")
        self.feeds, answer = run_sample(
            self.inputs, opts.sample_inputs, opts.dim_values, model.path, run_original
        )
        names = [s.name for s in self.outputs]
        self.expected = dict(zip(names, answer, strict=True))
        self.progress.update(0.6, "Writing serving_default with the model's own names")
        self.plan = serving_signature.plan(
            converted,
            self.inputs,
            names,
            self.feeds,
            self.expected,
            keep_layout=opts.signature_layout == "NHWC" or not via_onnx,
            channels_last_source=via_onnx,
        )
        self.version_dir = self.out / self.name / "1"
        serving_signature.write(converted, self.plan, self.version_dir)
        self.request_feeds = self.plan.client_feeds(self.feeds)
        self.answer = self.plan.client_outputs(self.expected)  # what the signature must give
        self._write_files()

    def _write_files(self) -> None:
        request = {
            "signature_name": "serving_default",
            "inputs": {k: v.tolist() for k, v in self.request_feeds.items()},
        }
        outputs = {k: v.tolist() for k, v in self.answer.items()}
        # TF Serving answers a one-output model with the value itself, else a map by name.
        response = {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
        (self.out / "sample_request.json").write_text(json.dumps(request))
        (self.out / "sample_response.json").write_text(json.dumps(response))
        templates = resource("templates", "tfserving")
        values = self._template_values()
        for name in ("models.config", "Dockerfile", "README.md"):
            text = string.Template((templates / name).read_text()).substitute(values)
            (self.out / name).write_text(text)

    def _template_values(self) -> dict[str, Any]:
        first_name, first = next(iter(self.request_feeds.items()))

        def doc(specs: list[dict[str, Any]]) -> str:
            return "; ".join(
                f"`{t['name']}: {t['dtype']}[{', '.join('?' if d is None else str(d) for d in t['shape'])}]`"
                for t in specs
            )

        transposed = [t["name"] for t in self.plan.inputs if t["perm"]]
        back = [t["name"] for t in self.plan.outputs if t["perm"]]
        if transposed:
            layout = (
                f"the original's (NCHW); the SavedModel transposes {', '.join(transposed)} to "
                "NHWC inside its graph" + (f" and {', '.join(back)} back" if back else "")
            )
        elif self.opts.signature_layout == "NHWC":
            layout = "the converted model's (NHWC), inputs and outputs"
        else:
            layout = "the model's own"
        return {
            "model_name": self.name,
            "dockyard_version": __version__,
            "created": datetime.now(UTC).strftime("%Y-%m-%d"),
            "image": TFSERVING_IMAGE,
            "tag": f"dockyard/{self.name}-tfserving:1",
            "inputs_doc": doc(self.plan.inputs),
            "outputs_doc": ", ".join(f"`{t['name']}`" for t in self.plan.outputs),
            "layout": layout,
            "first_input": first_name,
            "first_shape": list(first.shape),
            "first_dtype": first.dtype.name,
            "tensorflow_version": _tensorflow_version(),
        }

    def validate(self) -> dict[str, Any]:
        from workflows.converters import serving_signature

        self.progress.update(0.75, "Reading serving_default back from saved_model.pb")
        declared = serving_signature.signature_def(self.version_dir)
        problems = _signature_problems(declared, self.plan)
        if problems:
            raise ExportError(
                "TF Serving would not serve the model's names: " + "; ".join(problems)
            )
        self.progress.update(0.8, "Calling serving_default against the original")
        got = serving_signature.run(self.version_dir, self.request_feeds)
        worst = max_abs_error(got, self.answer)
        check: dict[str, Any] = {"samples": 1, "max_abs_error": worst, "tolerance": TOLERANCE}
        batch = self._batch()
        if batch is not None:
            joined, expected = batch
            got = serving_signature.run(self.version_dir, joined)
            worst = max(worst, max_abs_error(got, expected))
            check.update(samples=3, max_abs_error=worst)
        if worst > TOLERANCE:
            raise ExportError(
                f"the SavedModel's serving_default differs from the original by {worst:.3g} "
                f"(tolerance {TOLERANCE})"
            )
        check["passed"] = True
        lint = hadolint(self.out / "Dockerfile")
        return {"signature": declared, "savedmodel": check, "hadolint": lint}

    def _batch(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
        """A batch of two (the sample and the sample mirrored along its last axis), in the
        signature's layout, and the original's answer; None when the batch size is fixed."""
        if any(t["shape"] and t["shape"][0] is not None for t in self.plan.inputs):
            return None
        _, joined = mirrored_batch(self.feeds)
        try:
            expected = dict(zip(self.expected, self.run_original(joined), strict=True))
        except Exception:  # the original refuses a batch of two: nothing to compare with
            return None
        return self.plan.client_feeds(joined), self.plan.client_outputs(expected)

    def describe(self, validation: dict[str, Any]) -> tuple[dict | None, dict, dict]:
        facts = {
            "base_path": f"{self.name}/",
            "signature": "serving_default",
            "inputs": [t["name"] for t in self.plan.inputs],
            "outputs": [t["name"] for t in self.plan.outputs],
            "layout": self.opts.signature_layout,
            "transposed_inputs": [t["name"] for t in self.plan.inputs if t["perm"]],
            "image": TFSERVING_IMAGE,
        }
        sample = {"request": "sample_request.json", "response": "sample_response.json"}
        return sample, facts, {**facts, "validation": validation}


def keras_names(model: Model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """A Keras model's inputs and outputs named by the layers that make them (`image`, `dense`),
    as Keras 2 named a SavedModel's signature: its symbolic tensors' own names (`keras_tensor_14`)
    come from a counter and change from one load to the next."""

    def named(specs: list[TensorSpec], tensors: list[Any]) -> list[TensorSpec]:
        names = []
        for spec, tensor in zip(specs, tensors, strict=True):
            history = getattr(tensor, "_keras_history", None)
            layer = getattr(getattr(history, "operation", None), "name", None)
            names.append(layer or spec.name)
        if len(set(names)) < len(names):  # two outputs of one layer: keep the tensors' names
            return specs
        return [replace(s, name=n) for s, n in zip(specs, names, strict=True)]

    native = model.native
    return named(model.inputs, native.inputs), named(model.outputs, native.outputs)


def _signature_problems(declared: dict[str, Any], plan: Any) -> list[str]:
    """What in saved_model.pb's serving_default differs from the model's own signature."""
    from workflows.converters.serving_signature import PREDICT_METHOD

    problems = []
    if declared["method_name"] != PREDICT_METHOD:
        problems.append(f"method {declared['method_name']!r}, not {PREDICT_METHOD!r}")
    for kind, wanted in (("inputs", plan.inputs), ("outputs", plan.outputs)):
        names = sorted(t["name"] for t in wanted)
        if sorted(declared[kind]) != names:
            problems.append(f"{kind} {sorted(declared[kind])}, the model's are {names}")
    for t in plan.inputs:
        got = declared["inputs"].get(t["name"])
        if got and (got["dtype"] != t["dtype"] or got["shape"] != t["shape"]):
            problems.append(
                f"input {t['name']!r} is {got['dtype']}{got['shape']}, expected "
                f"{t['dtype']}{t['shape']}"
            )
    return problems


def _tensorflow_version() -> str:
    """The TensorFlow that wrote the SavedModel (already imported: it did the writing), whether
    it came as tensorflow or tensorflow-cpu."""
    import tensorflow as tf

    return tf.__version__


def export_tfserving(
    opts: TFServingExportOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Write the TF Serving model base path to opts.output; returns what was made and checked."""
    return TFServingExporter.export(opts, progress)


def run(options: TFServingExportOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return export_tfserving(from_dict(TFServingExportOptions, options), progress)
