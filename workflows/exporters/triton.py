"""Triton target: a model repository for Triton Inference Server's ONNX Runtime backend.

    OUT/NAME/config.pbtxt      platform onnxruntime_onnx, inputs/outputs, batching, instances
    OUT/NAME/1/model.onnx      the model (external data beside it)
    OUT/README.md              the tritonserver command and client calls
    OUT/sample_request.json    an Open Inference Protocol v2 request and the answer to expect
    OUT/sample_response.json

config.pbtxt is printed from a ModelConfig message (workflows/exporters/protos: Triton's own
schema, the fields Dockyard writes) and checked the way Triton checks it when it loads the model:
parsed back, then every input and output compared with the ONNX model's own (names, datatypes,
dims, batch dimension). The repository's model.onnx is run on the sample against the original,
and with batching on, a batch of two against each sample alone (what Triton's batcher does).
No Triton with an ONNX Runtime backend runs here (nvidia-pytriton's has only the Python backend),
so the exporter does not pretend to serve it; the README says so.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from workflows import __version__, formats
from workflows.data import read_labels
from workflows.errors import ExportError
from workflows.exporters.base import Exporter
from workflows.exporters.common import (
    CONVERTED_HELP,
    DIM_VALUES_HELP,
    SAMPLE_INPUTS_HELP,
    SOURCE_HELP,
    TRITON_IMAGE,
    max_abs_error,
    mirrored_batch,
    run_sample,
    v2_tensor,
)
from workflows.formats import onnx_format
from workflows.formats.onnx_format import copy_onnx
from workflows.model import TensorSpec
from workflows.options import LoadOptions, Options, from_dict, option
from workflows.progress import Progress
from workflows.resources import resource

TOLERANCE = 1e-4  # the repository's ONNX model against the original framework
BATCH_TOLERANCE = 1e-5  # a row of a batch against the same sample alone, both in ONNX Runtime

# numpy dtype name -> Triton DataType (model_config.proto)
TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "bfloat16": "TYPE_BF16",
    "str": "TYPE_STRING",
    "object": "TYPE_STRING",
}


@dataclass
class TritonExportOptions(Options):
    """Options of the Triton model repository target."""

    model: LoadOptions = option(None, "The model to serve (converted to ONNX first if needed)")
    output: str = option("", "The model repository folder to write")
    name: str | None = option(None, "Model name in the repository (default: the file name)")
    max_batch_size: int = option(
        8,
        "Largest batch Triton forms (max_batch_size); 0 turns batching off. A model whose first "
        "dimension is fixed gets 0",
    )
    dynamic_batching: bool = option(True, "Triton's dynamic batcher joins concurrent requests")
    max_queue_delay_us: int = option(
        0, "Microseconds a request may wait for others to join its batch (Triton's default: 0)"
    )
    instances: int = option(1, "Model instances (instance_group count)")
    instance_kind: str = option(
        "KIND_AUTO",
        "Where instances run: KIND_AUTO (a GPU if there is one), KIND_CPU or KIND_GPU",
        choices=("KIND_AUTO", "KIND_CPU", "KIND_GPU"),
    )
    version_policy: str = option(
        "latest", "Which versions in NAME/ Triton serves", choices=("latest", "all")
    )
    labels: str | None = option(
        None, "Label names file, one per line (Triton's classification extension)"
    )
    opset: int = option(18, "ONNX opset when the model must be converted")
    converted: str | None = option(None, CONVERTED_HELP)
    source: str = option("original", SOURCE_HELP)
    sample_inputs: str | None = option(None, SAMPLE_INPUTS_HELP)
    dim_values: dict[str, int] = option({}, DIM_VALUES_HELP)


def triton_type(dtype: str) -> str:
    """Triton's DataType name for a numpy dtype name ("float32" -> "TYPE_FP32")."""
    try:
        return TRITON_TYPES[dtype]
    except KeyError:
        raise ExportError(f"Triton has no datatype for {dtype!r}") from None


def _dims(spec: TensorSpec, batched: bool, rank: int | None = None) -> list[int]:
    """Triton dims: -1 for a dynamic dimension, without the batch dimension when batched."""
    shape = spec.shape if spec.shape is not None else (None,) * (rank or 1)
    dims = [d if isinstance(d, int) and d > 0 else -1 for d in shape]
    return dims[1:] if batched else dims


def batch_blocker(specs: list[TensorSpec]) -> str | None:
    """Why Triton cannot batch this model (an input or output whose first dimension is fixed or
    that has none), or None when every first dimension is dynamic."""
    for s in specs:
        if s.shape is not None and (not s.shape or not s.is_dynamic(0)):
            first = s.shape[0] if s.shape else "no dimensions"
            return f"{s.name} has a fixed first dimension ({first})"
    return None


def model_config(
    name: str,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    opts: TritonExportOptions,
    output_ranks: dict[str, int] | None = None,
    label_output: str | None = None,
) -> Any:
    """The ModelConfig message for an ONNX model with this signature."""
    from workflows.exporters.protos import model_config_pb2 as mc

    blocker = batch_blocker([*inputs, *outputs])
    batch = opts.max_batch_size if blocker is None else 0
    config = mc.ModelConfig(
        name=name,
        platform="onnxruntime_onnx",
        max_batch_size=max(0, batch),
        default_model_filename="model.onnx",
    )
    if opts.version_policy == "all":
        config.version_policy.all.SetInParent()
    else:
        config.version_policy.latest.num_versions = 1
    batched = config.max_batch_size > 0
    for s in inputs:
        config.input.add(name=s.name, data_type=triton_type(s.dtype), dims=_dims(s, batched))
    for s in outputs:
        out = config.output.add(
            name=s.name,
            data_type=triton_type(s.dtype),
            dims=_dims(s, batched, (output_ranks or {}).get(s.name)),
        )
        if s.name == label_output:
            out.label_filename = "labels.txt"
    if batched and opts.dynamic_batching:
        config.dynamic_batching.max_queue_delay_microseconds = max(0, opts.max_queue_delay_us)
    config.instance_group.add(count=max(1, opts.instances), kind=opts.instance_kind)
    return config


def config_problems(text: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> list[str]:
    """What Triton would refuse when loading `text` (config.pbtxt) with this ONNX signature:
    a parse error, or inputs/outputs whose names, datatypes, dims or batching disagree."""
    from google.protobuf import text_format

    from workflows.exporters.protos import model_config_pb2 as mc

    try:
        config = text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as exc:
        return [f"config.pbtxt does not parse as a ModelConfig: {exc}"]
    problems = []
    batched = config.max_batch_size > 0
    if batched and (blocker := batch_blocker([*inputs, *outputs])):
        problems.append(f"max_batch_size is {config.max_batch_size} but {blocker}")
    for kind, declared, actual in (
        ("input", config.input, inputs),
        ("output", config.output, outputs),
    ):
        by_name = {s.name: s for s in actual}
        named = [t.name for t in declared]
        if sorted(named) != sorted(by_name) and kind == "input":
            problems.append(f"inputs {named} are not the model's {sorted(by_name)}")
        for t in declared:
            spec = by_name.get(t.name)
            if spec is None:
                problems.append(f"{kind} {t.name!r} is not in the model ({sorted(by_name)})")
                continue
            datatype = mc.DataType.Name(t.data_type)
            if datatype != triton_type(spec.dtype):
                problems.append(f"{kind} {t.name!r} is {datatype}, the model's is {spec.dtype}")
            if spec.shape is None:
                continue
            # The model's fixed dimensions must be the config's; its dynamic ones take any.
            model_dims = [m if isinstance(m, int) and m > 0 else -1 for m in spec.shape]
            model_dims = model_dims[1:] if batched else model_dims
            dims = list(t.dims)
            if len(dims) != len(model_dims) or any(
                m != -1 and d != m for d, m in zip(dims, model_dims, strict=True)
            ):
                problems.append(
                    f"{kind} {t.name!r} has dims {dims}, the model's are {model_dims}"
                    + (" (batch dimension left out)" if batched else "")
                )
    return problems


class TritonExporter(Exporter):
    """NAME/config.pbtxt + NAME/1/model.onnx, a README and a sample request."""

    target = "triton"

    def stage(self) -> None:
        opts = self.opts
        onnx_path = self.onnx(self.progress.scaled(0.05, 0.4))
        self.progress.update(0.45, "Writing the model repository")
        version = self.out / self.name / "1"
        version.mkdir(parents=True)
        copy_onnx(onnx_path, version)
        self.served = onnx_format.load(version / "model.onnx")
        session = onnx_format.ort_session(version / "model.onnx")
        self.run_repository = lambda feeds: session.run(None, feeds)
        names = [o.name for o in session.get_outputs()]
        # The original framework answers the sample when it takes the same input names (a
        # converted SavedModel's may differ; its conversion was validated when it was made).
        same_names = [s.name for s in self.model.inputs] == [s.name for s in self.served.inputs]
        self.reference = self.model.format if same_names else "onnx"
        original = (
            formats.by_name(self.model.format).session(self.model)
            if same_names
            else self.run_repository
        )
        self.feeds, expected = run_sample(
            self.served.inputs, opts.sample_inputs, opts.dim_values, self.model.path, original
        )
        self.expected = dict(zip(names, expected, strict=True))
        ranks = {n: np.ndim(a) for n, a in self.expected.items()}
        self.labels = read_labels(opts.labels) if opts.labels else None
        label_output = self._label_output()
        config = model_config(
            self.name, self.served.inputs, self.served.outputs, opts, ranks, label_output
        )
        from google.protobuf import text_format

        self.config_text = text_format.MessageToString(config)
        self.config = config
        (self.out / self.name / "config.pbtxt").write_text(self.config_text)
        if label_output and self.labels:
            (self.out / self.name / "labels.txt").write_text("\n".join(self.labels) + "\n")
        request = {"inputs": [v2_tensor(k, v) for k, v in self.feeds.items()]}
        response = {
            "model_name": self.name,
            "model_version": "1",
            "outputs": [v2_tensor(k, v) for k, v in self.expected.items()],
        }
        (self.out / "sample_request.json").write_text(json.dumps(request))
        (self.out / "sample_response.json").write_text(json.dumps(response))
        self._readme()

    def _label_output(self) -> str | None:
        """The output Triton's classification extension labels: the only one, with one score
        per label in its last dimension."""
        if not self.labels:
            return None
        if len(self.expected) != 1:
            raise ExportError(
                f"labels name the classes of one output; this model has {len(self.expected)}"
            )
        name, scores = next(iter(self.expected.items()))
        if np.ndim(scores) < 1 or np.shape(scores)[-1] != len(self.labels):
            raise ExportError(
                f"{self.opts.labels}: {len(self.labels)} labels, but output {name!r} has shape "
                f"{list(np.shape(scores))}: its last dimension must be the number of labels"
            )
        return name

    def _readme(self) -> None:
        config, first = self.config, next(iter(self.feeds.values()))
        reason = batch_blocker([*self.served.inputs, *self.served.outputs])
        if config.max_batch_size:
            batching = (
                f"`max_batch_size: {config.max_batch_size}` with Triton's dynamic batcher "
                f"(queue delay {config.dynamic_batching.max_queue_delay_microseconds} µs)"
                if config.HasField("dynamic_batching")
                else f"`max_batch_size: {config.max_batch_size}`, dynamic batching off"
            )
        else:
            batching = "off (`max_batch_size: 0`)" + (f": {reason}" if reason else "")
        values = {
            "model_name": self.name,
            "dockyard_version": __version__,
            "created": datetime.now(UTC).strftime("%Y-%m-%d"),
            "triton_image": TRITON_IMAGE,
            "inputs_doc": "; ".join(f"`{s.describe()}`" for s in self.served.inputs),
            "outputs_doc": "; ".join(f"`{s.describe()}`" for s in self.served.outputs),
            "batching": batching,
            "first_input": next(iter(self.feeds)),
            "first_shape": list(first.shape),
            "first_dtype": first.dtype.name,
        }
        template = resource("templates", "triton") / "README.md"
        text = string.Template(template.read_text()).substitute(values)
        (self.out / "README.md").write_text(text)

    def validate(self) -> dict[str, Any]:
        self.progress.update(0.6, "Checking config.pbtxt against the model")
        text = (self.out / self.name / "config.pbtxt").read_text()
        problems = config_problems(text, self.served.inputs, self.served.outputs)
        if problems:
            raise ExportError("Triton would refuse config.pbtxt: " + "; ".join(problems))
        self.progress.update(0.7, "Running the repository's model against the original")
        got = dict(zip(self.expected, self.run_repository(self.feeds), strict=True))
        worst = max_abs_error(got, self.expected)
        if worst > TOLERANCE:
            raise ExportError(
                f"the repository's model.onnx differs from the original by {worst:.3g} "
                f"(tolerance {TOLERANCE})"
            )
        check = {
            "passed": True,
            "against": self.reference,
            "max_abs_error": worst,
            "tolerance": TOLERANCE,
        }
        if self.config.max_batch_size > 0:
            check["batch"] = self._batch_check()
        return {"config": {"parsed": True, "problems": []}, "repository_model": check}

    def _batch_check(self) -> dict[str, Any]:
        """A batch of two samples, as Triton's batcher makes it, against each sample alone."""
        other, joined = mirrored_batch(self.feeds)
        names = list(self.expected)
        try:
            together = dict(zip(names, self.run_repository(joined), strict=True))
        except Exception as exc:
            raise ExportError(
                f"the model refuses a batch of 2 ({exc}); Triton batches requests with "
                "max_batch_size > 0: export with --max-batch-size 0"
            ) from exc
        alone = [dict(zip(names, self.run_repository(f), strict=True)) for f in (self.feeds, other)]
        worst = max(
            max_abs_error({k: v[i : i + 1] for k, v in together.items()}, alone[i])
            for i in range(2)
        )
        if worst > BATCH_TOLERANCE:
            raise ExportError(
                f"in a batch of 2 the model's answers differ from its answers one at a time by "
                f"{worst:.3g}: its rows are not independent, so Triton's batching would change "
                "them; export with --max-batch-size 0"
            )
        return {"rows": 2, "max_abs_error": worst, "tolerance": BATCH_TOLERANCE}

    def describe(self, validation: dict[str, Any]) -> tuple[dict | None, dict, dict]:
        config = self.config
        facts = {
            "repository": f"{self.name}/",
            "max_batch_size": config.max_batch_size,
            "dynamic_batching": config.HasField("dynamic_batching"),
            "instances": config.instance_group[0].count,
        }
        sample = {"request": "sample_request.json", "response": "sample_response.json"}
        result = {**facts, "validation": validation}
        return sample, facts, result


def export_triton(opts: TritonExportOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Write the Triton model repository to opts.output; returns what was made and checked."""
    return TritonExporter.export(opts, progress)


def run(options: TritonExportOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return export_triton(from_dict(TritonExportOptions, options), progress)
