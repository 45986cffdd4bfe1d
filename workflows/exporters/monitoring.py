"""The Docker export's monitoring: the drift reference profile made from the user's data, and a
Grafana dashboard for the server's metrics (the Prometheus alert rules are a template,
resources/templates/docker/monitoring/alerts.yaml)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from workflows.data import Preprocess, load_dataset
from workflows.resources import resource

REFERENCE_SAMPLES = 2000  # enough for stable deciles; more only costs export time
DATASOURCE = "${datasource}"


def server_monitor() -> ModuleType:
    """The exported server's own monitor module (server/monitor.py), so that the profile made
    here and the comparison made there compute the features identically."""
    path = resource("templates", "docker", "server", "monitor.py")
    spec = importlib.util.spec_from_file_location("dockyard_server_monitor", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_profile(
    source: str, specs: list[Any], preprocess: Preprocess | None, run: Any, names: list[str]
) -> dict[str, Any]:
    """The reference profile of `source` (.npz, .npy, an image or image folder): its inputs'
    features and `run`'s predicted classes, from up to REFERENCE_SAMPLES samples."""
    data = load_dataset(source, specs, preprocess, limit=REFERENCE_SAMPLES)

    def batches():
        for feeds in data.batches(64):
            yield feeds, dict(zip(names, run(feeds), strict=True))

    return server_monitor().build_profile(batches(), Path(source).name)


def _panel(
    title: str, targets: list[tuple[str, str]], x: int, y: int, unit: str = "short", **extra: Any
) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": DATASOURCE},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit, **extra.pop("defaults", {})}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": {"type": "prometheus", "uid": DATASOURCE},
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(targets)
        ],
        **extra,
    }


def _thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    return {
        "thresholds": {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]},
        "custom": {"thresholdsStyle": {"mode": "line"}},
    }


def grafana_dashboard(model_name: str) -> dict[str, Any]:
    """A Grafana dashboard (JSON model) of the server's metrics: throughput, latency, errors,
    batching, and the drift figures when the export has a reference profile."""
    infer = '{endpoint=~"/v2/models/.*infer"}'  # with and without /versions/{version}
    panels = [
        _panel("Requests per second", [
            ("sum by (endpoint, status) (rate(dockyard_requests_total[1m]))",
             "{{endpoint}} {{status}}"),
        ], 0, 0, "reqps"),
        _panel("Latency (v2 infer)", [
            (f"histogram_quantile(0.5, sum by (le) (rate(dockyard_request_seconds_bucket{infer}[5m])))",
             "p50"),
            (f"histogram_quantile(0.99, sum by (le) (rate(dockyard_request_seconds_bucket{infer}[5m])))",
             "p99"),
            ("histogram_quantile(0.5, sum by (version, le) "
             "(rate(dockyard_inference_seconds_bucket[5m])))", "model run p50, version {{version}}"),
        ], 12, 0, "s"),
        _panel("Errors", [
            ('sum(rate(dockyard_requests_total{status=~"5.."}[5m])) '
             "/ sum(rate(dockyard_requests_total[5m]))", "server errors (5xx)"),
            ('sum(rate(dockyard_requests_total{status=~"4.."}[5m])) '
             "/ sum(rate(dockyard_requests_total[5m]))", "client errors (4xx)"),
        ], 0, 8, "percentunit"),
        _panel("Dynamic batching", [
            ("rate(dockyard_batch_rows_sum[5m]) / rate(dockyard_batch_rows_count[5m])",
             "rows per run"),
            ("rate(dockyard_batch_requests_sum[5m]) / rate(dockyard_batch_requests_count[5m])",
             "requests per run"),
            ("histogram_quantile(0.99, sum by (le) (rate(dockyard_queue_seconds_bucket[5m]))) * 1000",
             "queue p99 (ms)"),
        ], 12, 8),
        _panel("Input drift (PSI; 0.1 moderate, 0.25 significant)", [
            ("dockyard_drift_psi", "v{{version}} {{input}} {{feature}}"),
        ], 0, 16, defaults=_thresholds((None, "green"), (0.1, "orange"), (0.25, "red"))),
        _panel("Prediction drift (PSI) and out-of-range inputs", [
            ("dockyard_prediction_drift_psi", "v{{version}} predictions {{output}}"),
            ("dockyard_input_out_of_range_share", "v{{version}} {{input}} out of range"),
        ], 12, 16, defaults=_thresholds((None, "green"), (0.25, "red"))),
        _panel("Predicted class shares", [
            ("dockyard_prediction_class_share", "v{{version}} class {{class}}"),
        ], 0, 24, "percentunit"),
        _panel("Input features: live against reference", [
            ('dockyard_input_feature{stat="mean"}', "v{{version}} {{input}} {{feature}} {{traffic}}"),
        ], 12, 24),
    ]  # fmt: skip
    for i, panel in enumerate(panels, start=1):
        panel["id"] = i
    return {
        "title": f"Dockyard: {model_name}",
        "uid": f"dockyard-{model_name}"[:40],
        "tags": ["dockyard", "inference"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def write_dashboard(folder: Path, model_name: str) -> Path:
    """monitoring/dashboard.json (import it in Grafana: Dashboards > New > Import)."""
    path = folder / "monitoring" / "dashboard.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(grafana_dashboard(model_name), indent=2))
    return path
