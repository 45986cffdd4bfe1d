"""Drift monitoring of the exported server (issue #14 item 5): a reference profile made at export,
PSI of live traffic against it in /metrics, constant memory, and the Grafana dashboard and
Prometheus alert rules that come with the export."""

from __future__ import annotations

import json
import re
import tracemalloc

import numpy as np
import pytest
import yaml

from workflows.exporters.docker import DockerExportOptions, export_docker
from workflows.exporters.model_versions import model_folder
from workflows.exporters.monitoring import grafana_dashboard, server_monitor

from .served import Server

monitor = server_monitor()
SHIFT_SIGMAS = 3.0


def _digits(sample_dir, name: str) -> np.ndarray:
    return np.load(sample_dir / f"digits_{name}.npz")["x"].astype(np.float32)


def _logits(x: np.ndarray) -> np.ndarray:
    """A stand-in classifier: a fixed random linear map of the pixels to 10 scores."""
    weights = np.random.default_rng(0).normal(size=(x[0].size, 10)).astype(np.float32)
    return x.reshape(len(x), -1) @ weights


def _profile(reference: np.ndarray) -> dict:
    batches = (({"x": b}, {"scores": _logits(b)}) for b in np.array_split(reference, 8))
    return monitor.build_profile(batches, "digits_calibration.npz")


def _fed(profile: dict, x: np.ndarray, requests: int) -> dict:
    """A monitor after `requests` one-sample requests cycling through `x`: its worst PSIs."""
    m = monitor.Monitor(profile, half_life=500)
    for i in range(requests):
        one = x[i % len(x)][None]
        m.observe({"x": one}, {"scores": _logits(one)})
    snap = m.snapshot()
    return {
        "inputs": max(r["psi"] for r in snap["features"]),
        "predictions": max(r["psi"] for r in snap["outputs"]),
        "outside": snap["outside"]["x"],
    }


def test_shifted_inputs_raise_the_drift_metric_within_1000_requests(sample_dir):
    reference, live = _digits(sample_dir, "calibration"), _digits(sample_dir, "test")
    profile = _profile(reference)
    assert profile["samples"] == 256 and set(profile["inputs"]["x"]["features"]) == {"mean", "std"}
    same = _fed(profile, live, 1000)
    # Other digits than the reference's 256, same distribution: under the alert threshold
    # (measured: PSI 0.127 for the per-sample mean, 0.028 for the std, 0.02 for predictions).
    assert same["inputs"] < monitor.PSI_ALERT and same["predictions"] < monitor.PSI_WARNING
    assert same["outside"] == 0.0
    sigma = float(reference.std())
    shifted = _fed(profile, live + SHIFT_SIGMAS * sigma, 1000)
    assert shifted["inputs"] > monitor.PSI_ALERT and shifted["outside"] > 0.3
    # Alarmed well before 1,000 requests: 50 suffice (measured PSI 8.25).
    assert _fed(profile, live + SHIFT_SIGMAS * sigma, 50)["inputs"] > monitor.PSI_ALERT


def test_live_quantiles_follow_the_traffic(sample_dir):
    reference = _digits(sample_dir, "calibration")
    profile = _profile(reference)
    m = monitor.Monitor(profile, half_life=500)
    m.observe({"x": reference}, {"scores": _logits(reference)})
    [mean_row] = [r for r in m.snapshot()["features"] if r["feature"] == "mean"]
    ref = mean_row["reference"]
    # Fed the reference itself, the live median sits within one decile bin of the reference's.
    edges = profile["inputs"]["x"]["features"]["mean"]["edges"]
    assert abs(mean_row["live"]["0.5"] - ref["0.5"]) <= max(np.diff(edges))
    assert mean_row["live"]["mean"] == pytest.approx(ref["mean"], rel=0.02)
    assert mean_row["psi"] < 0.01


def test_memory_stays_flat_over_100k_requests(sample_dir):
    reference = _digits(sample_dir, "calibration")
    m = monitor.Monitor(_profile(reference), half_life=500)
    one, scores = reference[:1], _logits(reference[:1])
    for _ in range(1000):
        m.observe({"x": one}, {"scores": scores})
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(100_000):
        m.observe({"x": reference[i % 256][None]}, {"scores": scores})
    grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    assert grown < 64 * 1024, f"grew {grown} bytes over 100,000 requests"


@pytest.fixture(scope="module")
def exported_with_reference(tmp_path_factory, sample_dir):
    out = tmp_path_factory.mktemp("drift") / "digits"
    result = export_docker(
        DockerExportOptions(
            model={"path": str(sample_dir / "digits_cnn.pt2")},
            output=str(out),
            reference=str(sample_dir / "digits_calibration.npz"),
        )
    )
    return out, result


def _metric(text: str, name: str) -> list[float]:
    return [float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M)]


def test_the_server_reports_drift_in_metrics(exported_with_reference, sample_dir):
    folder, result = exported_with_reference
    assert result["drift_monitoring"] == {
        "reference": "digits_calibration.npz",
        "samples": 256,
        "features": 2,
        "outputs": ["linear_1"],
    }
    live = _digits(sample_dir, "test")
    s = Server(folder)
    try:

        def send(x: np.ndarray, n: int) -> None:
            for i in range(n):
                body = {"instances": x[i % len(x)][None].tolist()}
                assert s.call("POST", "/v1/models/digits-cnn:predict", body)[0] == 200

        send(live, 300)
        metrics = s.call("GET", "/metrics")[1]
        assert max(_metric(metrics, "dockyard_drift_psi")) < monitor.PSI_ALERT
        assert max(_metric(metrics, "dockyard_prediction_drift_psi")) < monitor.PSI_ALERT
        assert 200 < _metric(metrics, "dockyard_drift_samples")[0] < 300  # 300, decayed
        classes = _metric(metrics, "dockyard_prediction_class_share")
        assert len(classes) == 10 and sum(classes) == pytest.approx(1.0)
        send(live + SHIFT_SIGMAS * float(live.std()), 1000)
        metrics = s.call("GET", "/metrics")[1]
        assert max(_metric(metrics, "dockyard_drift_psi")) > monitor.PSI_ALERT
        assert max(_metric(metrics, "dockyard_input_out_of_range_share")) > 0.3
    finally:
        s.stop()


def test_without_reference_data_there_are_no_drift_metrics(tmp_path, sample_dir):
    # The Docker export's own tests run without --reference; its metrics say nothing of drift.
    out = tmp_path / "plain"
    result = export_docker(
        DockerExportOptions(model={"path": str(sample_dir / "digits_cnn.pt2")}, output=str(out))
    )
    assert result["drift_monitoring"] is None
    assert not (model_folder(out) / "1" / "reference_profile.json").exists()
    assert (out / "monitoring" / "dashboard.json").is_file()


def test_the_dashboard_loads_as_a_grafana_dashboard(exported_with_reference):
    dashboard_model = pytest.importorskip("grafana_foundation_sdk.models.dashboard")
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import prometheus

    register_default_plugins()  # panel and data query types, as Grafana's own schema has them
    folder, _ = exported_with_reference
    data = json.loads((folder / "monitoring" / "dashboard.json").read_text())
    assert data == grafana_dashboard("digits-cnn")
    dashboard = dashboard_model.Dashboard.from_json(data)
    assert dashboard.title == "Dockyard: digits-cnn" and dashboard.uid == "dockyard-digits-cnn"
    assert [p.title for p in dashboard.panels] == [p["title"] for p in data["panels"]]
    queries = [t for p in dashboard.panels for t in p.targets]
    assert all(isinstance(q, prometheus.Dataquery) for q in queries)
    assert [q.expr for q in queries] == [t["expr"] for p in data["panels"] for t in p["targets"]]
    psi = dashboard.panels[4].field_config.defaults.thresholds
    assert [step.value for step in psi.steps] == [None, 0.1, 0.25]
    assert json.loads(json.dumps(dashboard.to_json(), default=lambda o: o.to_json()))["uid"]
    ids = [p.id_val for p in dashboard.panels]
    assert len(set(ids)) == len(ids) == 8
    _check_promql([q.expr for q in queries])


def _check_promql(expressions: list[str]) -> None:
    promql = pytest.importorskip("promql_parser")
    for expr in expressions:
        promql.parse(expr)  # raises on a syntax error


def test_the_alert_rules_parse(exported_with_reference):
    folder, _ = exported_with_reference
    rules = yaml.safe_load((folder / "monitoring" / "alerts.yaml").read_text())
    [group] = rules["groups"]
    names = [r["alert"] for r in group["rules"]]
    assert names == [
        "DockyardInputDrift", "DockyardPredictionDrift", "DockyardInputsOutOfRange",
        "DockyardServerErrors", "DockyardSlowRequests",
    ]  # fmt: skip
    for rule in group["rules"]:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}
        assert "{{ $labels." in json.dumps(rule["annotations"]) or rule["alert"].startswith(
            ("DockyardServer", "DockyardSlow")
        )
    _check_promql([r["expr"] for r in group["rules"]])
