"""A workflow: one model and an ordered list of steps with their options, saved as YAML or JSON and
run headless with the same runner the GUI uses (`dockyard-cli run WORKFLOW`).

Paths between steps are derived, not written: everything goes to `<output>/<model name>/<step>/`,
and a step that needs an earlier result (quantize after convert, benchmark after quantize) finds it
there. Options are checked against each step's own declaration before anything runs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflows import catalogue, planner
from workflows.errors import DataError, OptionsError, StepCancelled
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


# Exports read what earlier steps wrote and write only their own folders: consecutive ones run
# side by side, at most side_by_side() at once (DOCKYARD_SIDE_BY_SIDE=1: one at a time, for the
# least memory). Part of their time is start-up that leaves cores idle (TorchServe's JVM, a
# server's warm-up); on 2 cores the sample's run gained 1-3 s of ~41 (README, "Workflows").
SIDE_BY_SIDE_ENV = "DOCKYARD_SIDE_BY_SIDE"


def side_by_side() -> int:
    """How many exports may run at once (DOCKYARD_SIDE_BY_SIDE, 2 by default)."""
    value = os.environ.get(SIDE_BY_SIDE_ENV, "2").strip()
    if not value.isdigit() or int(value) < 1:
        raise OptionsError(SIDE_BY_SIDE_ENV, f"{value!r} is not a whole number of 1 or more")
    return int(value)


def _batches(planned: list[tuple[str, dict[str, Any], Path]]) -> list[list[int]]:
    """The planned steps' indices in the groups that run together: runs of consecutive exports
    (distinct steps, none adding to an earlier export's folder), every other step alone."""
    groups: list[list[int]] = []
    alone = side_by_side() == 1
    for i, (name, options, _) in enumerate(planned):
        joins = (
            not alone
            and name.startswith("export-")
            and not options.get("add_to")
            and groups
            and all(
                planned[j][0].startswith("export-") and planned[j][0] != name for j in groups[-1]
            )
        )
        if joins:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def run_workflow(
    workflow: Workflow,
    on_event: Callable[[int, str, float, str], None] | None = None,
    logs: Path | None = None,
) -> dict[str, Any]:
    """Run the steps in order (each in a child process; consecutive exports side by side, at
    most side_by_side() at once); stop at the first failure, cancelling what runs beside it. The
    run folder gets HANDOFF.md (`workflows.handoff`).

    While a step runs, a warm worker for the next one imports its framework (not beside a
    `timed` step). `logs`: a folder for each step's framework output (`NN-step.log`)."""
    from workflows import warm
    from workflows.runner import StepProcess

    planned = plan(workflow)
    if logs:
        logs.mkdir(parents=True, exist_ok=True)
    pool = warm.pool()
    families = [warm.family_of(name, options) for name, options, _ in planned]
    results: dict[int, dict[str, Any]] = {}
    t0 = time.perf_counter()
    started: dict[int, float] = {}
    warm_start: dict[int, bool] = {}

    def start(i: int) -> StepProcess:
        name, options, out = planned[i]

        def relay(f: float, m: str) -> None:
            if on_event:
                on_event(i, name, f, m)

        log = logs / f"{i + 1:02d}-{name}.log" if logs else None
        started[i] = time.perf_counter()
        process = StepProcess(name, options, relay, [out], log=log)
        warm_start[i] = process.warm  # (a finished step hands its worker back: warm is reset)
        return process

    def start_and_warm_next(i: int) -> StepProcess:
        """Start step i of a side-by-side group; the step after it (the group's next, or the one
        after the group) imports its framework meanwhile."""
        process = start(i)
        if i + 1 < len(planned):
            pool.start(families[i + 1])
        return process

    def finish(i: int, process: StepProcess) -> None:
        name, _, out = planned[i]
        result = process.wait()
        ended = time.perf_counter()
        results[i] = {
            "step": name,
            "output": str(out),
            "seconds": round(ended - started[i], 3),
            "warm": warm_start[i],
            "span": [round(started[i] - t0, 3), round(ended - t0, 3)],  # seconds into the run
            "result": result,
        }
        if name == "validate" and not result["passed"]:
            raise DataError(
                f"validate: the converted model differs from the original beyond "
                f"the tolerance (worst: {result['worst']}); stopping the workflow"
            )

    for group in _batches(planned):
        following = families[group[-1] + 1] if group[-1] + 1 < len(planned) else None
        timed = any(catalogue.spec(planned[i][0]).timed for i in group)
        if len(group) == 1:
            process = start(group[0])
            if following and not timed:
                pool.start(following)
            try:
                finish(group[0], process)
            finally:
                if following and timed:
                    pool.start(following)
            continue
        _run_side_by_side(group, start_and_warm_next, finish)
    steps = [results[i] for i in sorted(results)]
    handoff = write_handoff(workflow, {s["step"]: s["result"] for s in steps})
    return {"workflow": workflow.to_dict(), "steps": steps, "handoff": str(handoff)}


def _run_side_by_side(
    group: list[int], start: Callable[[int], Any], finish: Callable[[int, Any], None]
) -> None:
    """Run `group`'s steps, side_by_side() at a time, each waited on in a thread of its own; the
    first error cancels the others (their outputs are left as they were) and is raised."""
    import threading

    limit = side_by_side()
    waiting = list(group)
    running: dict[int, tuple[Any, threading.Thread]] = {}
    errors: list[BaseException] = []
    done = threading.Condition()

    def wait(i: int, process: Any) -> None:
        try:
            finish(i, process)
        except BaseException as exc:  # handed to the calling thread
            errors.append(exc)
        with done:
            del running[i]
            done.notify_all()

    try:
        while (waiting or running) and not errors:
            with done:
                while waiting and len(running) < limit:
                    i = waiting.pop(0)
                    process = start(i)
                    thread = threading.Thread(target=wait, args=(i, process), daemon=True)
                    running[i] = (process, thread)
                    thread.start()
                done.wait(0.2)
    except BaseException:  # Ctrl-C: nothing may outlive the run
        errors.append(StepCancelled("the run was interrupted"))
        raise
    finally:
        with done:
            left = list(running.values())
        if errors:  # the others are cancelled (their outputs stay as they were)
            for process, _ in left:
                process.cancel()
        for _, thread in left:
            thread.join(timeout=30)
    if errors:
        raise errors[0]


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
