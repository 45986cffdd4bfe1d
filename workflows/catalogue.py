"""Every step the engine can run, declared once.

The runner resolves a step's function here, the workflow loader its options class, the planner its
output rule, the CLI its command and the GUI's session its place in a saved workflow. Adding a
step or an export target is its own module (with `run(options, progress)` and an `Options`
subclass) plus one line below; see README's "How to add a step or a target".

Modules are named, not imported: `import workflows.catalogue` stays cheap, and a step's framework
is imported only when the step runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from workflows.errors import MissingInputError


@dataclass(frozen=True)
class StepSpec:
    """One step: its name, the module holding `run()` and its options class, its planner rule.

    `timed` steps measure latency, so nothing is started beside them.
    `plan` names the rule in `workflows.planner.RULES` that derives the step's inputs and output
    paths inside a workflow; a step without one (inspect, predict, preview) is not replayable
    from a workflow file.
    """

    name: str
    module: str
    options: str
    plan: str | None
    summary: str
    # Measures latency: nothing else (a warm worker importing a framework) should run meanwhile.
    timed: bool = False

    def run_function(self) -> Callable[..., dict[str, Any]]:
        """The step's `run(options, progress) -> dict`."""
        return importlib.import_module(self.module).run

    def options_class(self) -> type:
        """The step's options dataclass (an `workflows.options.Options`)."""
        return getattr(importlib.import_module(self.module), self.options)

    @property
    def export_target(self) -> str | None:
        """ "docker" for "export-docker"; None for a step that is not an export."""
        return self.name.removeprefix("export-") if self.name.startswith("export-") else None


_S = StepSpec
STEPS: dict[str, StepSpec] = {
    s.name: s
    for s in [
        _S("inspect", "workflows.steps.inspect", "InspectOptions", None, "describe a model"),
        _S("convert", "workflows.steps.convert", "ConvertOptions", "onnx", "convert to ONNX"),
        _S("validate", "workflows.steps.validate", "ValidateOptions", "compare", "compare"),
        _S("prune", "workflows.steps.prune", "PruneOptions", "pruned",
           "structured pruning + distillation", timed=True),
        _S("edit", "workflows.steps.edit", "EditOptions", "edited",
           "cut, set or free dimensions, rename inputs and outputs (checked, new file)"),
        _S("quantize", "workflows.steps.quantize", "QuantizeOptions", "variants", "INT8, FP16",
           timed=True),
        _S("compress", "workflows.steps.compress", "CompressOptions", "compressed",
           "weight sparsity, clustering (for size)", timed=True),
        _S("benchmark", "workflows.steps.benchmark", "BenchmarkOptions", "timing", "latency",
           timed=True),
        _S("insight", "workflows.steps.insight", "InsightOptions", None,
           "per-node error and time", timed=True),
        _S("compare", "workflows.steps.compare", "CompareOptions", "changes",
           "what conversion and quantization changed, node by node"),
        _S("report", "workflows.steps.report", "ReportOptions", "report", "HTML report"),
        _S("layout", "workflows.steps.layout", "LayoutOptions", None, "graph view layout"),
        _S("predict", "workflows.steps.predict", "PredictOptions", None, "test inference"),
        _S("preview", "workflows.steps.preview", "PreviewOptions", None, "data preview"),
        _S("frameworks", "workflows.steps.frameworks", "FrameworksOptions", None,
           "the installed app's PyTorch/TensorFlow: status, prepare on first use"),
        _S("export-docker", "workflows.exporters.docker", "DockerExportOptions", "export",
           "Docker build context — ONNX Runtime server (Open Inference Protocol v2), k8s + KServe"),
        _S("export-torchserve", "workflows.exporters.torchserve", "TorchServeExportOptions",
           "export",
           "TorchServe archive (.mar) — generated handler; TorchServe is in limited maintenance"),
        _S("export-tflite", "workflows.exporters.tflite_bundle", "TFLiteExportOptions", "export",
           "TFLite bundle — fp32, fp16, dynamic and INT8 variants for LiteRT (phones, edge)"),
        _S("export-triton", "workflows.exporters.triton", "TritonExportOptions", "export",
           "Triton model repository — config.pbtxt + ONNX for Triton's ONNX Runtime backend"),
        _S("export-tfserving", "workflows.exporters.tfserving", "TFServingExportOptions", "export",
           "TF Serving model — SavedModel with the model's own signature names, models.config"),
    ]
}  # fmt: skip


def spec(name: str) -> StepSpec:
    """The catalogue entry of step `name`; MissingInputError lists the known ones."""
    try:
        return STEPS[name]
    except KeyError:
        raise MissingInputError(f"unknown step {name!r}; steps: {', '.join(STEPS)}") from None


def workflow_steps() -> list[str]:
    """Steps a workflow file may hold, in the order the wizard runs (and saves) them."""
    return [s.name for s in STEPS.values() if s.plan]


def export_targets() -> dict[str, str]:
    """Export targets ("docker", ...) with their one-line summaries, in catalogue order."""
    return {s.export_target: s.summary for s in STEPS.values() if s.export_target}
