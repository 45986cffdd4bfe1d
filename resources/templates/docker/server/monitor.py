"""What the model sees, against what it was expected to see: drift monitoring of live traffic.

A reference profile (reference_profile.json in a version's folder) is made at export from data the
user says the model should see (its calibration or evaluation data). It holds, per input, a few per-sample
features — the sample's mean and standard deviation, and for a small tabular input each column —
with the reference's decile edges and its share in each of the ten bins, the input's value range,
and the share of each predicted class. The server bins every sample it runs into the same ten
bins and keeps exponentially decayed counts (half-life DRIFT_HALF_LIFE samples): constant memory
whatever the traffic, recent traffic weighted most. /metrics then reports, per feature, the
Population Stability Index (PSI) of live against reference (0.1: moderate, 0.25: significant
drift, the usual reading), the live and reference mean and quantiles, the share of values outside
the reference range, and the predicted class shares and their PSI.

The same functions make the profile at export (Dockyard loads this file) and compare at serving
time, so both sides compute the features identically. numpy only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

BINS = 10
TABULAR_COLUMNS = 32  # a [N, F] input with at most this many columns is profiled per column
EPSILON = 1e-4  # the smallest share a bin counts with: PSI stays finite for an empty bin
PSI_WARNING, PSI_ALERT = 0.1, 0.25
PROFILE_FILE = "reference_profile.json"


def features(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample features of one input's batch: {"mean": [N], "std": [N], "col3": [N], ...}."""
    x = np.asarray(batch)
    if x.dtype.kind not in "biuf" or x.ndim == 0:
        return {}
    x = x.reshape(len(x), -1)
    if x.shape[1] == 0:
        return {}
    if x.dtype.kind != "f":
        x = x.astype(np.float32)
    # Two passes over the data, in its own precision with float64 sums (a float64 copy of a
    # 224x224x3 image would cost more than the statistics).
    mean = x.mean(axis=1, dtype=np.float64)
    square = np.square(x).mean(axis=1, dtype=np.float64)
    found = {"mean": mean, "std": np.sqrt(np.maximum(square - mean * mean, 0.0))}
    if np.asarray(batch).ndim == 2 and 1 < x.shape[1] <= TABULAR_COLUMNS:
        found.update({f"col{i}": x[:, i].astype(np.float64) for i in range(x.shape[1])})
    return found


def predicted_classes(scores: np.ndarray) -> np.ndarray | None:
    """The argmax class of each row of a [N, C] float output (C >= 2); None for other outputs."""
    s = np.asarray(scores)
    if s.ndim != 2 or s.shape[1] < 2 or s.dtype.kind != "f":
        return None
    return s.argmax(axis=1)


def psi(live: np.ndarray, reference: np.ndarray) -> float:
    """Population Stability Index of two share vectors (each floored at EPSILON)."""
    p = np.maximum(np.asarray(live, np.float64), EPSILON)
    q = np.maximum(np.asarray(reference, np.float64), EPSILON)
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((p - q) * np.log(p / q)))


def build_profile(
    batches: Iterable[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]], source: str
) -> dict[str, Any]:
    """The reference profile from (inputs, outputs) batches of the reference data."""
    values: dict[str, dict[str, list[np.ndarray]]] = {}
    ranges: dict[str, list[float]] = {}
    classes: dict[str, list[np.ndarray]] = {}
    class_count: dict[str, int] = {}
    samples = 0
    for feeds, outputs in batches:
        samples += len(next(iter(feeds.values())))
        for name, batch in feeds.items():
            for feature, v in features(batch).items():
                values.setdefault(name, {}).setdefault(feature, []).append(v)
            x = np.asarray(batch)
            if x.dtype.kind in "biuf" and x.size:
                low, high = float(x.min()), float(x.max())
                old = ranges.get(name, [low, high])
                ranges[name] = [min(old[0], low), max(old[1], high)]
        for name, scores in outputs.items():
            predicted = predicted_classes(scores)
            if predicted is not None:
                classes.setdefault(name, []).append(predicted)
                class_count[name] = int(np.shape(scores)[1])
    inputs = {}
    for name, by_feature in values.items():
        profiled = {}
        for feature, parts in by_feature.items():
            v = np.concatenate(parts)
            edges = np.unique(np.quantile(v, np.linspace(0, 1, BINS + 1)[1:-1]))
            counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
            profiled[feature] = {
                "edges": edges.tolist(),
                "shares": (counts / counts.sum()).tolist(),
                "mean": float(v.mean()),
                "std": float(v.std()),
                "quantiles": {q: float(np.quantile(v, float(q))) for q in ("0.05", "0.5", "0.95")},
            }
        inputs[name] = {"features": profiled, "range": ranges.get(name)}
    outputs = {}
    for name, parts in classes.items():
        predicted = np.concatenate(parts)
        counts = np.bincount(predicted, minlength=class_count[name])
        outputs[name] = {
            "classes": class_count[name],
            "class_shares": (counts / len(predicted)).tolist(),
        }
    return {
        "source": source,
        "samples": samples,
        "bins": BINS,
        "inputs": inputs,
        "outputs": outputs,
    }


class _Histogram:
    """Exponentially decayed counts of one feature in the reference's bins."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.edges = np.asarray(spec["edges"], np.float64)
        self.reference = np.asarray(spec["shares"], np.float64)
        self.counts = np.zeros(len(self.reference))
        self.total = 0.0  # decayed sum of the feature, for its live mean
        self.spec = spec

    def add(self, values: np.ndarray, decay: float) -> None:
        keep = decay ** len(values)
        self.counts *= keep
        self.counts += np.bincount(
            np.searchsorted(self.edges, values, side="right"), minlength=len(self.counts)
        )
        self.total = self.total * keep + float(np.sum(values))

    def quantile(self, q: float) -> float:
        """The q-quantile of live traffic, read off the bins (linear within a bin; the outer
        bins are bounded by the reference's 5th and 95th percentiles' spread)."""
        cumulative = np.cumsum(self.counts) / self.counts.sum()
        i = int(np.searchsorted(cumulative, q))
        edges = self.edges
        low = edges[i - 1] if i > 0 else edges[0] - (edges[-1] - edges[0]) / BINS
        high = edges[i] if i < len(edges) else edges[-1] + (edges[-1] - edges[0]) / BINS
        before = cumulative[i - 1] if i > 0 else 0.0
        width = cumulative[i] - before
        return float(low + (high - low) * ((q - before) / width if width > 0 else 0.5))


class Monitor:
    """Live traffic against a reference profile; thread-safe, constant memory."""

    def __init__(self, profile: dict[str, Any], half_life: float = 500.0) -> None:
        self.profile = profile
        self.decay = 0.5 ** (1.0 / max(1.0, half_life))
        self.lock = threading.Lock()
        self.weight = 0.0  # decayed sample count
        self.histograms = {
            (name, feature): _Histogram(spec)
            for name, entry in profile["inputs"].items()
            for feature, spec in entry["features"].items()
        }
        self.outside = {name: 0.0 for name in profile["inputs"]}  # decayed out-of-range shares
        self.classes = {
            name: np.zeros(len(entry["class_shares"])) for name, entry in profile["outputs"].items()
        }

    @classmethod
    def load(cls, model_dir: Path, half_life: float) -> Monitor | None:
        """The monitor for model_dir's reference profile; None when the export made none."""
        path = model_dir / PROFILE_FILE
        return cls(json.loads(path.read_text()), half_life) if path.exists() else None

    def observe(self, feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
        """Count one model run's samples (a batch of any size)."""
        first = next(iter(feeds.values()), None)
        if first is None or not len(first):
            return
        n = len(first)
        computed = {name: features(feeds[name]) for name in self.outside if name in feeds}
        shares = {}
        for name, entry in self.profile["inputs"].items():
            if name in feeds and entry.get("range"):
                x = np.asarray(feeds[name]).reshape(n, -1)
                low, high = entry["range"]
                share = np.zeros(n)
                # Counted only in the rows that leave the range (most rows do not).
                outside = (x.min(axis=1) < low) | (x.max(axis=1) > high)
                if outside.any():
                    rows = x[outside]
                    share[outside] = ((rows < low) | (rows > high)).mean(axis=1)
                shares[name] = float(share.mean())
        predicted = {
            name: predicted_classes(outputs[name]) for name in self.classes if name in outputs
        }
        with self.lock:
            keep = self.decay**n
            self.weight = self.weight * keep + n
            for (name, feature), histogram in self.histograms.items():
                values = computed.get(name, {}).get(feature)
                if values is not None:
                    histogram.add(values, self.decay)
            for name, share in shares.items():
                self.outside[name] = self.outside[name] * keep + share * n
            for name, classes in predicted.items():
                if classes is None:
                    continue
                counts = self.classes[name]
                counts *= keep
                classes = classes[classes < len(counts)]
                counts += np.bincount(classes, minlength=len(counts))

    def snapshot(self) -> dict[str, Any]:
        """Everything /metrics reports, computed now."""
        with self.lock:
            weight = self.weight
            rows: list[dict[str, Any]] = []
            for (name, feature), h in self.histograms.items():
                if h.counts.sum() <= 0:
                    continue
                spec = h.spec
                live = h.counts / h.counts.sum()
                rows.append(
                    {
                        "input": name,
                        "feature": feature,
                        "psi": psi(live, h.reference),
                        "live": {
                            "mean": h.total / h.counts.sum(),
                            **{q: h.quantile(float(q)) for q in ("0.05", "0.5", "0.95")},
                        },
                        "reference": {"mean": spec["mean"], **spec["quantiles"]},
                    }
                )
            outside = {n: (v / weight if weight else 0.0) for n, v in self.outside.items()}
            predictions = []
            for name, counts in self.classes.items():
                if counts.sum() <= 0:
                    continue
                reference = np.asarray(self.profile["outputs"][name]["class_shares"])
                live = counts / counts.sum()
                predictions.append(
                    {"output": name, "psi": psi(live, reference), "shares": live.tolist()}
                )
        return {"samples": weight, "features": rows, "outside": outside, "outputs": predictions}


def metric_families(monitors: dict[str, Monitor]) -> Iterator[Any]:
    """Prometheus metric families of each served version's snapshot (a custom collector's
    collect()), labelled with the version."""
    from prometheus_client.core import GaugeMetricFamily

    samples = GaugeMetricFamily(
        "dockyard_drift_samples",
        "Samples behind the drift figures (exponentially decayed)",
        labels=["version"],
    )
    drift = GaugeMetricFamily(
        "dockyard_drift_psi",
        f"Population Stability Index of an input feature, live against the reference profile "
        f"({PSI_WARNING}: moderate, {PSI_ALERT}: significant)",
        labels=["version", "input", "feature"],
    )
    stats = GaugeMetricFamily(
        "dockyard_input_feature",
        "A per-sample input feature's mean and quantiles, live and in the reference profile",
        labels=["version", "input", "feature", "stat", "traffic"],
    )
    outside = GaugeMetricFamily(
        "dockyard_input_out_of_range_share",
        "Share of an input's values outside the range seen in the reference profile",
        labels=["version", "input"],
    )
    prediction = GaugeMetricFamily(
        "dockyard_prediction_drift_psi",
        "Population Stability Index of the predicted classes, live against the reference",
        labels=["version", "output"],
    )
    shares = GaugeMetricFamily(
        "dockyard_prediction_class_share",
        "Share of live predictions per class (exponentially decayed)",
        labels=["version", "output", "class"],
    )
    for version, monitor in monitors.items():
        snap = monitor.snapshot()
        samples.add_metric([version], snap["samples"])
        for row in snap["features"]:
            drift.add_metric([version, row["input"], row["feature"]], row["psi"])
            for traffic in ("live", "reference"):
                for stat, value in row[traffic].items():
                    label = "mean" if stat == "mean" else f"p{round(float(stat) * 100):02d}"
                    stats.add_metric([version, row["input"], row["feature"], label, traffic], value)
        for name, share in snap["outside"].items():
            outside.add_metric([version, name], share)
        for row in snap["outputs"]:
            prediction.add_metric([version, row["output"]], row["psi"])
            for i, share in enumerate(row["shares"]):
                shares.add_metric([version, row["output"], str(i)], share)
    yield from (samples, drift, stats, outside, prediction, shares)


class MonitorCollector:
    """A prometheus_client collector: the figures are computed when /metrics is read."""

    def __init__(self, monitors: dict[str, Monitor]) -> None:
        self.monitors = monitors

    def collect(self) -> Iterator[Any]:
        yield from metric_families(self.monitors)
