"""The compare step (issue 16): what converting, optimising or quantizing changed in a model,
node by node, for each variant against the model it came from (workflows.insight.compare)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.errors import DataError
from workflows.options import Options, from_dict, option
from workflows.progress import Progress, null_progress


@dataclass
class CompareOptions(Options):
    """Options of the compare step."""

    candidates: list[str] = option(
        [], "ONNX models, or a quantize output folder (all its variants)"
    )
    model: str | None = option(
        None, "The ONNX model they came from (default: a quantize folder's fp32 file)"
    )
    output: str | None = option(None, "Write compare.json here (a file path)")


def _reasons(path: Path) -> dict[str, str]:
    """Why the quantize step kept nodes of this variant in float (its folder's report.json)."""
    from workflows.insight.compare import float_reasons

    report = path.parent / "report.json"
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("step") != "quantize":
        return {}
    variant = next((v for v in data.get("variants", []) if v.get("file") == path.name), None)
    return float_reasons(variant) if variant else {}


def compare_variants(opts: CompareOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Each candidate against the reference (see workflows.insight.compare.compare)."""
    from workflows.insight.compare import compare
    from workflows.steps.benchmark import variant_name
    from workflows.steps.insight import reference_and_variants

    progress = progress or null_progress()
    reference, candidates = reference_and_variants(opts.candidates, opts.model, "compare")
    if not candidates:
        raise DataError(f"compare: nothing to compare {reference.name} with (give a variant)")
    results = []
    for i, path in enumerate(candidates):
        progress.update(i / max(len(candidates), 1), f"Comparing {path.name} with {reference.name}")
        results.append({"name": variant_name(path), **compare(reference, path, _reasons(path))})
    result = {"step": "compare", "reference": str(reference), "candidates": results}
    if opts.output:
        from workflows.atomic import write_json

        write_json(Path(opts.output), result)
    progress.update(1.0, "Compare done")
    return result


def run(options: CompareOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return compare_variants(from_dict(CompareOptions, options), progress)
