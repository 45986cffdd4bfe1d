"""Quantize an ONNX model (static INT8 QDQ, dynamic INT8, FP16) with ONNX Runtime's tooling,
measure each variant's accuracy against the float model, and fall back to float where INT8 breaks
the accuracy gate."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.atomic import atomic_dir, check_replaceable, scratch_dir
from workflows.data import (
    CALIBRATION_FLOOR,
    CALIBRATION_MAX,
    HOLDOUT_MAX,
    Dataset,
    Preprocess,
    calibration_and_evaluation,
    read_labels,
)
from workflows.errors import DataError
from workflows.formats import onnx_format
from workflows.jsonable import jsonable
from workflows.machine import measured_on
from workflows.model import Model
from workflows.options import LoadOptions, Options, from_dict, option, to_dict
from workflows.progress import Progress, null_progress
from workflows.quantization import quantizers
from workflows.quantization.accuracy import evaluate
from workflows.quantization.gate import MIN_SQNR_DB, judge
from workflows.quantization.quantizers import CALIBRATION_METHODS
from workflows.quantization.search import Settings

MODES = ("static", "dynamic", "fp16")
VARIANT_NAMES = {"static": "int8-static", "dynamic": "int8-dynamic", "fp16": "fp16"}


@dataclass
class QuantizeOptions(Options):
    """Options of the quantize step."""

    model: LoadOptions = option(None, "The model to quantize (converted to ONNX first if needed)")
    output: str = option("", "Folder for the variants and report.json")
    modes: list[str] = option(
        ["static"], "Variants: static (INT8 QDQ), dynamic (INT8), fp16", choices=MODES
    )
    calibration: str | None = option(None, "Calibration data: image folder, .npy or .npz")
    calibration_samples: int | None = option(
        None, f"Calibration samples to use (empty: all given, up to {CALIBRATION_MAX:,})"
    )
    method: str = option(
        "minmax", "Calibration: minmax, entropy or percentile", choices=CALIBRATION_METHODS
    )
    per_channel: bool = option(False, "Per-channel weight scales (more accurate, a little slower)")
    activation_type: str = option(
        "uint8", "Activation type: uint8 (x86 fast path) or int8", choices=("uint8", "int8")
    )
    weight_type: str = option("int8", "Weight type: int8 or uint8", choices=("int8", "uint8"))
    evaluation: str | None = option(None, "Evaluation data (labelled .npz or class folders)")
    evaluation_samples: int | None = option(None, "Evaluation samples to use (all if empty)")
    labels: str | None = option(None, "Label names file, one per line")
    preprocess: Preprocess = option(Preprocess(), "How images become input tensors")
    max_accuracy_drop: float = option(1.0, "Accuracy gate: largest allowed top-1 drop, in points")
    confidence: float = option(0.95, "Accuracy gate: confidence of its intervals")
    min_sqnr_db: float = option(
        MIN_SQNR_DB, "Accuracy gate for outputs that are not class scores: lowest mean SQNR, dB"
    )
    holdout: float = option(
        0.5,
        "Without evaluation data: the share of the calibration samples held out for the gate "
        f"(or all but {CALIBRATION_FLOOR} when that is more, up to {HOLDOUT_MAX:,}; with "
        "--calibration-samples N and at least twice N given: all beyond N)",
    )
    dynamic_ops: str = option(
        "all",
        "Dynamic INT8 of: all (convolutions too, as ConvInteger) or matmul (MatMul/Gemm, "
        "attention, RNNs: what transformers need)",
        choices=("all", "matmul"),
    )
    compute_ops_only: bool = option(
        False, "Static INT8 of Conv/MatMul/Gemm only; element-wise ops stay float between them"
    )
    reduce_range: bool = option(
        False, "7-bit weights: cannot saturate u8s8 kernels on x86 CPUs without VNNI"
    )
    fallback: bool = option(
        True,
        "When the gate fails, search for the cheapest variant that passes: knobs first, "
        "then nodes in float",
    )
    max_fallback_rounds: int = option(8, "Rounds of keeping nodes in float, at most")
    seed: int = option(0, "Seed for synthetic data")


def error_histogram(candidate: Any, reference: Any, bins: int = 40) -> dict[str, list[float]]:
    """Histogram of |candidate - reference| over every output value, log-spaced bins (for plots)."""
    import numpy as np

    err = np.abs(candidate.astype(np.float64) - reference.astype(np.float64)).ravel()
    top = max(float(err.max()), 1e-9) if err.size else 1e-9
    edges = np.logspace(-9, np.log10(top * 1.001), bins + 1)
    counts, _ = np.histogram(np.clip(err, 1e-9, None), edges)
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "exact": int(np.sum(err == 0)),
    }


class _Quantizer:
    """Holds what every variant shares: the float model, the data, the baseline figures."""

    def __init__(
        self,
        opts: QuantizeOptions,
        float_path: Path,
        pre_path: Path,
        model: Model,
        calib: Dataset,
        evaluation: Dataset,
        work: Path,
    ) -> None:
        self.opts, self.float_path, self.pre_path = opts, float_path, pre_path
        self.model, self.calib, self.evaluation, self.work = model, calib, evaluation, work
        self.baseline, self.reference = evaluate(onnx_format.session(model), evaluation)
        from workflows.quantization.search import first_and_last_compute_nodes

        self.compute_ops = bool(first_and_last_compute_nodes(float_path))

    def settings(self) -> Settings:
        """The static INT8 settings the user asked for (the fallback search varies them)."""
        o = self.opts
        return {
            "method": o.method,
            "per_channel": o.per_channel,
            "activation_type": o.activation_type,
            "weight_type": o.weight_type,
            "reduce_range": o.reduce_range,
            "dynamic_ops": o.dynamic_ops,
            "compute_ops_only": o.compute_ops_only,
            "exclude": [],
        }

    def make(
        self, mode: str, dst: Path, settings: Settings, progress: Progress | None = None
    ) -> None:
        if mode == "static":
            quantizers.quantize_static_qdq(
                self.pre_path,
                dst,
                self.calib,
                settings["method"],
                settings["per_channel"],
                settings["activation_type"],
                settings["weight_type"],
                settings["exclude"],
                reduce_range=settings["reduce_range"],
                op_types=quantizers.COMPUTE_OP_TYPES if settings["compute_ops_only"] else None,
                progress=progress,
                ranges_cache=self.work / "ranges",
            )
        elif mode == "dynamic":
            quantizers.quantize_dynamic_int8(
                self.pre_path,
                dst,
                settings["per_channel"],
                settings["weight_type"],
                op_types=quantizers.DYNAMIC_OPS[settings["dynamic_ops"]],
            )
        else:
            quantizers.convert_fp16(self.float_path, dst)

    def measure(self, path: Path) -> dict[str, Any]:
        variant = onnx_format.load(path)
        figures, outputs = evaluate(onnx_format.session(variant), self.evaluation, self.reference)
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
        figures["error_histogram"] = error_histogram(outputs[0], self.reference[0])
        return figures

    def cost(self, path: Path) -> dict[str, Any]:
        """Size and a quick batch-1 p50 latency: what keeping nodes in float costs."""
        from workflows.latency import measure

        sess = onnx_format.ort_session(path)
        # One sample of the evaluation data: its shapes are ones the model takes (synthesised
        # inputs would guess a size for dynamic height and width, which a detector may refuse).
        feeds = next(self.evaluation.batches(1))
        timing = measure(lambda: sess.run(None, feeds), warmup=3, window=10, max_seconds=1.0)
        return {"size_bytes": onnx_format.onnx_size(path), "p50_ms": round(timing["p50_ms"], 4)}

    def variant(self, mode: str, dst: Path, progress: Progress) -> dict[str, Any]:
        started = time.perf_counter()
        base = self.settings()
        self.make(mode, dst, base, progress.scaled(0.0, 0.4))
        figures = self.measure(dst)
        settings, search, outcome = base, None, None
        if figures["gate"]["decision"] == "fail" and self.opts.fallback and mode != "fp16":
            progress.update(
                0.5, "Accuracy gate failed: searching for the cheapest INT8 that passes"
            )
            search, settings, figures, outcome = self._search(mode, dst, base, figures, progress)
        int8_fraction = None
        if mode != "fp16":
            from workflows.quantization.int8_diagnostics import diagnose

            int8_fraction = diagnose(dst)["fraction_int8"]
        warning = None
        if outcome == "failed":
            warning = (
                "INT8 cannot meet the accuracy gate on this model: no try passed (see the "
                "fallback search); this file is the closest partial variant, kept for inspection"
            )
            figures["gate"] = {**figures["gate"], "decision": "fail", "passed": False}
        elif int8_fraction == 0 and self.compute_ops:
            warning = "every compute op is in float: this variant is effectively FP32"
        return {
            "mode": mode,
            "name": VARIANT_NAMES[mode],
            "file": dst.name,
            "size_bytes": onnx_format.onnx_size(dst),
            "seconds": round(time.perf_counter() - started, 2),
            "accuracy": figures,
            "excluded_nodes": settings["exclude"],
            "int8_fraction": int8_fraction,
            "warning": warning,
            "fallback": search,
            "options": {k: v for k, v in settings.items() if k != "exclude"}
            if mode != "fp16"
            else {},
        }

    def _search(
        self, mode: str, dst: Path, base: Settings, figures: dict[str, Any], progress: Progress
    ) -> tuple[dict[str, Any], Settings, dict[str, Any], str]:
        """The fallback search (workflows.quantization.search); writes the chosen try to `dst`."""
        from workflows.quantization.fallback import rank_culprits
        from workflows.quantization.int8_diagnostics import diagnose
        from workflows.quantization.search import (
            Search,
            dynamic_knob_tries,
            first_and_last_compute_nodes,
            knob_tries,
        )

        work = self.work / "search"
        search = Search(
            # Calibration reports its batches without moving the bar (the search moves it).
            make=lambda settings, path: self.make(
                mode, path, settings, progress.scaled(progress.fraction, progress.fraction)
            ),
            measure=self.measure,
            cost=self.cost,
            rank=lambda path: rank_culprits(
                self.pre_path, path, self.calib.take(32), work / "rank"
            ),
            int8_fraction=lambda path: diagnose(path)["fraction_int8"],
            workdir=work,
            # Nodes are ranked with qdq_loss_debug, which reads QDQ (static) models only.
            max_rounds=self.opts.max_fallback_rounds if mode == "static" else 0,
            progress=progress,
        )
        if mode == "static":
            knobs = knob_tries(
                base,
                measured_on()["u8s8_saturation_risk"],
                first_and_last_compute_nodes(self.pre_path),
            )
        else:
            knobs = dynamic_knob_tries(base)
        found = search.run((dst, figures), base, knobs)
        onnx_format.copy_onnx(found["path"], dst.parent, dst.name)
        chosen = found["chosen"]
        settings = {**chosen["knobs"], "exclude": chosen["excluded_nodes"]}
        tries = [{k: v for k, v in t.items() if k != "figures"} for t in search.tries]
        naive = search.tries[0]
        report = {
            "outcome": found["outcome"],
            "chosen": chosen["try"],
            "tries": tries,
            "culprits": search.culprits,
            "cost": {
                "before": {k: naive[k] for k in ("size_bytes", "p50_ms")},
                "after": {k: chosen[k] for k in ("size_bytes", "p50_ms")},
            },
        }
        return report, settings, chosen["figures"], found["outcome"]


def quantize_model(
    model: Model, opts: QuantizeOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Write every requested variant of `model` (+ the float baseline and report.json) to opts.output."""
    progress = progress or null_progress()
    output = Path(opts.output)
    labels = read_labels(Path(opts.labels)) if opts.labels else None
    with atomic_dir(output) as out, scratch_dir(output) as work:
        float_path = out / f"{model.name}.fp32.onnx"
        if model.format == "onnx":
            onnx_format.copy_onnx(model.path, out, float_path.name)  # external data included
        else:
            from workflows.steps.convert import convert_model

            progress.update(0.02, f"Converting {model.format} to ONNX first")
            convert_model(model, float_path, progress=progress.scaled(0.02, 0.15))
        float_model = onnx_format.load(float_path)
        specs = float_model.inputs
        progress.update(0.16, "Loading calibration and evaluation data")
        calib, evaluation, held_out = calibration_and_evaluation(
            opts.calibration,
            opts.evaluation,
            specs,
            opts.preprocess,
            opts.calibration_samples,
            opts.evaluation_samples,
            opts.holdout,
            opts.seed,
            labels,
        )
        pre_path = work / "preprocessed.onnx"
        pre_status = quantizers.preprocess(float_path, pre_path)
        progress.update(0.2, "Measuring the float model")
        q = _Quantizer(opts, float_path, pre_path, float_model, calib, evaluation, work)
        fp32_size = onnx_format.onnx_size(float_path)
        variants = []
        for i, mode in enumerate(opts.modes):
            span = progress.scaled(
                0.2 + 0.75 * i / len(opts.modes), 0.2 + 0.75 * (i + 1) / len(opts.modes)
            )
            span.update(0.0, f"Quantizing: {VARIANT_NAMES[mode]}")
            v = q.variant(mode, out / f"{model.name}.{VARIANT_NAMES[mode]}.onnx", span)
            v["size_ratio"] = round(fp32_size / v["size_bytes"], 3)
            variants.append(v)
        report = jsonable(
            {
                "step": "quantize",
                "source": model.summary(),
                "float_model": {
                    "file": float_path.name,
                    "size_bytes": fp32_size,
                    "accuracy": q.baseline,
                },
                "preprocessing": pre_status,
                "calibration": {
                    "source": calib.source,
                    "samples": len(calib),
                    "synthetic": calib.synthetic,
                },
                "evaluation": {
                    "source": evaluation.source,
                    "samples": len(evaluation),
                    "synthetic": evaluation.synthetic,
                    "labelled": evaluation.y is not None,
                    "held_out": held_out,
                },
                "options": to_dict(opts),
                "variants": variants,
                # INT8 results depend on the CPU's INT8 kernels: every figure says where it
                # was measured.
                "measured_on": measured_on(),
            }
        )
        if evaluation.synthetic:
            report["warning"] = (
                "accuracy figures use synthetic inputs (no calibration or evaluation data was "
                "given): they show how far each variant deviates from the float model on noise, "
                "not task accuracy, so no variant is passed or failed and none falls back"
            )
        (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    progress.update(1.0, f"Wrote {len(variants)} variant(s) to {output}")
    report["output"] = str(output)
    return report


def run(options: QuantizeOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point: load the model the options name, then quantize it."""
    opts = from_dict(QuantizeOptions, options)
    if not opts.output:
        raise DataError("quantize: give an output folder (-o DIR)")
    check_replaceable(Path(opts.output))  # before any work: a user's folder is never replaced
    progress.update(0.01, f"Loading {opts.model.path}")
    return quantize_model(opts.model.load(), opts, progress)
