"""What the wizard has done so far: one model, the results of its steps, the artifacts made.

Plain data (no Qt). Every step the wizard runs gets its paths from the same planner that
`dockyard-cli run` uses, so "Save workflow…" replays exactly what the wizard did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows import catalogue
from workflows.model import model_name
from workflows.options import LoadOptions, to_dict
from workflows.planner import Layout, plan_step
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
        return model_name(self.model.path) if self.model else "model"

    @property
    def root(self) -> Path:
        """<output root>/<model name>: the run folder of every step."""
        return self.output_root / self.name

    def plan(self, step: str, options: dict[str, Any]) -> tuple[dict[str, Any], Path]:
        """`step`'s full options and output path, planned as in the saved workflow.

        `options` are the user's choices; the planner adds the derived ones (model, inputs,
        output) from the steps recorded so far plus this one.
        """
        assert self.model is not None
        steps = tuple(s for s in catalogue.workflow_steps() if s in self.step_options or s == step)
        layout = Layout(self.output_root, to_dict(self.model), steps)
        return plan_step(layout, step, options)

    def record(self, step: str, options: dict[str, Any], result: dict[str, Any]) -> None:
        """Remember a finished step: its user-facing options (for the workflow) and its result."""
        self.step_options[step] = options
        self.results[step] = result

    def workflow(self) -> Workflow:
        """The steps done so far as a replayable workflow (`dockyard-cli run`)."""
        assert self.model is not None
        steps = [
            Step(s, self.step_options[s])
            for s in catalogue.workflow_steps()
            if s in self.step_options
        ]
        return Workflow(LoadOptions(**to_dict(self.model)), steps, str(self.output_root))
