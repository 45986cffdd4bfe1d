"""scikit-learn models (issue #15 item 5): .skops loaded safely (decision trees only after their
node arrays are checked), pickles only with --allow-unsafe, converted to ONNX with skl2onnx and
validated, then exported like any model. Models are trained here on scikit-learn's own bundled
digits (no download)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import onnxruntime as ort
import pytest
import skops.io as sio
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from workflows import formats
from workflows.errors import FormatError, UnsafeModelError
from workflows.formats import sklearn_format
from workflows.options import LoadOptions
from workflows.steps.convert import convert_model

from . import model_factory as mf


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


def _save(folder: Path, estimator, name: str) -> Path:
    path = folder / name
    if path.suffix == ".skops":
        sio.dump(estimator, path)
    else:
        joblib.dump(estimator, path)
    return path


def test_a_skops_pipeline_loads_converts_and_matches(tmp_path, digits):
    x, y = digits
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    path = _save(tmp_path, pipeline.fit(x[:1200], y[:1200]), "digits_lr.skops")
    assert formats.detect(path).NAME == "sklearn"
    model = LoadOptions(path=str(path)).load()
    assert [s.describe() for s in model.inputs] == ["X: float32[batch, 64]"]
    assert [s.describe() for s in model.outputs] == [
        "label: int64[batch]", "probabilities: float32[batch, 10]"
    ]  # fmt: skip
    assert model.metadata == {
        "estimator": "StandardScaler → LogisticRegression",
        "kind": "classifier",
    }
    assert model.parameters == 64 * 3 + 10 * 64 + 10  # scaler mean, var, scale; LR's weights
    out = tmp_path / "digits_lr.onnx"
    convert_model(model, out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"X": x[1200:]})
    assert (label == pipeline.predict(x[1200:])).all()
    assert np.abs(proba - pipeline.predict_proba(x[1200:])).max() < 1e-5
    assert (label == y[1200:]).mean() > 0.9  # a real classifier, on held-out digits


def test_trees_load_after_their_nodes_are_checked(tmp_path, digits):
    x, y = digits
    forest = RandomForestClassifier(n_estimators=4, max_depth=5, random_state=0).fit(x, y)
    path = _save(tmp_path, forest, "forest.skops")
    # skops itself leaves trees untrusted (scikit-learn follows their indices unchecked).
    assert sio.get_untrusted_types(file=str(path)) == ["sklearn.tree._tree.Tree"]
    model = LoadOptions(path=str(path)).load()
    assert sklearn_format.check_trees(model.native, path) == 4
    out = tmp_path / "forest.onnx"
    convert_model(model, out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"X": x[:300]})
    assert (label == forest.predict(x[:300])).all()
    assert np.abs(proba - forest.predict_proba(x[:300])).max() < 1e-5

    # A crafted file: a child index far outside the tree. Refused before anything runs it.
    damaged = mf.damage_first_tree(path, tmp_path / "damaged.skops")
    with pytest.raises(FormatError, match=r"decision tree 0 is damaged .*outside the tree"):
        LoadOptions(path=str(damaged)).load()


def test_pickles_need_the_unsafe_opt_in(tmp_path, digits):
    x, y = digits
    ridge = Ridge().fit(x[:500], y[:500].astype(np.float32))
    path = _save(tmp_path, ridge, "ridge.joblib")
    with pytest.raises(UnsafeModelError, match=r"a pickle runs code.*skops\.io\.dump"):
        LoadOptions(path=str(path)).load()
    model = LoadOptions(path=str(path), allow_unsafe=True).load()
    assert [s.describe() for s in model.outputs] == ["variable: float32[batch, 1]"]
    (got,) = formats.by_name("sklearn").session(model)({"X": x[:5]})
    np.testing.assert_allclose(got[:, 0], ridge.predict(x[:5]), rtol=1e-5)
    # A model from a library Dockyard does not have: said so, by name.
    (tmp_path / "other.pkl").write_bytes(b"\x80\x02cnot_a_model_library\nModel\n)\x81.")
    with pytest.raises(FormatError, match=r"needs the Python module 'not_a_model_library'"):
        LoadOptions(path=str(tmp_path / "other.pkl"), allow_unsafe=True).load()


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosted_trees_convert_through_onnxmltools(tmp_path, digits, library):
    x, y = digits
    if library == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor

        classifier = XGBClassifier(n_estimators=20, max_depth=4, random_state=0)
        regressor = XGBRegressor(n_estimators=20, max_depth=4, random_state=0)
    else:
        from lightgbm import LGBMClassifier, LGBMRegressor

        classifier = LGBMClassifier(n_estimators=20, num_leaves=15, random_state=0, verbose=-1)
        regressor = LGBMRegressor(n_estimators=20, num_leaves=15, random_state=0, verbose=-1)
    held_out = x[1200:]
    # Pickled (the libraries' usual way to save); LightGBM as a pipeline's last step. Not
    # XGBoost: its split thresholds are training values themselves, so the ONNX scaler's float32
    # rounding sends digits that sit on a split the other way (2 % of labels flip; validate
    # reports it). Alone, both agree exactly.
    if library == "lightgbm":
        classifier = make_pipeline(StandardScaler(), classifier)
    pipeline = classifier.fit(x[:1200], y[:1200])
    path = _save(tmp_path, pipeline, f"{library}.joblib")
    model = LoadOptions(path=str(path), allow_unsafe=True).load()
    assert model.metadata["kind"] == "classifier"
    assert [s.describe() for s in model.outputs][1] == "probabilities: float32[batch, 10]"
    out = tmp_path / f"{library}.onnx"
    convert_model(model, out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"X": held_out})
    assert (label == pipeline.predict(held_out)).all()  # agreement 100 %
    assert np.abs(proba - pipeline.predict_proba(held_out)).max() <= 1e-5
    assert (label == y[1200:]).mean() > 0.85  # a real classifier, on 597 held-out digits

    regressor.fit(x[:1200], y[:1200].astype(np.float32))
    path = _save(tmp_path, regressor, f"{library}-regressor.joblib")
    model = LoadOptions(path=str(path), allow_unsafe=True).load()
    convert_model(model, tmp_path / "regressor.onnx")
    session = ort.InferenceSession(
        str(tmp_path / "regressor.onnx"), providers=["CPUExecutionProvider"]
    )
    (value,) = session.run(None, {"X": held_out})
    assert value.shape == (len(held_out), 1)
    assert np.abs(value[:, 0] - regressor.predict(held_out)).max() <= 1e-4


def test_the_cli_inspects_converts_and_validates(tmp_path, digits):
    x, y = digits
    path = _save(
        tmp_path, make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y), "m.skops"
    )

    def cli(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "workflows.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    r = cli("inspect", str(path), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["model"]["format"] == "sklearn"
    assert info["op_histogram"] == {"StandardScaler": 1, "LogisticRegression": 1}
    out = tmp_path / "m.onnx"
    assert cli("convert", str(path), "-o", str(out)).returncode == 0
    r = cli("validate", str(path), str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["passed"] is True


def test_not_a_model(tmp_path):
    path = tmp_path / "numbers.skops"
    sio.dump({"a": np.arange(3)}, path)
    with pytest.raises(FormatError, match="holds a dict, not a fitted scikit-learn model"):
        LoadOptions(path=str(path)).load()


def test_a_skops_model_is_served_by_the_docker_export(tmp_path):
    from workflows.exporters.docker import DockerExportOptions, export_docker

    path = mf.save_skops(tmp_path)
    result = export_docker(
        DockerExportOptions(model={"path": str(path)}, output=str(tmp_path / "ctx"), build=False)
    )
    smoke = result["smoke_test"]
    # Served as ONNX (skl2onnx's), checked over REST JSON and binary, gRPC and TF Serving gRPC.
    assert smoke["passed"] and smoke["max_abs_error"] <= 1e-5
    assert smoke["protocols"] == ["rest", "rest-binary", "grpc", "tf-serving"]
    assert [s["step"] for s in result["manifest"]["steps"]] == ["convert", "export"]
    response = json.loads((tmp_path / "ctx" / "sample_response.json").read_text())
    assert [(o["name"], o["datatype"]) for o in response["outputs"]] == [
        ("label", "INT64"), ("probabilities", "FP32")
    ]  # fmt: skip
