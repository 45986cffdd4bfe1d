"""Where every step of a workflow reads and writes, for both heads (the CLI's `run`, the wizard).

Everything lands in `<output>/<model name>/…`; a step that needs an earlier step's result
(validate and quantize after convert, benchmark after quantize) finds it there. Each catalogue
entry names one rule below; the keys a rule fills are "derived": a workflow file may not set them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.errors import MissingInputError
from workflows.model import model_name

# The variants earlier steps make, by the step that makes them (an export may hand one off).
VARIANT_STEPS = {
    "pruned": "prune",
    "int8-static": "quantize",
    "int8-dynamic": "quantize",
    "fp16": "quantize",
    "sparse": "compress",
    "clustered": "compress",
    "edited": "edit",
}


@dataclass(frozen=True)
class Layout:
    """The run folder of one model and the steps a workflow holds."""

    output: Path
    model: dict[str, Any]  # the model's LoadOptions, as a dict
    steps: tuple[str, ...]

    @property
    def name(self) -> str:
        return model_name(self.model["path"])

    @property
    def root(self) -> Path:
        return Path(self.output) / self.name

    @property
    def converted(self) -> Path:
        return self.root / "convert" / f"{self.name}.onnx"

    @property
    def quantized(self) -> Path:
        return self.root / "quantize"

    @property
    def benchmark(self) -> Path:
        return self.root / "benchmark.json"

    @property
    def pruned(self) -> Path:
        return self.root / "prune"

    @property
    def unedited_source(self) -> dict[str, Any]:
        """The model the edit step reads: the pruned model when the workflow prunes, else the
        converted model when it converts, else the workflow's model."""
        if "prune" in self.steps:
            return {"path": str(self.pruned / f"{self.name}.pruned.onnx")}
        return {"path": str(self.converted)} if "convert" in self.steps else self.model

    @property
    def edited(self) -> Path:
        return self.root / "edit" / f"{model_name(self.unedited_source['path'])}.edited.onnx"

    @property
    def onnx_source(self) -> dict[str, Any]:
        """What ONNX-only steps read: the edited model when the workflow edits, else as
        `unedited_source`."""
        return {"path": str(self.edited)} if "edit" in self.steps else self.unedited_source

    def variant(self, name: str) -> Path:
        """Where the variant `name` ("pruned", "int8-static", "sparse", …) of this workflow is
        written; MissingInputError when no step of the workflow makes it."""
        step = VARIANT_STEPS.get(name)
        if step is None:
            raise MissingInputError(
                f"unknown variant {name!r}; variants: original, {', '.join(VARIANT_STEPS)}"
            )
        if step not in self.steps:
            raise MissingInputError(
                f"the {name} variant is made by the {step} step, which this workflow does not run"
            )
        if step == "prune":
            return self.pruned / f"{self.name}.pruned.onnx"
        if step == "edit":
            return self.edited
        # Quantize and compress name their files after the model they read.
        source = model_name(self.onnx_source["path"])
        folder = self.quantized if step == "quantize" else self.root / "compress"
        return folder / f"{source}.{name}.onnx"

    @property
    def variants(self) -> Path:
        """What the benchmark times: the quantized variants, else the converted model."""
        return self.quantized if "quantize" in self.steps else self.converted


Derive = Callable[[Layout, str], tuple[dict[str, Any], Path]]


@dataclass(frozen=True)
class Rule:
    derived: frozenset[str]
    derive: Derive


def _onnx(L: Layout, _step: str) -> tuple[dict[str, Any], Path]:
    return {"model": L.model, "output": str(L.converted)}, L.converted


def _compare(L: Layout, _step: str) -> tuple[dict[str, Any], Path]:
    out = L.root / "validate.json"
    return {"original": L.model, "candidate": {"path": str(L.converted)}, "output": str(out)}, out


def _edited(L: Layout, _step: str) -> tuple[dict[str, Any], Path]:
    out = L.root / "edit"
    return {"model": L.unedited_source["path"], "output": str(out)}, out


def _pruned(L: Layout, _step: str) -> tuple[dict[str, Any], Path]:
    return {"model": L.model, "output": str(L.pruned)}, L.pruned


def _compressed(L: Layout, _step: str) -> tuple[dict[str, Any], Path]:
    out = L.root / "compress"
    return {"model": L.onnx_source, "output": str(out)}, out


def _variants(L: Layout, _step: str) -> tuple[dict[str, Any], Path]:
    return {"model": L.onnx_source, "output": str(L.quantized)}, L.quantized


def _timing(L: Layout, _step: str) -> tuple[dict[str, Any], Path]:
    return {"models": [str(L.variants)], "output": str(L.benchmark)}, L.benchmark


def _changes(L: Layout, _step: str) -> tuple[dict[str, Any], Path]:
    """The quantize step's variants against its float model."""
    if "quantize" not in L.steps:
        raise MissingInputError(
            "compare reads the quantize step's variants: add a quantize step before it"
        )
    out = L.root / "compare.json"
    return {"candidates": [str(L.quantized)], "model": None, "output": str(out)}, out


def _report(L: Layout, _step: str) -> tuple[dict[str, Any], Path]:
    inputs = [str(L.pruned)] if "prune" in L.steps else []
    if "quantize" in L.steps:
        inputs.append(str(L.quantized))
    if "compress" in L.steps:
        inputs.append(str(L.root / "compress"))
    if "benchmark" in L.steps:
        inputs.append(str(L.benchmark))
    if "compare" in L.steps:
        inputs.append(str(L.root / "compare.json"))
    out = L.root / "report.html"
    return {"inputs": inputs, "output": str(out)}, out


def _export(L: Layout, step: str) -> tuple[dict[str, Any], Path]:
    """Exports share the convert step's ONNX when the workflow converts before them."""
    out = L.root / step
    options = {"model": L.model, "output": str(out), "converted": None}
    if "convert" in L.steps and step in L.steps and L.steps.index("convert") < L.steps.index(step):
        options["converted"] = str(L.converted)
    return options, out


RULES: dict[str, Rule] = {
    "onnx": Rule(frozenset({"model", "output"}), _onnx),
    "compare": Rule(frozenset({"original", "candidate", "output"}), _compare),
    "pruned": Rule(frozenset({"model", "output"}), _pruned),
    "edited": Rule(frozenset({"model", "output"}), _edited),
    "compressed": Rule(frozenset({"model", "output"}), _compressed),
    "variants": Rule(frozenset({"model", "output"}), _variants),
    "timing": Rule(frozenset({"models", "output"}), _timing),
    "changes": Rule(frozenset({"candidates", "model", "output"}), _changes),
    "report": Rule(frozenset({"inputs", "output"}), _report),
    "export": Rule(frozenset({"model", "output", "converted"}), _export),
}


def derived(step: str) -> frozenset[str]:
    """Option keys of `step` that the planner fills (a workflow file may not set them)."""
    from workflows.catalogue import spec

    rule = spec(step).plan
    return RULES[rule].derived if rule else frozenset()


def plan_step(layout: Layout, step: str, options: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """`step`'s full options (the user's plus the derived ones) and its output path."""
    from workflows.catalogue import spec

    rule = spec(step).plan
    if rule is None:
        raise ValueError(f"{step} is not a workflow step")
    updates, out = RULES[rule].derive(layout, step)
    variant = options.get("source", "original") if rule == "export" else "original"
    if variant != "original":  # hand off a variant an earlier step made, not the original
        updates.update(model={"path": str(layout.variant(variant))}, converted=None)
    return {**options, **updates}, out


def plan_steps(
    output: str | Path, model: dict[str, Any], steps: Sequence[tuple[str, dict[str, Any]]]
) -> list[tuple[str, dict[str, Any], Path]]:
    """(step, full options, output path) for each of `steps` ((name, user options) pairs)."""
    layout = Layout(Path(output), model, tuple(name for name, _ in steps))
    return [(name, *plan_step(layout, name, options)) for name, options in steps]
