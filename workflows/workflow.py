"""A workflow: one model and an ordered list of steps with their options, saved as YAML or JSON and
run headless with the same runner the GUI uses (`dockyard-cli run WORKFLOW`).

Paths between steps are derived, not written: everything goes to `<output>/<model name>/<step>/`,
and a step that needs an earlier result (quantize after convert, benchmark after quantize) finds it
there. Options are checked against each step's own declaration before anything runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows import catalogue, planner
from workflows.errors import DataError, OptionsError
from workflows.options import LoadOptions, from_dict, to_dict

VERSION = 1


@dataclass
class Step:
    name: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workflow:
    """A model and the steps to run on it."""

    model: LoadOptions
    steps: list[Step]
    output: str = "out"

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            # Only the person running a workflow may allow unsafe loading (run --allow-unsafe).
            "model": {k: v for k, v in to_dict(self.model).items() if k != "allow_unsafe"},
            "output": self.output,
            "steps": [{"step": s.name, "options": s.options} for s in self.steps],
        }

    def save(self, path: Path) -> None:
        """Write as YAML (.yaml/.yml) or JSON."""
        path = Path(path)
        data = self.to_dict()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        else:
            text = json.dumps(data, indent=2)
        path.write_text(text)

    @classmethod
    def load(cls, path: Path) -> Workflow:
        """Read and validate a workflow file; DataError names the first problem."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: workflow file not found")
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(path.read_text())
            else:
                data = json.loads(path.read_text())
        except Exception as exc:  # yaml and json raise their own error types
            raise DataError(f"{path}: not a readable workflow file ({exc})") from exc
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "workflow") -> Workflow:
        if not isinstance(data, dict) or "model" not in data or "steps" not in data:
            raise DataError(f"{where}: a workflow needs 'model' and 'steps'")
        if data.get("version", VERSION) != VERSION:
            raise DataError(f"{where}: workflow version {data.get('version')} is not supported")
        try:
            model = from_dict(LoadOptions, data["model"], "model")
        except OptionsError as exc:
            raise DataError(f"{where}: {exc}") from None
        if model.allow_unsafe:
            raise DataError(
                f"{where}: model.allow_unsafe is set. A workflow file cannot grant itself the "
                "right to run code stored in a model file; if you trust the model, remove that "
                "line and run the workflow with `dockyard-cli run --allow-unsafe`."
            )
        known = catalogue.workflow_steps()
        steps = []
        for i, raw in enumerate(data["steps"], 1):
            name = raw.get("step") if isinstance(raw, dict) else None
            if name not in known:
                raise DataError(f"{where}: step {i} is {name!r}; steps are {', '.join(known)}")
            options = raw.get("options") or {}
            if not isinstance(options, dict):
                raise DataError(f"{where}: step {i} ({name}): options must be a mapping")
            derived = sorted(planner.derived(name) & set(options))
            if derived:
                raise DataError(
                    f"{where}: step {i} ({name}) sets {derived}; the workflow derives them"
                )
            try:  # every name and type checked against the step's own declaration
                from_dict(catalogue.spec(name).options_class(), options, "options")
            except OptionsError as exc:
                raise DataError(f"{where}: step {i} ({name}): {exc}") from None
            steps.append(Step(name, dict(options)))
        return cls(model, steps, str(data.get("output", "out")))


def plan(workflow: Workflow) -> list[tuple[str, dict[str, Any], Path]]:
    """(runner step, full options, output path) for every step, with derived paths filled in."""
    return planner.plan_steps(
        workflow.output, to_dict(workflow.model), [(s.name, s.options) for s in workflow.steps]
    )


def run_workflow(
    workflow: Workflow,
    on_event: Callable[[int, str, float, str], None] | None = None,
    logs: Path | None = None,
) -> dict[str, Any]:
    """Run every step in order (each in a child process); stop at the first failure. The run
    folder gets HANDOFF.md (`workflows.handoff`).

    While a step runs, a warm worker for the next one imports its framework (not beside a
    `timed` step). `logs`: a folder for each step's framework output (`NN-step.log`)."""
    from workflows import warm
    from workflows.runner import StepProcess

    planned = plan(workflow)
    if logs:
        logs.mkdir(parents=True, exist_ok=True)
    pool = warm.pool()
    families = [warm.family_of(name, options) for name, options, _ in planned]
    results = []
    for i, (name, options, out) in enumerate(planned):

        def relay(f: float, m: str, i: int = i, name: str = name) -> None:
            if on_event:
                on_event(i, name, f, m)

        log = logs / f"{i + 1:02d}-{name}.log" if logs else None
        started = time.perf_counter()
        process = StepProcess(name, options, relay, [out], log=log)
        was_warm = process.warm
        following = families[i + 1] if i + 1 < len(planned) else None
        timed = catalogue.spec(name).timed
        if following and not timed:
            pool.start(following)
        try:
            result = process.wait()
        finally:
            if following and timed:
                pool.start(following)
        seconds = round(time.perf_counter() - started, 3)
        results.append(
            {
                "step": name,
                "output": str(out),
                "seconds": seconds,
                "warm": was_warm,
                "result": result,
            }
        )
        if name == "validate" and not result["passed"]:
            raise DataError(
                f"validate: the converted model differs from the original beyond "
                f"the tolerance (worst: {result['worst']}); stopping the workflow"
            )
    handoff = write_handoff(workflow, {s["step"]: s["result"] for s in results})
    return {"workflow": workflow.to_dict(), "steps": results, "handoff": str(handoff)}


def write_handoff(workflow: Workflow, results: dict[str, dict[str, Any]]) -> Path:
    """HANDOFF.md in the run folder: the app's "Copy handoff note", for a CI run's ticket."""
    from workflows.atomic import atomic_file
    from workflows.handoff import handoff_note
    from workflows.model import model_name

    root = Path(workflow.output) / model_name(workflow.model.path)
    target = root / "HANDOFF.md"
    with atomic_file(target) as tmp:
        tmp.write_text(handoff_note(root.name, workflow.model.path, results, root))
    return target
