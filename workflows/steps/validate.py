"""Validate a candidate (usually ONNX) against the original in its own framework, same inputs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows import formats, inputs, metrics
from workflows.errors import MissingInputError
from workflows.model import Model
from workflows.options import LoadOptions, Options, from_dict, option
from workflows.progress import Progress, null_progress


@dataclass
class ValidateOptions(Options):
    """Options of the validate step."""

    original: LoadOptions = option(None, "The reference model, run in its own framework")
    candidate: LoadOptions = option(None, "The model under test (ONNX runs in ONNX Runtime)")
    inputs: str | None = option(None, ".npy/.npz inputs; synthesised from the input spec if empty")
    batch_sizes: list[int] = option([1, 7], "Batch sizes to try when the batch is dynamic")
    seed: int = option(0, "Seed for synthesised inputs")
    atol: float = option(1e-4, "Absolute tolerance")
    rtol: float = option(1e-3, "Relative tolerance")
    output: str | None = option(None, "Also write the result to this .json file")


def _session(model: Model):
    return formats.by_name(model.format).session(model)


def _worst(results: list[dict[str, Any]]) -> dict[str, Any]:
    keys = {
        "max_abs_error": max,
        "mean_abs_error": max,
        "cosine_similarity": min,
        "sqnr_db": min,
        "top1_agreement": min,
    }
    worst: dict[str, Any] = {}
    for key, pick in keys.items():
        values = [r[key] for r in results if key in r]
        if values:
            worst[key] = pick(values)
    return worst


def validate_models(
    original: Model,
    candidate: Model,
    feeds_path: Path | None = None,
    batch_sizes: list[int] | tuple[int, ...] = (1, 7),
    seed: int = 0,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run both models on the same inputs and compare every output."""
    progress = progress or null_progress()
    specs = original.inputs if all(s.shape for s in original.inputs) else candidate.inputs
    dynamic = all(s.is_dynamic(0) for s in specs) and all(s.is_dynamic(0) for s in candidate.inputs)
    if feeds_path is not None:
        trials = [("file", inputs.load_feeds(feeds_path, specs))]
        source = str(feeds_path)
    else:
        sizes = list(batch_sizes) if dynamic else [None]
        trials = []
        for b in sizes:
            feeds = inputs.synthesize(specs, batch=b or 1, seed=seed)
            trials.append((f"batch {next(iter(feeds.values())).shape[0] if feeds else b}", feeds))
        source = f"synthetic (normal(0,1), seed {seed})"
    progress.update(0.1, f"Starting {original.format} and {candidate.format} runtimes")
    run_original, run_candidate = _session(original), _session(candidate)
    per_trial = []
    for i, (label, feeds) in enumerate(trials):
        started = time.perf_counter()
        ref = run_original(inputs.rename_feeds(feeds, specs, original.inputs))
        t_ref = time.perf_counter() - started
        started = time.perf_counter()
        cand = run_candidate(inputs.rename_feeds(feeds, specs, candidate.inputs))
        t_cand = time.perf_counter() - started
        if len(ref) != len(cand):
            raise MissingInputError(
                f"the models give different numbers of outputs ({len(ref)} vs {len(cand)})"
            )
        outputs = []
        for j, (r, c) in enumerate(zip(ref, cand, strict=True)):
            m = metrics.compare(r, c)
            m["name"] = candidate.outputs[j].name if j < len(candidate.outputs) else f"output_{j}"
            m["within_tolerance"] = metrics.within_tolerance(r, c, atol, rtol)
            outputs.append(m)
        per_trial.append(
            {
                "trial": label,
                "outputs": outputs,
                "original_seconds": round(t_ref, 4),
                "candidate_seconds": round(t_cand, 4),
            }
        )
        progress.update(0.2 + 0.8 * (i + 1) / len(trials), f"Compared {label}")
    all_outputs = [o for t in per_trial for o in t["outputs"]]
    passed = all(o["shape_match"] and o["within_tolerance"] for o in all_outputs)
    summary = _worst(all_outputs)
    return {
        "original": original.summary(),
        "candidate": candidate.summary(),
        "inputs": source,
        "synthetic_inputs": feeds_path is None,
        "dynamic_batch": dynamic,
        "tolerance": {"atol": atol, "rtol": rtol},
        "trials": per_trial,
        "worst": summary,
        "passed": passed,
    }


def run(options: ValidateOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point: load both models and compare them."""
    opts = from_dict(ValidateOptions, options)
    progress.update(0.02, f"Loading {opts.original.path}")
    original = opts.original.load()
    progress.update(0.05, f"Loading {opts.candidate.path}")
    candidate = opts.candidate.load()
    result = validate_models(
        original,
        candidate,
        Path(opts.inputs) if opts.inputs else None,
        opts.batch_sizes,
        opts.seed,
        opts.atol,
        opts.rtol,
        progress.scaled(0.1, 1.0),
    )
    if opts.output:
        from workflows.atomic import write_json

        write_json(Path(opts.output), result)
    return result
