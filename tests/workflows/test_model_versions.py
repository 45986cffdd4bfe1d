"""Versions in the Docker export (issue #14 item 4): several versions of a model served side by
side at /v2/models/NAME/versions/V/..., a default version for requests that name none, switched by
editing model.json (no restart) or pinned with DEFAULT_VERSION, and an export that adds a version
to an earlier one without losing it when anything fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as tritonclient_grpc

from workflows.errors import ExportError
from workflows.exporters.docker import DockerExportOptions, export_docker
from workflows.exporters.model_versions import model_folder
from workflows.handoff import cards

from .served import Server

NAME = "affine"
X = np.arange(8, dtype=np.float32).reshape(2, 4) - 3.5


def _affine(folder: Path, scale: float) -> Path:
    """y = x * scale + 1 for x [batch, 4]: two scales, two versions with different outputs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "one"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [
            numpy_helper.from_array(np.float32(scale), "s"),
            numpy_helper.from_array(np.float32(1.0), "one"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / f"{NAME}.onnx"
    onnx.save(model, str(path))
    return path


def _export(model: Path, out: Path, **opts) -> dict:
    return export_docker(
        DockerExportOptions(model={"path": str(model)}, output=str(out), build=False, **opts)
    )


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("versions")
    ctx = root / "ctx"
    first = _export(_affine(root / "m1", 1.0), ctx)
    # The second version is written over the first export (replaced only once all passed).
    second = _export(_affine(root / "m2", 2.0), ctx, add_to=str(ctx))
    return ctx, first, second


def _infer(server: Server, route: str) -> tuple[int, dict]:
    body = {
        "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]
    }
    return server.call("POST", route, body)


def _y(answer: dict) -> np.ndarray:
    out = answer["outputs"][0]
    return np.asarray(out["data"], np.float32).reshape(out["shape"])


def test_an_export_adds_a_version_beside_the_earlier_ones(two_versions):
    ctx, first, second = two_versions
    assert (first["version"], first["versions"], first["default_version"]) == ("1", ["1"], "1")
    assert (second["version"], second["versions"], second["default_version"]) == (
        "2",
        ["1", "2"],
        "2",
    )
    assert (first["image"], second["image"]) == ("dockyard/affine:1", "dockyard/affine:2")
    # The smoke test asked each version for its own sample, by number and without one.
    assert second["smoke_test"]["versions_checked"] == ["1", "2"]
    assert second["smoke_test"]["max_abs_error"] <= 1e-5
    folder = model_folder(ctx)
    assert folder.name == NAME
    assert json.loads((folder / "model.json").read_text()) == {"name": NAME, "default_version": "2"}
    for version in ("1", "2"):
        config = json.loads((folder / version / "config.json").read_text())
        assert config["version"] == version and (folder / version / "model.onnx").is_file()
    manifest = json.loads((ctx / "manifest.json").read_text())
    assert manifest["versions"] == ["1", "2"] and manifest["default_version"] == "2"
    assert "models/affine/1/model.onnx" in second["files"]
    (card,) = cards({"export-docker": second}, ctx.parent)  # the app's Summary card
    assert card.what.endswith("; versions 1, 2 (default 2)")
    assert "dockyard/affine:2" in card.command


def test_two_versions_answer_side_by_side(two_versions):
    ctx = two_versions[0]
    s = Server(ctx)
    try:
        for version, scale in (("1", 1.0), ("2", 2.0)):
            status, answer = _infer(s, f"/v2/models/{NAME}/versions/{version}/infer")
            assert status == 200 and answer["model_version"] == version
            np.testing.assert_allclose(_y(answer), X * scale + 1, atol=1e-6)
            status, answer = s.call(
                "POST", f"/v1/models/{NAME}/versions/{version}:predict", {"instances": X.tolist()}
            )
            assert status == 200
            np.testing.assert_allclose(answer["predictions"], X * scale + 1, atol=1e-6)
        status, answer = _infer(s, f"/v2/models/{NAME}/infer")  # no version: the default, 2
        assert answer["model_version"] == "2"
        np.testing.assert_allclose(_y(answer), X * 2 + 1, atol=1e-6)
        status, meta = s.call("GET", f"/v2/models/{NAME}/versions/1")
        assert status == 200 and meta["versions"] == ["1", "2"]
        assert s.call("GET", f"/v2/models/{NAME}/versions/1/ready")[1]["version"] == "1"
        status, answer = _infer(s, f"/v2/models/{NAME}/versions/3/infer")
        assert status == 404 and "version(s) 1, 2 (default 2)" in answer["error"]

        # gRPC clients name the version as they do for Triton.
        client = tritonclient_grpc.InferenceServerClient(s.grpc_target)
        x = tritonclient_grpc.InferInput("x", list(X.shape), "FP32")
        x.set_data_from_numpy(X)
        for version, scale in (("1", 1.0), ("2", 2.0), ("", 2.0)):
            result = client.infer(NAME, [x], model_version=version)
            np.testing.assert_allclose(result.as_numpy("y"), X * scale + 1, atol=1e-6)
        assert client.get_model_metadata(NAME, "1").versions == ["1", "2"]
        client.close()

        # Model run time is reported per version.
        metrics = s.call("GET", "/metrics")[1]
        assert 'dockyard_inference_seconds_count{version="1"}' in metrics
        assert 'dockyard_inference_seconds_count{version="2"}' in metrics
    finally:
        s.stop()


def test_the_default_switches_when_model_json_says_so(two_versions, tmp_path):
    ctx = tmp_path / "ctx"
    shutil.copytree(two_versions[0], ctx)
    config = model_folder(ctx) / "model.json"
    s = Server(ctx, VERSION_POLL_SECONDS="0.1")
    try:
        assert _infer(s, f"/v2/models/{NAME}/infer")[1]["model_version"] == "2"
        _write(config, {"name": NAME, "default_version": "1"})  # roll back
        answer = _until(s, "1")
        np.testing.assert_allclose(_y(answer), X + 1, atol=1e-6)
        # A default that is not served is refused: the current one stays.
        _write(config, {"name": NAME, "default_version": "7"})
        time.sleep(0.5)
        assert _infer(s, f"/v2/models/{NAME}/infer")[1]["model_version"] == "1"
        _write(config, {"name": NAME, "default_version": "2"})  # promote again
        _until(s, "2")
    finally:
        s.stop()


def _write(path: Path, value: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)  # as a ConfigMap update swaps the file


def _until(server: Server, version: str, seconds: float = 10.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        answer = _infer(server, f"/v2/models/{NAME}/infer")[1]
        if answer["model_version"] == version or time.monotonic() > deadline:
            assert answer["model_version"] == version
            return answer
        time.sleep(0.05)


def test_default_version_pins_the_default(two_versions):
    ctx = two_versions[0]
    s = Server(ctx, DEFAULT_VERSION="1")
    try:
        status, answer = _infer(s, f"/v2/models/{NAME}/infer")
        assert status == 200 and answer["model_version"] == "1"
        np.testing.assert_allclose(_y(answer), X + 1, atol=1e-6)
    finally:
        s.stop()
    # A pinned version that is not served: the server does not start, and says why.
    env = {**os.environ, "PYTHONPATH": str(ctx), "DEFAULT_VERSION": "9", "GRPC_PORT": "0"}
    r = subprocess.run([sys.executable, "-m", "server"], cwd=ctx, env=env, capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0
    assert "default version '9' is not served" in r.stdout + r.stderr


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_refusals_leave_the_earlier_export_as_it_was(two_versions, tmp_path):
    ctx = two_versions[0]
    model = _affine(tmp_path / "m3", 3.0)
    before = _listing(ctx)
    with pytest.raises(ExportError, match=r"version 2 is already in the export.*next one is 3"):
        _export(model, ctx, add_to=str(ctx), model_version="2")
    with pytest.raises(ExportError, match="--default-version 5: the export would hold"):
        _export(model, ctx, add_to=str(ctx), default_version="5")
    with pytest.raises(ExportError, match=r"serves the model as 'affine'.*leave --name out"):
        _export(model, ctx, add_to=str(ctx), name="other")
    with pytest.raises(ExportError, match="give a whole number"):
        _export(model, tmp_path / "new", model_version="v2")
    assert _listing(ctx) == before
    with pytest.raises(ExportError, match="not a Dockyard export"):
        _export(model, tmp_path / "out", add_to=str(tmp_path / "m3"))


def test_a_version_can_keep_another_default_and_carry_an_old_layout(two_versions, tmp_path):
    # An export from before versions kept its model in model/: it becomes version 1.
    old = tmp_path / "old"
    old.mkdir()
    shutil.copytree(model_folder(two_versions[0]) / "1", old / "model")
    shutil.copyfile(two_versions[0] / "manifest.json", old / "manifest.json")
    out = tmp_path / "new"
    result = _export(_affine(tmp_path / "m5", 5.0), out, add_to=str(old), model_version="5",
                     default_version="1")  # fmt: skip
    assert (result["versions"], result["default_version"]) == (["1", "5"], "1")
    assert result["smoke_test"]["versions_checked"] == ["1", "5"]
    assert (old / "model" / "model.onnx").is_file()  # the earlier export is untouched
    s = Server(out)
    try:
        np.testing.assert_allclose(_y(_infer(s, f"/v2/models/{NAME}/infer")[1]), X + 1, atol=1e-6)
        answer = _infer(s, f"/v2/models/{NAME}/versions/5/infer")[1]
        np.testing.assert_allclose(_y(answer), X * 5 + 1, atol=1e-6)
    finally:
        s.stop()


def test_the_cli_adds_a_version_in_place(two_versions, tmp_path):
    ctx = tmp_path / "ctx"
    shutil.copytree(two_versions[0], ctx)
    model = _affine(tmp_path / "m3", 3.0)
    command = [sys.executable, "-m", "workflows.cli", "export", "docker", str(model), "-o", str(ctx),
               "--add-to", str(ctx), "--default-version", "2", "--no-build"]  # fmt: skip
    r = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "version 3 added beside 1, 2; each answers like its own model" in r.stdout
    assert "requests naming no version get 2" in r.stdout
    config = json.loads((model_folder(ctx) / "model.json").read_text())
    assert config["default_version"] == "2"
    assert sorted(p.name for p in model_folder(ctx).iterdir() if p.is_dir()) == ["1", "2", "3"]
