"""Graph insight (issue 16): per node of a model and of each of its variants, the error the
variant adds there (INT8: quantization SQNR, local and accumulated, and the weight's; FP16 and
other same-graph variants: deviation from the float model) and the time ONNX Runtime spends
there, for the graph overlays and the node table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.errors import DataError
from workflows.options import Options, from_dict, option
from workflows.progress import Progress, null_progress


@dataclass
class InsightOptions(Options):
    """Options of the insight step."""

    variants: list[str] = option(
        [], "ONNX variants, or a quantize output folder (all its variants)"
    )
    model: str | None = option(
        None, "The float ONNX model they came from (default: a quantize folder's fp32 file)"
    )
    data: str | None = option(
        None, "Inputs to measure the error on (.npz or image folder); default: synthetic inputs"
    )
    samples: int = option(32, "Samples the error is measured on")
    batch_size: int = option(1, "Batch size the nodes are timed at")
    runs: int = option(20, "Timed runs per model")
    output: str | None = option(None, "Write insight.json here (a file path)")
    seed: int = option(0, "Seed for the synthetic inputs")


def reference_and_variants(
    variants: list[str], model: str | None, step: str
) -> tuple[Path, list[Path]]:
    """The float reference (`model`, else a quantize folder's fp32 file) and the variants."""
    from workflows.steps.benchmark import expand_models, variant_name

    paths = expand_models(variants)
    if model:
        reference = Path(model)
        if not reference.is_file():
            raise DataError(f"{reference}: no such model file (the float model, --model)")
    else:
        floats = [p for p in paths if variant_name(p) == "fp32"]
        if not floats:
            raise DataError(
                f"{step}: which float model did the variants come from? Give it with --model, "
                "or give a quantize output folder (its fp32 file is the reference)"
            )
        reference = floats[0]
    return reference, [p for p in paths if p.resolve() != reference.resolve()]


def insight(opts: InsightOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Per-node error and time of each variant against the float model (see module doc)."""
    import tempfile

    from workflows.data import load_dataset
    from workflows.formats import onnx_format
    from workflows.insight.node_errors import node_errors
    from workflows.insight.node_times import node_times
    from workflows.machine import cpu_features
    from workflows.steps.benchmark import variant_name

    progress = progress or null_progress()
    reference, variants = reference_and_variants(opts.variants, opts.model, "insight")
    specs = onnx_format.load(reference).inputs
    data = load_dataset(
        opts.data, specs, None, opts.samples, opts.seed, synthetic_count=opts.samples
    ).in_memory()
    feeds = data.batch(0, data.batch_size(opts.batch_size))
    entries: list[dict[str, Any]] = []
    steps = 1 + 2 * len(variants)
    progress.update(0.0, f"Timing {reference.name}'s nodes")
    entries.append({"name": variant_name(reference), "file": str(reference), "reference": True,
                    "times": node_times(reference, feeds, opts.runs)})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dockyard-insight-") as tmp:
        for i, path in enumerate(variants):
            name = variant_name(path)
            progress.update((1 + 2 * i) / steps, f"Measuring {name}'s error per node")
            errors = node_errors(reference, path, data, Path(tmp) / name)
            progress.update((2 + 2 * i) / steps, f"Timing {name}'s nodes")
            entries.append({"name": name, "file": str(path), "reference": False,
                            "errors": errors, "times": node_times(path, feeds, opts.runs)})  # fmt: skip
    result = {
        "step": "insight",
        "cpu": cpu_features(),
        "data": {"source": data.source, "samples": len(data), "synthetic": data.synthetic},
        "batch_size": len(next(iter(feeds.values()))),
        "models": entries,
    }
    if opts.output:
        from workflows.atomic import write_json

        write_json(Path(opts.output), result)
    progress.update(1.0, "Insight done")
    return result


def run(options: InsightOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return insight(from_dict(InsightOptions, options), progress)
