"""The export skeleton's shared parts: ONNX files with their external data, kept by every target."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort

from tests.workflows import model_factory as mf
from workflows.exporters.base import copy_onnx, onnx_files
from workflows.exporters.docker import DockerExportOptions, export_docker


def test_onnx_files_lists_external_data(tmp_path):
    path = mf.save_onnx_external(tmp_path, location="all_weights.bin")
    assert onnx_files(path) == [path, tmp_path / "all_weights.bin"]
    plain = tmp_path / "plain"
    plain.mkdir()
    assert onnx_files(mf.save_onnx(plain)) == [plain / "tiny.onnx"]


def test_copy_onnx_renames_the_model_and_keeps_its_data(tmp_path):
    path = mf.save_onnx_external(tmp_path)
    (tmp_path / "dest").mkdir()
    written = copy_onnx(path, tmp_path / "dest")
    assert [p.name for p in written] == ["model.onnx", "tiny_weights.bin"]
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(written[0])).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)


def test_docker_export_serves_a_model_with_external_data(tmp_path):
    path = mf.save_onnx_external(tmp_path)
    out = tmp_path / "ctx"
    r = export_docker(DockerExportOptions(model={"path": str(path)}, output=str(out), build=False))
    assert (out / "model" / "tiny_weights.bin").is_file()
    assert r["smoke_test"]["passed"] and r["smoke_test"]["max_abs_error"] <= 1e-5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "docker" and manifest["steps"][-1]["step"] == "export"
