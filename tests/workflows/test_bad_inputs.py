"""Bad inputs: each gives a specific error (engine) and a one-line message, exit 1 (CLI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.workflows import model_factory as mf
from workflows.errors import (
    FormatError,
    MissingInputError,
    RuntimeLoadError,
    UnsafeModelError,
)
from workflows.formats import load_model
from workflows.steps.inspect import inspect_model


class _RunsCode:
    """A pickle payload that writes a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _malicious_pth(folder: Path) -> tuple[Path, Path]:
    import torch

    marker = folder / "code_ran.txt"
    path = folder / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": _RunsCode(marker)}, str(path))
    return path, marker


def _unknown_op_onnx(folder: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FancyActivation", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    path = folder / "custom_op.onnx"
    onnx.save(model, str(path))
    return path


def _truncated_onnx(folder: Path) -> Path:
    good = mf.save_onnx(folder).read_bytes()
    path = folder / "truncated.onnx"
    path.write_bytes(good[: len(good) // 2])
    return path


def _random_onnx(folder: Path) -> Path:
    path = folder / "random.onnx"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    return path


def _empty(folder: Path) -> Path:
    path = folder / "empty.onnx"
    path.write_bytes(b"")
    return path


def _not_savedmodel(folder: Path) -> Path:
    path = folder / "just_a_folder"
    path.mkdir()
    (path / "notes.txt").write_text("hello")
    return path


def test_empty_file(tmp_path):
    with pytest.raises(FormatError, match=r"empty \(0 bytes\)"):
        load_model(_empty(tmp_path))


def test_truncated_onnx(tmp_path):
    with pytest.raises(FormatError, match=r"truncated|not an ONNX model"):
        load_model(_truncated_onnx(tmp_path))


def test_random_bytes_named_onnx(tmp_path):
    with pytest.raises(FormatError, match=r"random\.onnx"):
        load_model(_random_onnx(tmp_path))


def test_pickle_that_runs_code_is_refused_and_did_not_run(tmp_path):
    path, marker = _malicious_pth(tmp_path)
    with pytest.raises(UnsafeModelError, match="weights_only") as info:
        load_model(path, model_file=mf.torch_module(tmp_path)[1], model_class="TinyNet")
    assert "--allow-unsafe" in str(info.value)
    assert "exec" in str(info.value)  # names the global it refused
    assert not marker.exists(), "the payload ran"


def test_the_payload_is_real(tmp_path):
    """Control for the test above: opting in does run it (so that test could fail)."""
    from workflows.formats.pytorch_eager import read_state_dict

    path, marker = _malicious_pth(tmp_path)
    with pytest.raises(FormatError):  # what it holds is not a state_dict of tensors
        read_state_dict(path, allow_unsafe=True)
    assert marker.read_text() == "pwned"


def test_state_dict_without_its_module(tmp_path):
    weights, _ = mf.save_state_dict(tmp_path)
    with pytest.raises(MissingInputError, match="--model-file") as info:
        load_model(weights)
    assert "4 tensors" in str(info.value)


def test_weights_that_do_not_fit_the_class(tmp_path):
    weights, _ = mf.save_state_dict(tmp_path)
    other = tmp_path / "other.py"
    other.write_text(
        "import torch\nclass Other(torch.nn.Module):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.lin = torch.nn.Linear(2, 2)\n"
        "    def forward(self, x):\n        return self.lin(x)\n"
    )
    with pytest.raises(FormatError, match=r"do not fit Other.*conv\.weight"):
        load_model(weights, model_file=other)


def test_folder_that_is_not_a_savedmodel(tmp_path):
    with pytest.raises(FormatError, match=r"no saved_model\.pb.*notes\.txt"):
        load_model(_not_savedmodel(tmp_path))


def test_onnx_op_unknown_to_onnxruntime(tmp_path):
    from workflows.formats import onnx_format

    model = load_model(_unknown_op_onnx(tmp_path))
    report = inspect_model(model)
    assert report["custom_ops"] == ["com.example::FancyActivation"]
    with pytest.raises(RuntimeLoadError, match="FancyActivation") as info:
        onnx_format.session(model)
    assert "custom op" in str(info.value)


def test_keras_lambda_layer_needs_opt_in(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2.0)])
    path = tmp_path / "lambda.keras"
    model.save(str(path))
    with pytest.raises(UnsafeModelError, match="--allow-unsafe"):
        load_model(path)
    assert load_model(path, allow_unsafe=True).outputs[0].shape == ("batch", 3)


def test_text_file_is_not_a_model(tmp_path):
    path = tmp_path / "readme.txt"
    path.write_text("not a model")
    with pytest.raises(FormatError, match="not a model format Dockyard reads"):
        load_model(path)


CLI_CASES = {
    "empty": (_empty, r"empty \(0 bytes\)"),
    "truncated": (_truncated_onnx, "truncated|not an ONNX model"),
    "random": (_random_onnx, "ONNX"),
    "malicious": (lambda d: _malicious_pth(d)[0], "weights_only"),
    "state_dict_only": (lambda d: mf.save_state_dict(d)[0], "--model-file"),
    "not_savedmodel": (_not_savedmodel, "saved_model.pb"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_one_line_error(case, tmp_path):
    make, pattern = CLI_CASES[case]
    path = make(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("dockyard-cli: error: ")
    assert "Traceback" not in r.stderr
    import re

    assert re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "code_ran.txt").exists()


def test_cli_unknown_op_validate_fails_with_one_line(tmp_path):
    path = _unknown_op_onnx(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "validate", str(path), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "FancyActivation" in r.stderr and "Traceback" not in r.stderr


def _malicious_pt2(folder: Path, sample_dir: Path) -> tuple[Path, Path]:
    """The sample .pt2 with its sample inputs replaced by a pickle that writes a marker file."""
    import io
    import zipfile

    import torch

    marker = folder / "pt2_code_ran.txt"
    payload = io.BytesIO()
    torch.save((_RunsCode(marker),), payload)
    path = folder / "evil.pt2"
    with (
        zipfile.ZipFile(sample_dir / "digits_cnn.pt2") as src,
        zipfile.ZipFile(path, "w") as dst,
    ):
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("data/sample_inputs/model.pt"):
                data = payload.getvalue()
            dst.writestr(item, data)
    return path, marker


def test_pt2_whose_sample_inputs_run_code_is_refused_and_did_not_run(tmp_path, sample_dir):
    path, marker = _malicious_pt2(tmp_path, sample_dir)
    with pytest.raises(UnsafeModelError, match=r"sample_inputs/model\.pt.*--allow-unsafe"):
        load_model(path)
    assert not marker.exists()
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1 and "would run code stored in it" in r.stderr
    assert not marker.exists()


def test_the_pt2_payload_is_real_and_the_opt_in_lets_it_run(tmp_path, sample_dir):
    path, marker = _malicious_pt2(tmp_path, sample_dir)
    load_model(path, allow_unsafe=True)  # torch.export.load falls back to the unsafe unpickler
    assert marker.read_text() == "pwned"


def test_benign_pt2_opens_without_a_prompt(sample_dir):
    model = load_model(sample_dir / "digits_cnn.pt2")
    assert model.format == "exported_program" and model.parameters == 71_754
