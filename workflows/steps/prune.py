"""Structured pruning of an eager PyTorch model, recovered by distillation from the original.

Whole channels go (torch-pruning), so the result is a smaller dense model; the original then
teaches it on the user's data (no labels needed) until the accuracy gate passes or the steps run
out. Both models are converted to ONNX and timed the same way, so the speed-up is measured, not
estimated from MACs. Writes `NAME.pruned.onnx`, `NAME.pruned.pt2` (a torch.export program with
the new channel counts), `NAME.fp32.onnx` (the original, for comparison) and report.json.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.atomic import atomic_dir, check_replaceable
from workflows.compression import channels
from workflows.compression.distill import Settings, distill, teacher_targets
from workflows.compression.figure import figure, figure_name
from workflows.data import Dataset, Preprocess, calibration_and_evaluation, read_labels
from workflows.errors import ConversionError, DataError
from workflows.jsonable import jsonable
from workflows.latency import onnx_p50
from workflows.machine import measured_on
from workflows.model import Model
from workflows.options import LoadOptions, Options, from_dict, option, to_dict
from workflows.progress import Progress, null_progress
from workflows.quantization.gate import MIN_SQNR_DB, judge

PRUNABLE = ("pytorch_eager",)


@dataclass
class PruneOptions(Options):
    """Options of the prune step."""

    model: LoadOptions = option(None, "The model to prune: eager PyTorch (module file + weights)")
    output: str = option("", "Folder for the pruned model, the original as ONNX and report.json")
    ratio: float = option(0.5, "Share of each layer's channels to remove (0..1)")
    target_macs_reduction: float | None = option(
        None, "Remove channels step by step until this share of MACs is gone (0..1; --ratio caps "
        "each layer)"
    )  # fmt: skip
    importance: str = option(
        "magnitude", "Which channels go first: magnitude (L2 of the weights), bn_scale (batch "
        "norm scale) or lamp", choices=channels.IMPORTANCE
    )  # fmt: skip
    round_to: int = option(8, "Keep channel counts multiples of this (SIMD-friendly; 1: any)")
    data: str | None = option(
        None, "Data to distil on: image folder, .npy or .npz (labels optional, used when given)"
    )
    data_samples: int | None = option(None, "Training samples to use (empty: all, up to 4,096)")
    evaluation: str | None = option(
        None, "Held-out data for the gate (labelled .npz or class folders); empty: part of --data"
    )
    evaluation_samples: int | None = option(None, "Evaluation samples to use (all if empty)")
    labels: str | None = option(None, "Label names file, one per line")
    preprocess: Preprocess = option(Preprocess(), "How images become input tensors")
    holdout: float = option(0.2, "Without --evaluation: the share of --data held out for the gate")
    distill_steps: int = option(500, "Distillation steps at most (0: prune only)")
    batch_size: int = option(32, "Distillation batch size")
    learning_rate: float = option(1e-3, "Distillation learning rate (Adam, cosine decay)")
    temperature: float = option(4.0, "Distillation temperature for class scores")
    eval_every: int = option(50, "Judge the student every N steps (stops once the gate passes)")
    max_accuracy_drop: float = option(1.0, "Accuracy gate: largest allowed top-1 drop, in points")
    confidence: float = option(0.95, "Accuracy gate: confidence of its intervals")
    min_sqnr_db: float = option(
        MIN_SQNR_DB, "Accuracy gate for outputs that are not class scores: lowest mean SQNR, dB"
    )
    seed: int = option(0, "Seed for the distillation (same seed, same machine: same model)")


def _example_args(model: Model, batch: int) -> tuple:
    import torch

    from workflows.formats._torch import require_shapes
    from workflows.inputs import concrete_shape

    require_shapes(model.inputs, model.path, model.format)
    return tuple(
        torch.zeros(concrete_shape(s, batch), dtype=getattr(torch, s.dtype)) for s in model.inputs
    )


def _check_prunable(model: Model) -> None:
    if model.format in PRUNABLE:
        from workflows.formats._torch import require_shapes

        require_shapes(model.inputs, model.path, model.format)
        return
    why = {
        "exported_program": "a torch.export program holds ATen operations, not the nn.Conv2d and "
        "nn.Linear modules whose channels pruning removes",
        "torchscript": "a TorchScript module's layers are compiled code that pruning cannot "
        "rewrite",
    }.get(model.format, f"structured pruning rewrites PyTorch modules; this is {model.format}")
    raise ConversionError(
        f"{model.path}: cannot prune: {why}. Give the eager model instead: the Python file that "
        "defines it and its weights (--model-file model.py --model-class Net weights.pt)."
    )


class _Judge:
    """The original's figures on the held-out data and the gate for any student."""

    def __init__(self, teacher: Any, names: list[str], evaluation: Dataset, opts: PruneOptions):
        from workflows.formats._torch import torch_session
        from workflows.quantization.accuracy import evaluate

        self.names, self.evaluation, self.opts = names, evaluation, opts
        self.baseline, self.reference = evaluate(torch_session(teacher, names), evaluation)
        self.figure_name = figure_name(self.reference, evaluation.y is not None)

    def figures(self, student: Any) -> dict[str, Any]:
        """Accuracy figures, the gate and the plotted figure of `student`."""
        from workflows.formats._torch import torch_session
        from workflows.quantization.accuracy import evaluate

        figures, outputs = evaluate(
            torch_session(student, self.names), self.evaluation, self.reference
        )
        o = self.opts
        figures["gate"] = judge(
            self.reference,
            outputs,
            self.evaluation.y,
            self.evaluation.synthetic,
            o.max_accuracy_drop,
            o.confidence,
            o.min_sqnr_db,
        )
        figures["figure"] = figure(self.figure_name, self.reference, outputs, self.evaluation.y)
        return figures

    def __call__(self, student: Any) -> tuple[dict[str, Any], float]:
        """(gate, plotted figure): top-1 %, top-1 agreement % or mean SQNR dB."""
        figures = self.figures(student)
        return figures["gate"], figures["figure"]


def _write_program(student: Any, model: Model, dst: Path) -> None:
    """The pruned module as a torch.export program (its class no longer fits the weights)."""
    import torch

    args = _example_args(model, 2)
    dynamic = model.metadata.get("dynamic_batch", True)
    shapes = None
    if dynamic:
        batch = torch.export.Dim("batch")
        shapes = {s.name: {0: batch} for s in model.inputs}
    program = torch.export.export(student, args, dynamic_shapes=shapes)
    torch.export.save(program, str(dst))


def _convert_and_check(student_model: Model, dst: Path, progress: Progress) -> dict[str, Any]:
    """The pruned module as ONNX, validated against the module (a conversion like any other)."""
    from workflows.formats import onnx_format
    from workflows.steps.convert import convert_model
    from workflows.steps.validate import validate_models

    convert_model(student_model, dst, progress=progress.scaled(0.0, 0.8))
    check = validate_models(student_model, onnx_format.load(dst), progress=progress.scaled(0.8, 1))
    if not check["passed"]:
        raise ConversionError(
            f"{dst.name}: the ONNX export of the pruned model deviates from it "
            f"(max abs error {check['worst'].get('max_abs_error')}); nothing was written"
        )
    return {"passed": True, "worst": check["worst"], "inputs": check["inputs"]}


def prune_model(
    model: Model, opts: PruneOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Prune `model`, distil it from the original, write both as ONNX and report.json."""
    progress = progress or null_progress()
    _check_prunable(model)
    started = time.perf_counter()
    names = [s.name for s in model.inputs]
    labels = read_labels(Path(opts.labels)) if opts.labels else None
    progress.update(0.02, "Loading the data to distil on and to judge with")
    train, evaluation, held_out = calibration_and_evaluation(
        opts.data,
        opts.evaluation,
        model.inputs,
        opts.preprocess,
        opts.data_samples,
        opts.evaluation_samples,
        opts.holdout,
        opts.seed,
        labels,
    )
    if opts.distill_steps and train.synthetic:
        raise DataError(
            "prune: distillation needs the model's real inputs: give --data (an image folder, "
            ".npy or .npz; labels are not needed), or --distill-steps 0 to prune only"
        )
    teacher = model.native
    teacher.eval()
    student = copy.deepcopy(teacher)
    judge_student = _Judge(teacher, names, evaluation, opts)
    progress.update(0.05, "Removing channels")
    pruning = channels.prune(
        student,
        _example_args(model, 1),
        opts.ratio,
        opts.target_macs_reduction,
        opts.importance,
        opts.round_to if opts.round_to > 1 else None,
        progress.scaled(0.05, 0.12),
    )
    pruned_only = judge_student.figures(student)
    distillation = None
    if opts.distill_steps > 0:
        progress.update(0.12, "Distilling from the original")
        targets = teacher_targets(teacher, names, train)
        settings = Settings(
            steps=opts.distill_steps,
            batch_size=opts.batch_size,
            learning_rate=opts.learning_rate,
            temperature=opts.temperature,
            eval_every=max(1, opts.eval_every),
            seed=opts.seed,
        )
        distillation = distill(
            student,
            names,
            train,
            targets,
            judge_student,
            settings,
            progress.scaled(0.12, 0.8),
            judge_student.figure_name,
        )
    final = judge_student.figures(student)
    student_model = dataclasses.replace(
        model, native=student, parameters=pruning["parameters_after"]
    )
    output = Path(opts.output)
    with atomic_dir(output) as out:
        from workflows.steps.convert import convert_model

        progress.update(0.8, "Converting the original and the pruned model to ONNX")
        original_onnx = out / f"{model.name}.fp32.onnx"
        pruned_onnx = out / f"{model.name}.pruned.onnx"
        convert_model(model, original_onnx, progress=progress.scaled(0.8, 0.85))
        conversion = _convert_and_check(student_model, pruned_onnx, progress.scaled(0.85, 0.9))
        _write_program(student, model, out / f"{model.name}.pruned.pt2")
        progress.update(0.9, "Timing both in ONNX Runtime (batch 1)")
        feeds = next(evaluation.batches(1))
        before, after = onnx_p50(original_onnx, feeds), onnx_p50(pruned_onnx, feeds)
        report = jsonable(
            {
                "step": "prune",
                "source": model.summary(),
                "pruning": pruning,
                "original": {
                    "file": original_onnx.name,
                    "size_bytes": original_onnx.stat().st_size,
                    "accuracy": judge_student.baseline,
                    "latency": before,
                },
                "pruned": {
                    "file": pruned_onnx.name,
                    "program": f"{model.name}.pruned.pt2",
                    "size_bytes": pruned_onnx.stat().st_size,
                    "accuracy": final,
                    "accuracy_before_distillation": pruned_only,
                    "latency": after,
                    "conversion": conversion,
                },
                "speedup_p50": round(before["p50_ms"] / max(after["p50_ms"], 1e-9), 3),
                "size_ratio": round(
                    original_onnx.stat().st_size / max(pruned_onnx.stat().st_size, 1), 3
                ),
                "distillation": distillation,
                "data": {
                    "source": train.source,
                    "samples": len(train),
                    "labelled": train.y is not None,
                },
                "evaluation": {
                    "source": evaluation.source,
                    "samples": len(evaluation),
                    "synthetic": evaluation.synthetic,
                    "labelled": evaluation.y is not None,
                    "held_out": held_out,
                },
                "options": to_dict(opts),
                "seconds": round(time.perf_counter() - started, 2),
                "measured_on": measured_on(),
            }
        )
        (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    gate = final["gate"]["decision"]
    progress.update(
        1.0,
        f"Pruned {pruning['macs_reduction']:.0%} of MACs: {report['speedup_p50']}x faster, "
        f"gate {gate}",
    )
    report["output"] = str(output)
    return report


def run(options: PruneOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point: load the model the options name, then prune it."""
    opts = from_dict(PruneOptions, options)
    if not opts.output:
        raise DataError("prune: give an output folder (-o DIR)")
    check_replaceable(Path(opts.output))  # before any work: a user's folder is never replaced
    progress.update(0.01, f"Loading {opts.model.path}")
    return prune_model(opts.model.load(), opts, progress)
