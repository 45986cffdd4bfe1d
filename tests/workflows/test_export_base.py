"""The export skeleton's shared parts: ONNX files with their external data, kept by every target."""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import pytest

from tests.workflows import model_factory as mf
from workflows.exporters.docker import DockerExportOptions, export_docker
from workflows.exporters.model_versions import model_folder
from workflows.formats.onnx_format import copy_onnx, onnx_files


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
    assert (model_folder(out) / "1" / "tiny_weights.bin").is_file()
    assert r["smoke_test"]["passed"] and r["smoke_test"]["max_abs_error"] <= 1e-5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "docker" and manifest["steps"][-1]["step"] == "export"


def test_a_folder_dockyard_did_not_make_is_never_replaced(tmp_path):
    from workflows.errors import OutputExistsError

    path = mf.save_onnx(tmp_path)
    theirs = tmp_path / "documents"
    theirs.mkdir()
    (theirs / "thesis.txt").write_text("four years of work")
    with pytest.raises(OutputExistsError, match=r"documents: .*not written by Dockyard.*thesis"):
        export_docker(DockerExportOptions(model={"path": str(path)}, output=str(theirs)))
    assert [p.name for p in theirs.iterdir()] == ["thesis.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents", "tiny.onnx"]  # no leftovers
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(OutputExistsError, match="not a folder Dockyard made"):
        export_docker(DockerExportOptions(model={"path": str(path)}, output=str(a_file)))
    assert a_file.read_text() == "mine"


def test_a_dockyard_output_is_replaced_and_an_empty_folder_used(tmp_path):
    path = mf.save_onnx(tmp_path)
    out = tmp_path / "ctx"
    out.mkdir()  # empty: fine
    first = export_docker(DockerExportOptions(model={"path": str(path)}, output=str(out)))
    assert ".dockyard-output" in first["files"]
    (out / "stale.txt").write_text("left from an earlier run")  # inside Dockyard's own folder
    export_docker(DockerExportOptions(model={"path": str(path)}, output=str(out)))
    assert not (out / "stale.txt").exists() and (out / "Dockerfile").is_file()


def test_an_output_of_an_earlier_dockyard_is_recognised(tmp_path):
    from workflows.atomic import check_replaceable
    from workflows.errors import OutputExistsError

    old = tmp_path / "export-docker"
    old.mkdir()
    (old / "manifest.json").write_text('{"dockyard_version": "0.1.0", "target": "docker"}')
    check_replaceable(old)  # made by Dockyard before the ownership mark existed
    (old / "manifest.json").write_text('{"name": "somebody else\'s manifest"}')
    with pytest.raises(OutputExistsError):
        check_replaceable(old)


def test_outputs_follow_the_umask_for_a_handoff(tmp_path):
    import os
    import stat

    from workflows.atomic import atomic_dir, atomic_file

    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "bundle") as out:
            (out / "model.onnx").write_bytes(b"x")
        with atomic_file(tmp_path / "model.onnx") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "bundle").stat().st_mode) == 0o755  # not mkdtemp's 0700
    assert stat.S_IMODE((tmp_path / "model.onnx").stat().st_mode) == 0o644  # not mkstemp's 0600


def test_a_relative_output_folder_works(tmp_path, monkeypatch):
    path = mf.save_onnx(tmp_path)
    monkeypatch.chdir(tmp_path)
    r = export_docker(DockerExportOptions(model={"path": str(path)}, output="rel-ctx", build=False))
    assert r["smoke_test"]["passed"] and (tmp_path / "rel-ctx" / "Dockerfile").is_file()


def test_quantize_keeps_an_onnx_models_external_data(tmp_path):
    from workflows.formats import load_model
    from workflows.steps.quantize import QuantizeOptions, quantize_model

    path = mf.save_onnx_external(tmp_path)  # weights in tiny_weights.bin, not model.onnx.data
    opts = QuantizeOptions(model={"path": str(path)}, output=str(tmp_path / "q"), modes=["fp16"])
    r = quantize_model(load_model(path), opts)
    assert (tmp_path / "q" / "tiny_weights.bin").is_file()
    fp32 = tmp_path / "q" / r["float_model"]["file"]
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    np.testing.assert_array_equal(ort.InferenceSession(str(fp32)).run(None, {"x": x})[0], want)
    assert r["float_model"]["size_bytes"] > path.stat().st_size  # the data file counted too


def test_a_step_stopped_mid_swap_puts_the_previous_output_back(tmp_path):
    """What a step whose parent died cleans up before it kills itself (child._die_with_parent):
    its unfinished temp folders, and a swap caught between its two renames."""
    from workflows import atomic

    target = tmp_path / "out"
    target.mkdir()
    (target / "good.txt").write_text("the earlier good output")
    old = tmp_path / f".out{atomic.PARTIAL_MARK}old-1"
    os.replace(target, old)  # the first rename of a swap has happened, the second not yet
    unfinished = tmp_path / f".out{atomic.PARTIAL_MARK}1-abc"
    unfinished.mkdir()
    (unfinished / "half.bin").write_bytes(b"x")
    atomic.PENDING_SWAPS[old] = target
    atomic.OPEN_PARTIALS.add(unfinished)
    try:
        atomic.remove_open_partials()
    finally:
        atomic.PENDING_SWAPS.clear()
        atomic.OPEN_PARTIALS.clear()
    assert (target / "good.txt").read_text() == "the earlier good output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_step_whose_parent_is_gone_does_not_swap(tmp_path):
    from workflows import atomic
    from workflows.errors import StepCancelled

    target = tmp_path / "out"
    target.mkdir()
    (target / atomic.OWNER_MARK).write_text("")
    (target / "good.txt").write_text("the earlier good output")

    def parent_gone() -> None:
        raise StepCancelled("the process that started this step is gone")

    atomic.FINISH_CHECKS.append(parent_gone)
    try:
        with pytest.raises(StepCancelled), atomic.atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
    finally:
        atomic.FINISH_CHECKS.remove(parent_gone)
    assert sorted(p.name for p in target.iterdir()) == [atomic.OWNER_MARK, "good.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
