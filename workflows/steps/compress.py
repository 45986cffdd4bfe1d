"""Compress an ONNX model's weights for size: magnitude pruning to a target sparsity (sparse
layers re-solved on calibration inputs), or weight clustering to k shared values, each layer's
level chosen by sensitivity analysis.

Sensitivity: every layer alone is compressed at every level and judged on the evaluation data.
Sparsity is then spread greedily (the cheapest next level first) until the target share of zeros
is reached; clustering takes the fewest values wherever a layer alone stays within a loss
threshold. The whole model is judged with the accuracy gate; when it fails, a binary search looks
below the target (or lowers the threshold) for the most compressed model that passes. Sizes are
reported raw and zipped; latency is measured, never assumed.
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
from workflows.compression.figure import figure, figure_name
from workflows.data import Dataset, Preprocess, calibration_and_evaluation, read_labels
from workflows.errors import DataError
from workflows.jsonable import jsonable
from workflows.latency import onnx_p50
from workflows.machine import measured_on
from workflows.metrics import compare
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
    calibration: str | None = option(
        None, "Unlabelled inputs for layer-wise reconstruction of sparse layers (image folder, "
        ".npy, .npz); without them the remaining weights stay as they were"
    )  # fmt: skip
    calibration_samples: int = option(256, "Calibration samples for reconstruction")
    reconstruct: bool = option(
        True, "Re-solve each sparse layer's remaining weights to keep its outputs on the "
        "calibration data (needs --calibration)"
    )  # fmt: skip
    holdout: float = option(
        0.5, "Without --evaluation: the share of --calibration held out to judge on"
    )
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
        self.figure_name = figure_name(self.reference, evaluation.y is not None)
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
        return figure(self.figure_name, self.reference, outputs, self.evaluation.y)

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


def _greedy(sens: dict[str, dict[float, float]], levels: tuple[float, ...],
            layers: list[W.Layer], target: float) -> dict[str, float]:  # fmt: skip
    """Raise layers one level at a time until `target` of all weights are zeros: always the step
    whose single-layer loss is lowest, then the lowest level (spread the zeros), then the smallest
    layer (overshoot the target least)."""
    at = {layer.name: 0 for layer in layers}

    def chosen() -> dict[str, float]:
        return {name: levels[i] for name, i in at.items()}

    while _overall(layers, chosen()) < target:
        steps = [(sens[layer.name][levels[at[layer.name] + 1]], levels[at[layer.name] + 1],
                  layer.size, layer.name) for layer in layers
                 if at[layer.name] + 1 < len(levels)]  # fmt: skip
        if not steps:
            break
        at[min(steps)[3]] += 1
    return chosen()


class _Variant:
    """One method's search: sensitivity table, threshold, tries, the chosen model."""

    def __init__(self, method: str, proto: Any, layers: list[W.Layer], scorer: _Scorer,
                 opts: CompressOptions, calibration: list[dict[str, np.ndarray]]) -> None:  # fmt: skip
        self.method, self.proto, self.layers, self.scorer, self.opts = (
            method, proto, layers, scorer, opts
        )  # fmt: skip
        # Reconstruction of sparse layers needs real inputs; clustering needs none.
        self.calibration = calibration if method == "sparsity" and opts.reconstruct else []
        self.originals = W.weights(proto, layers)
        self.levels = _levels(method, opts)
        self.tries: list[dict[str, Any]] = []
        self._grams: dict[str, np.ndarray] = {}

    def _gram(self, layer: W.Layer, proto: Any) -> np.ndarray:
        return W.gram(layer, W.layer_input(proto, layer, self.calibration), self.opts.seed)

    def _compressed(self, layer: W.Layer, level: float, gram: np.ndarray | None) -> np.ndarray:
        w = self.originals[layer.name]
        if self.method == "cluster":
            return W.cluster(w, int(level), self.opts.seed)
        if gram is not None:
            return W.reconstruct(layer, w, gram, float(level))
        return W.magnitude_prune(w, float(level))

    def _reconstructs(self, layer: W.Layer) -> bool:
        return bool(self.calibration) and layer.reconstructible

    def alone(self, layer: W.Layer, level: float) -> Any:
        """The original with only `layer` compressed (for sensitivity): reconstructed against
        the original model's inputs to that layer."""
        gram = None
        if self._reconstructs(layer):
            if layer.name not in self._grams:
                self._grams[layer.name] = self._gram(layer, self.proto)
            gram = self._grams[layer.name]
        return W.replaced(self.proto, {layer.name: self._compressed(layer, level, gram)})

    def model(self, levels: dict[str, float]) -> Any:
        """Every layer at its level. Sparse layers are reconstructed in graph order, each against
        its inputs in the model compressed so far (later layers then make up for earlier ones)."""
        current = self.proto
        for layer in self.layers:
            level = levels.get(layer.name)
            if not level:
                continue
            gram = self._gram(layer, current) if self._reconstructs(layer) else None
            current = W.replaced(current, {layer.name: self._compressed(layer, level, gram)})
        return current

    def sensitivity(self, progress: Progress) -> dict[str, dict[float, float]]:
        sens: dict[str, dict[float, float]] = {}
        total = len(self.layers) * (len(self.levels) - 1)
        done = 0
        for layer in self.layers:
            losses = {self.levels[0]: 0.0}
            # From the most compressed level down: once a level costs nothing, the gentler ones
            # are taken to cost nothing too (and are not run: for a wide layer, reconstructing at
            # 50 % is the slowest of all).
            free = False
            for level in reversed(self.levels[1:]):
                losses[level] = 0.0 if free else self.scorer.loss(self.alone(layer, level))
                free = free or losses[level] <= 0.0
                done += 1
                progress.update(done / total, f"Sensitivity: {layer.node} at {self._say(level)}")
            sens[layer.name] = {level: losses[level] for level in self.levels}
        return sens

    def _say(self, level: float) -> str:
        return f"{level:.0%} zeros" if self.method == "sparsity" else f"{int(level)} values"

    def _try(self, levels: dict[str, float], **label: float) -> dict[str, Any]:
        proto = self.model(levels)
        figures = self.scorer.judge(proto)
        entry = {**label, "levels": levels, "figures": figures, "proto": proto,
                 "decision": figures["gate"]["decision"]}  # fmt: skip
        if self.method == "sparsity":
            entry["sparsity"] = round(_overall(self.layers, levels), 4)
        self.tries.append(entry)
        return entry

    def search(self, sens: dict[str, dict[float, float]], progress: Progress) -> dict[str, Any]:
        """The target allocation, or, when it fails the gate, the most compressed one below it
        that passes (binary search: on the target sparsity, or on the per-layer loss threshold
        for clustering)."""
        if self.method == "sparsity":

            def plan(x: float) -> dict[str, float]:
                return _greedy(sens, self.levels, self.layers, x)

            def label(x: float) -> dict[str, float]:
                return {"target": round(x, 4)}

            points: list[float] = list(np.linspace(0.0, self.opts.sparsity, 17))
        else:

            def plan(x: float) -> dict[str, float]:
                return _allocation(sens, self.levels, x)

            def label(x: float) -> dict[str, float]:
                return {"threshold": x}

            points = sorted({v for losses in sens.values() for v in losses.values()} | {0.0})
        first = self._try(plan(points[-1]), **label(points[-1]))
        if first["decision"] != "fail":
            return {**first, "outcome": "target met" if first["decision"] == "pass" else
                    "target kept (gate inconclusive)"}  # fmt: skip
        low, high = (
            0,
            len(points) - 1,
        )  # points[low] passes (nothing compressed), points[high] fails
        best = None
        while high - low > 1:
            progress.update(0.5, f"Gate failed: trying less compression ({len(self.tries)})")
            mid = (low + high) // 2
            entry = self._try(plan(points[mid]), **label(points[mid]))
            if entry["decision"] == "fail":
                high = mid
            else:
                best, low = entry, mid
        if best is None:
            return {**first, "outcome": "failed: no allocation passes the gate"}
        return {**best, "outcome": "below target (the target failed the gate)"}


def compress_model(
    model: Model, opts: CompressOptions, progress: Progress | None = None
) -> dict[str, Any]:
    """Write each requested compressed variant of `model` (+ the float original, report.json)."""
    import onnx

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
        calib, evaluation, held_out = calibration_and_evaluation(
            opts.calibration, opts.evaluation, float_model.inputs, opts.preprocess,
            opts.calibration_samples, opts.evaluation_samples, opts.holdout, opts.seed, labels,
        )  # fmt: skip
        calibration = [] if calib.synthetic else list(calib.batches(64))
        scorer = _Scorer(proto, evaluation, opts)
        feeds = next(evaluation.batches(1))
        original = {"file": float_path.name, "size_bytes": onnx_format.onnx_size(float_path),
                    "zip_bytes": W.zip_size(onnx_format.onnx_files(float_path)),
                    "figure": scorer.baseline, "latency": onnx_p50(float_path, feeds)}  # fmt: skip
        variants = []
        for i, method in enumerate(opts.methods):
            span = progress.scaled(0.1 + 0.85 * i / len(opts.methods),
                                   0.1 + 0.85 * (i + 1) / len(opts.methods))  # fmt: skip
            variant = _Variant(method, proto, layers, scorer, opts, calibration)
            sens = variant.sensitivity(span.scaled(0.0, 0.7))
            chosen = variant.search(sens, span.scaled(0.7, 0.95))
            name = "sparse" if method == "sparsity" else "clustered"
            path = out / f"{model.name}.{name}.onnx"
            compressed = chosen["proto"]  # the model judged, not a remake
            onnx.save_model(compressed, str(path))
            zipped = W.zip_size([path])
            variants.append({
                "method": method,
                "name": name,
                "file": path.name,
                "outcome": chosen["outcome"],
                "reconstructed": bool(variant.calibration),
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
                "tries": [{k: v for k, v in t.items() if k not in ("levels", "figures", "proto")}
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
                           "labelled": evaluation.y is not None, "held_out": held_out},
            "calibration": {"source": calib.source, "samples": len(calib),
                            "synthetic": calib.synthetic},
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
