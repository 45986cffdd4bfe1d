"""TorchServe archives for TorchScript, eager (model.py + state_dict) and ONNX models, each served
by a real TorchServe (Java 17) on loopback and compared with the original model."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.workflows import model_factory as mf
from workflows.exporters.torchserve import TorchServe, TorchServeExportOptions, export_torchserve
from workflows.formats import by_name, load_model


@contextlib.contextmanager
def default_grpc_ports_taken():
    """Hold TorchServe's default gRPC ports (7070, 7071), as another TorchServe on the machine
    does: the smoke test's TorchServe must not need them (it exited at start-up when it did)."""
    held = []
    for port in (7070, 7071):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            held.append(s)
        except OSError:  # taken already: just as good
            s.close()
    try:
        yield
    finally:
        for s in held:
            s.close()


@pytest.fixture(scope="module")
def archives(tmp_path_factory, sample_dir):
    with default_grpc_ports_taken():
        return _archives(tmp_path_factory, sample_dir)


def _archives(tmp_path_factory, sample_dir):
    tmp = tmp_path_factory.mktemp("ts")
    ts_path = mf.save_torchscript(tmp)
    onnx_path = mf.save_onnx_external(tmp)  # its weights in tiny_weights.bin, kept in the .mar
    shape = {"x": [1, 3, 8, 8]}
    results = {
        "torchscript": export_torchserve(
            TorchServeExportOptions(
                model={"path": str(ts_path), "input_shapes": shape},
                output=str(tmp / "ts_out"),
                name="tiny-ts",
            )
        ),
        "eager": export_torchserve(
            TorchServeExportOptions(
                model={
                    "path": str(sample_dir / "digits_cnn.safetensors"),
                    "model_file": str(sample_dir / "digits_cnn.py"),
                    "input_shapes": {"x": [1, 1, 8, 8]},
                },
                output=str(tmp / "eager_out"),
                name="digits",
                labels=str(sample_dir / "labels.txt"),
                preprocess={"channels": "L", "scale": 1 / 255},
                top_k=3,
            )
        ),
        "onnx": export_torchserve(
            TorchServeExportOptions(
                model={"path": str(onnx_path)}, output=str(tmp / "onnx_out"), name="tiny-onnx"
            )
        ),
        "exported_program": export_torchserve(
            TorchServeExportOptions(
                model={"path": str(sample_dir / "digits_cnn.pt2")},
                output=str(tmp / "pt2_out"),
                name="digits-pt2",
            )
        ),
    }
    return tmp, results, {"torchscript": ts_path, "onnx": onnx_path}


def test_each_archive_passed_its_own_torchserve_smoke_test(archives):
    _, results, _ = archives
    kinds = {k: r["kind"] for k, r in results.items()}
    assert kinds == {
        "torchscript": "torchscript",
        "eager": "eager",
        "onnx": "onnx",
        "exported_program": "exported_program",
    }
    for r in results.values():
        assert r["smoke_test"]["ran"] and r["smoke_test"]["passed"]
        assert r["smoke_test"]["max_abs_error"] <= 1e-4
        with zipfile.ZipFile(r["archive"]) as z:
            names = z.namelist()
            manifest = json.loads(z.read("MAR-INF/MANIFEST.json"))
        assert "handler.py" in names and "dockyard_config.json" in names
        assert manifest["model"]["handler"] == "handler.py"
    with zipfile.ZipFile(results["eager"]["archive"]) as z:
        assert {"model.py", "model.pt", "index_to_name.json"} <= set(z.namelist())
    with zipfile.ZipFile(results["onnx"]["archive"]) as z:
        assert {"model.onnx", "tiny_weights.bin"} <= set(z.namelist())


def test_readme_states_maintenance_status(archives):
    tmp, _, _ = archives
    readme = (tmp / "eager_out" / "README.md").read_text()
    assert "limited maintenance" in readme and "pyyaml" in readme
    config = (tmp / "eager_out" / "config.properties").read_text()
    assert "load_models=digits.mar" in config


def test_real_torchserve_serves_all_three(archives, sample_dir, tmp_path):
    _, results, paths = archives
    store = tmp_path / "store"
    store.mkdir()
    for r in results.values():
        src = Path(r["archive"])
        (store / src.name).write_bytes(src.read_bytes())
    server = TorchServe(
        store,
        {"tiny-ts": "tiny-ts.mar", "digits": "digits.mar", "tiny-onnx": "tiny-onnx.mar"},
        tmp_path,
    )
    try:
        rng = np.random.default_rng(3)
        x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
        ts_model = load_model(paths["torchscript"], input_shapes={"x": [1, 3, 8, 8]})
        onnx_model = load_model(paths["onnx"])
        for name, model in (("tiny-ts", ts_model), ("tiny-onnx", onnx_model)):
            want = by_name(model.format).session(model)({"x": x})[0]
            status, answer = server.wait_ready(name, json.dumps({"inputs": x.tolist()}).encode())
            assert status == 200, answer
            assert np.abs(np.asarray(answer["outputs"]) - want).max() <= 1e-4
            # One sample without a batch axis, and the v2 style, give the same numbers.
            status, one = server.wait_ready(name, json.dumps({"inputs": x[0].tolist()}).encode())
            assert np.abs(np.asarray(one["outputs"][0]) - want[0]).max() <= 1e-4
            v2 = {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 3, 8, 8],
                        "datatype": "FP32",
                        "data": x[1].ravel().tolist(),
                    }
                ]
            }
            status, two = server.wait_ready(name, json.dumps(v2).encode())
            assert np.abs(np.asarray(two["outputs"][0]) - want[1]).max() <= 1e-4

        # The eager digits model: a real digit image in, the right label out.
        test = np.load(sample_dir / "digits_test.npz")
        digits = load_model(
            sample_dir / "digits_cnn.safetensors",
            model_file=sample_dir / "digits_cnn.py",
            input_shapes={"x": [1, 1, 8, 8]},
        )
        want = by_name("pytorch_eager").session(digits)({"x": test["x"][:8]})[0]
        status, answer = server.wait_ready(
            "digits", json.dumps({"instances": test["x"][:8].tolist()}).encode()
        )
        assert status == 200
        assert np.abs(np.asarray(answer["outputs"]) - want).max() <= 1e-4
        assert [row[0]["label"] for row in answer["top_k"]] == [str(int(v)) for v in want.argmax(1)]
        from PIL import Image

        png = io.BytesIO()
        Image.fromarray(np.round(test["x"][0, 0] * 255).astype(np.uint8), mode="L").save(png, "PNG")
        import urllib.request

        req = urllib.request.Request(
            f"{server.base}/predictions/digits",
            data=png.getvalue(),
            headers={"Content-Type": "image/png"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            image_answer = json.loads(r.read())
        assert image_answer["top_k"][0][0]["label"] == str(int(test["y"][0]))
        assert len(image_answer["top_k"][0]) == 3

        from workflows.exporters.torchserve import _post

        status, bad = _post(
            f"{server.base}/predictions/tiny-ts",
            json.dumps({"inputs": [[1.0, 2.0]]}).encode(),
            "application/json",
        )
        assert status == 400 and "expected [-1, 3, 8, 8]" in str(bad)

    finally:
        server.stop()
    assert server.proc.poll() is not None


def test_deep_output_folder(tmp_path, sample_dir):
    """Worker sockets live in TorchServe's temp folder: a deep output path must not break it."""
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5) / "export"
    result = export_torchserve(
        TorchServeExportOptions(
            model={"path": str(sample_dir / "digits_cnn.pt2")}, output=str(deep), name="deep"
        )
    )
    assert len(str(deep)) > 108
    assert result["smoke_test"]["passed"]


def test_without_java_the_export_says_what_to_install_and_writes_nothing(tmp_path, monkeypatch):
    import workflows.exporters.torchserve as ts
    from workflows.errors import ExportError

    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(ts.shutil, "which", lambda name, path=None: None)  # no java anywhere
    with pytest.raises(ExportError, match=r"Java 17 or later.*JAVA_HOME.*--no-smoke-test"):
        export_torchserve(
            TorchServeExportOptions(
                model={"path": str(mf.save_onnx(tmp_path)), "input_shapes": {"x": [1, 3, 8, 8]}},
                output=str(tmp_path / "out"),
            )
        )
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def _executable(path: Path) -> Path:
    """An empty executable script at `path` (a stand-in java or torchserve)."""
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_java_from_java_home_first(tmp_path, monkeypatch):
    import workflows.exporters.torchserve as ts

    java = _executable(tmp_path / "jdk" / "bin" / "java")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert ts._java() == str(java)


def test_a_stale_java_home_gives_way_to_the_java_found(tmp_path, monkeypatch):
    import workflows.exporters.torchserve as ts

    java = _executable(tmp_path / "jdk" / "bin" / "java")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "gone"))
    monkeypatch.setenv("PATH", f"{java.parent}:{tmp_path / 'bin'}")
    _executable(tmp_path / "bin" / "torchserve")
    monkeypatch.setattr(ts, "_bin", lambda name: str(tmp_path / "bin" / name))
    command, env = ts._torchserve_command(tmp_path)
    assert command == [str(tmp_path / "bin" / "torchserve")]
    assert env["JAVA_HOME"] == str(tmp_path / "jdk")  # what the launcher's java will be
