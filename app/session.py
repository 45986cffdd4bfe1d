"""What the wizard has done so far: one model, the results of its steps, the artifacts made.

Plain data (no Qt), so the Summary page can turn it into a workflow file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows.options import LoadOptions, to_dict
from workflows.workflow import Step, Workflow


@dataclass
class Session:
    model: LoadOptions | None = None
    output_root: Path = field(default_factory=lambda: Path.home() / "Dockyard")
    inspect: dict[str, Any] | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    step_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    preprocess: dict[str, Any] | None = None  # the image recipe set on Convert & Quantize

    @property
    def name(self) -> str:
        return Path(self.model.path).name.split(".")[0] if self.model else "model"

    def folder(self, step: str) -> Path:
        """Where a step writes: <output root>/<model name>/<step> (the workflow's layout)."""
        return self.output_root / self.name / step

    def record(self, step: str, options: dict[str, Any], result: dict[str, Any]) -> None:
        """Remember a finished step: its user-facing options (for the workflow) and its result."""
        self.step_options[step] = options
        self.results[step] = result

    def workflow(self) -> Workflow:
        """The steps done so far as a replayable workflow (`dockyard-cli run`)."""
        assert self.model is not None
        order = [
            "convert",
            "validate",
            "quantize",
            "benchmark",
            "report",
            "export-docker",
            "export-torchserve",
            "export-tflite",
        ]
        steps = [Step(s, self.step_options[s]) for s in order if s in self.step_options]
        return Workflow(LoadOptions(**to_dict(self.model)), steps, str(self.output_root))
