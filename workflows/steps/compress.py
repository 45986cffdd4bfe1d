"""Compress an ONNX model's weights for size: magnitude pruning to a target sparsity, or weight
clustering to k shared values, each layer's share chosen by sensitivity analysis.

Sensitivity: every layer alone is compressed at every level and judged on the evaluation data;
one threshold on that per-layer loss then picks each layer's level (a sensitive layer stays
gentle, a robust one goes further) until the target is met. The whole model is then judged with
the accuracy gate; when it fails, the threshold is lowered (binary search) to the most compressed
model that passes. Sizes are reported raw and zipped; latency is measured, never assumed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workflows.atomic import atomic_dir, check_replaceable
from workflows.compression import weights as W
from workflows.data import Dataset, Preprocess, load_dataset, read_labels
from workflows.errors import DataError
from workflows.jsonable import jsonable
from workflows.latency import onnx_p50
from workflows.machine import measured_on
from workflows.metrics import compare, looks_like_class_scores
from workflows.model import Model
from workflows.options import LoadOptions, Options, from_dict, option, to_dict
from workflows.progress import Progress, null_progress
from workflows.quantization.gate import MIN_SQNR_DB, judge

METHODS = ("sparsity", "cluster")
RUNTIME_NOTE = (
    "ONNX Runtime stores and runs these weights as dense tensors: the file is the same size until "
    "compressed (zip, a container layer, an app download) and inference is as fast as the "
    "original's (both measured above). TFLite's XNNPACK can run sparse weights faster only for "
    "models converted with sparsity kept (not done here)."
)


@dataclass
class CompressOptions(Options):
    """Options of the compress step."""

    model: LoadOptions = option(None, "The model to compress (converted to ONNX first if needed)")
    output: str = option("", "Folder for the compressed variants and report.json")
    methods: list[str] = option(
        ["sparsity"], "sparsity (magnitude pruning) and/or cluster (weight sharing)",
        choices=METHODS,
    )  # fmt: skip
    sparsity: float = option(0.8, "Target share of zeros in the weights (0..1), across layers")
    clusters: int = option(16, "Shared values per layer at most (weight clustering)")
    evaluation: str | None = option(
        None, "Data to judge on (labelled .npz or class folders; unlabelled: agreement with "
        "the original)"
    )  # fmt: skip
    evaluation_samples: int | None = option(512, "Evaluation samples to use (all if empty)")
    labels: str | None = option(None, "Label names file, one per line")
    preprocess: Preprocess = option(Preprocess(), "How images become input tensors")
    max_accuracy_drop: float = option(1.0, "Accuracy gate: largest allowed top-1 drop, in points")
    confidence: float = option(0.95, "Accuracy gate: confidence of its intervals")
    min_sqnr_db: float = option(
        MIN_SQNR_DB, "Accuracy gate for outputs that are not class scores: lowest mean SQNR, dB"
    )
    min_weights: int = option(W.MIN_WEIGHTS, "Leave weight tensors smaller than this alone")
    seed: int = option(0, "Seed for synthetic data and k-means")


class _Scorer:
    """Runs any variant on the evaluation data: its figure (for sensitivity) and its gate."""

    def __init__(self, proto: Any, evaluation: Dataset, opts: CompressOptions) -> None:
        self.evaluation, self.opts = evaluation, opts
        self.reference = self.outputs(proto)
        if evaluation.y is not None and looks_like_class_scores(self.reference[0]):
            self.figure_name = "top-1 %"
        elif looks_like_class_scores(self.reference[0]) and len(self.reference) == 1:
            self.figure_name = "top-1 agreement %"
        else:
            self.figure_name = "mean SQNR dB"
        self.baseline = self.figure(self.reference)

    def outputs(self, proto: Any) -> list[np.ndarray]:
        import onnxruntime as ort

        from workflows.quantization.accuracy import predict

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(
            proto.SerializeToString(), so, providers=["CPUExecutionProvider"]
        )
        return predict(lambda feeds: sess.run(None, feeds), self.evaluation)

    def figure(self, outputs: list[np.ndarray]) -> float:
        if self.figure_name == "top-1 %":
            assert self.evaluation.y is not None
            return float(100 * np.mean(outputs[0].argmax(1) == self.evaluation.y))
        if self.figure_name == "top-1 agreement %":
            return float(100 * np.mean(outputs[0].argmax(1) == self.reference[0].argmax(1)))
        sqnr = [min(compare(r, c)["sqnr_db"], 200.0) for r, c in zip(self.reference, outputs,
                                                                       strict=True)]  # fmt: skip
        return float(np.mean(sqnr))

    def loss(self, proto: Any) -> float:
        """How much worse than the original (points, or dB for SQNR)."""
        return round(self.baseline - self.figure(self.outputs(proto)), 6)

    def judge(self, proto: Any) -> dict[str, Any]:
        outputs = self.outputs(proto)
        o = self.opts
        figures: dict[str, Any] = {"samples": len(self.evaluation), "figure": self.figure(outputs)}
        if self.evaluation.y is not None and self.figure_name == "top-1 %":
            figures["top1"] = figures["figure"] / 100
        figures["deviation"] = compare(self.reference[0], outputs[0])
        figures["gate"] = judge(self.reference, outputs, self.evaluation.y,
                                self.evaluation.synthetic, o.max_accuracy_drop, o.confidence,
                                o.min_sqnr_db)  # fmt: skip
        return figures


def _levels(method: str, opts: CompressOptions) -> tuple[float, ...]:
    if method == "sparsity":
        return W.SPARSITY_LEVELS
    return tuple(k for k in W.CLUSTER_LEVELS if k == 0 or k >= opts.clusters) + (
        (opts.clusters,) if opts.clusters not in W.CLUSTER_LEVELS else ()
    )


def _allocation(
    sens: dict[str, dict[float, float]], levels: tuple[float, ...], tau: float
) -> dict[str, float]:
    """Each layer's most compressed level whose loss, and every gentler level's, is <= tau."""
    chosen = {}
    for name, losses in sens.items():
        level = levels[0]
        for candidate in levels[1:]:
            if losses[candidate] > tau:
                break
            level = candidate
        chosen[name] = level
    return chosen


def _overall(layers: list[W.Layer], levels: dict[str, float]) -> float:
    total = sum(layer.size for layer in layers)
    return sum(layer.size * levels[layer.name] for layer in layers) / max(total, 1)


class _Variant:
    """One method's search: sensitivity table, threshold, tries, the chosen model."""

    def __init__(self, method: str, proto: Any, layers: list[W.Layer], scorer: _Scorer,
                 opts: CompressOptions) -> None:  # fmt: skip
        self.method, self.proto, self.layers, self.scorer, self.opts = (
            method, proto, layers, scorer, opts
        )  # fmt: skip
        self.originals = W.weights(proto, layers)
        self.levels = _levels(method, opts)
        self.tries: list[dict[str, Any]] = []

    def model(self, levels: dict[str, float]) -> Any:
        return W.apply(self.proto, self.originals, self.method, levels, self.opts.seed)

    def sensitivity(self, progress: Progress) -> dict[str, dict[float, float]]:
        sens: dict[str, dict[float, float]] = {}
        total = len(self.layers) * (len(self.levels) - 1)
        done = 0
        for layer in self.layers:
            sens[layer.name] = {self.levels[0]: 0.0}
            for level in self.levels[1:]:
                sens[layer.name][level] = self.scorer.loss(self.model({layer.name: level}))
                done += 1
                progress.update(done / total, f"Sensitivity: {layer.node} at {self._say(level)}")
        return sens

    def _say(self, level: float) -> str:
        return f"{level:.0%} zeros" if self.method == "sparsity" else f"{int(level)} values"

    def _try(self, tau: float, sens: dict[str, dict[float, float]]) -> dict[str, Any]:
        levels = _allocation(sens, self.levels, tau)
        figures = self.scorer.judge(self.model(levels))
        entry = {"threshold": tau, "levels": levels, "figures": figures,
                 "decision": figures["gate"]["decision"]}  # fmt: skip
        if self.method == "sparsity":
            entry["sparsity"] = round(_overall(self.layers, levels), 4)
        self.tries.append(entry)
        return entry

    def search(self, sens: dict[str, dict[float, float]], progress: Progress) -> dict[str, Any]:
        """The most compressed allocation (down from the target) that passes the gate."""
        taus = sorted({v for losses in sens.values() for v in losses.values()} | {0.0})
        if self.method == "sparsity":
            reach = [t for t in taus if _overall(self.layers, _allocation(sens, self.levels, t))
                     >= self.opts.sparsity]  # fmt: skip
            target = reach[0] if reach else taus[-1]
        else:
            target = taus[-1]  # every layer at the fewest values
        first = self._try(target, sens)
        if first["decision"] != "fail":
            return {**first, "outcome": "target met" if first["decision"] == "pass" else
                    "target kept (gate inconclusive)"}  # fmt: skip
        # Lower the threshold: binary search for the largest that passes (0 leaves layers whose
        # single-layer loss is above zero alone, the gentlest there is).
        low, high = 0, taus.index(target)
        best = None
        while low < high:
            progress.update(
                0.5, f"Gate failed: lowering the per-layer threshold ({len(self.tries)})"
            )
            mid = (low + high) // 2
            entry = self._try(taus[mid], sens)
            if entry["decision"] == "fail":
                high = mid
            else:
                best, low = entry, mid + 1
        if best is None:
            return {**first, "outcome": "failed: no allocation passes the gate"}
        return {**best, "outcome": "below target (the target failed the gate)"}


def compress_model(
    model: Model, opts: CompressOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Write each requested compressed variant of `model` (+ the float original, report.json)."""
    from workflows.formats import onnx_format

    progress = progress or null_progress()
    started = time.perf_counter()
    output = Path(opts.output)
    labels = read_labels(Path(opts.labels)) if opts.labels else None
    with atomic_dir(output) as out:
        float_path = out / f"{model.name}.fp32.onnx"
        if model.format == "onnx":
            onnx_format.copy_onnx(model.path, out, float_path.name)
        else:
            from workflows.steps.convert import convert_model

            progress.update(0.02, f"Converting {model.format} to ONNX first")
            convert_model(model, float_path, progress=progress.scaled(0.02, 0.1))
        float_model = onnx_format.load(float_path)
        proto = onnx_format.read_proto(float_path)
        layers = W.weight_layers(proto, opts.min_weights)
        if not layers:
            raise DataError(
                f"{model.path}: no Conv/Gemm/MatMul weight with {opts.min_weights} values or "
                "more: nothing to compress"
            )
        evaluation = load_dataset(opts.evaluation, float_model.inputs, opts.preprocess,
                                  opts.evaluation_samples, opts.seed,
                                  label_names=labels).in_memory()  # fmt: skip
        scorer = _Scorer(proto, evaluation, opts)
        feeds = next(evaluation.batches(1))
        original = {"file": float_path.name, "size_bytes": onnx_format.onnx_size(float_path),
                    "zip_bytes": W.zip_size(onnx_format.onnx_files(float_path)),
                    "figure": scorer.baseline, "latency": onnx_p50(float_path, feeds)}  # fmt: skip
        variants = []
        for i, method in enumerate(opts.methods):
            span = progress.scaled(0.1 + 0.85 * i / len(opts.methods),
                                   0.1 + 0.85 * (i + 1) / len(opts.methods))  # fmt: skip
            variant = _Variant(method, proto, layers, scorer, opts)
            sens = variant.sensitivity(span.scaled(0.0, 0.7))
            chosen = variant.search(sens, span.scaled(0.7, 0.95))
            name = "sparse" if method == "sparsity" else "clustered"
            path = out / f"{model.name}.{name}.onnx"
            from onnx import save_model

            compressed = variant.model(chosen["levels"])
            save_model(compressed, str(path))
            zipped = W.zip_size([path])
            variants.append({
                "method": method,
                "name": name,
                "file": path.name,
                "outcome": chosen["outcome"],
                "sparsity": round(W.sparsity_of(compressed, layers), 4),
                "size_bytes": path.stat().st_size,
                "zip_bytes": zipped,
                "zip_ratio": round(original["zip_bytes"] / max(zipped, 1), 3),
                "accuracy": chosen["figures"],
                "latency": onnx_p50(path, feeds),
                "layers": [
                    {"name": layer.name, "node": layer.node, "op": layer.op,
                     "weights": layer.size, "level": chosen["levels"][layer.name],
                     "sensitivity": {str(k): v for k, v in sens[layer.name].items()}}
                    for layer in layers
                ],
                "tries": [{k: v for k, v in t.items() if k not in ("levels", "figures")}
                          | {"figure": t["figures"]["figure"]} for t in variant.tries],
            })  # fmt: skip
        report = jsonable({
            "step": "compress",
            "source": model.summary(),
            "original": original,
            "figure_name": scorer.figure_name,
            "variants": variants,
            "evaluation": {"source": evaluation.source, "samples": len(evaluation),
                           "synthetic": evaluation.synthetic,
                           "labelled": evaluation.y is not None},
            "runtime_note": RUNTIME_NOTE,
            "options": to_dict(opts),
            "seconds": round(time.perf_counter() - started, 2),
            "measured_on": measured_on(),
        })  # fmt: skip
        if evaluation.synthetic:
            report["warning"] = (
                "judged on synthetic inputs: the per-layer choices follow deviation on noise, "
                "and no gate verdict is given; pass --evaluation with real inputs"
            )
        (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    progress.update(1.0, f"Wrote {len(variants)} compressed variant(s) to {output}")
    report["output"] = str(output)
    return report


def run(options: CompressOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point: load the model the options name, then compress its weights."""
    opts = from_dict(CompressOptions, options)
    if not opts.output:
        raise DataError("compress: give an output folder (-o DIR)")
    if not 0.0 < opts.sparsity < 1.0:
        raise DataError(f"compress: --sparsity must be between 0 and 1, got {opts.sparsity}")
    if opts.clusters < 2:
        raise DataError(f"compress: --clusters must be 2 or more, got {opts.clusters}")
    check_replaceable(Path(opts.output))
    progress.update(0.01, f"Loading {opts.model.path}")
    return compress_model(opts.model.load(), opts, progress)
