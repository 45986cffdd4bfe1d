"""Bad inputs through the CLI: one line, exit 1, no traceback; and the controls that show the
corpus's code-running files really would run code (so its "did not run" checks can fail).

Every hostile or broken model file and what the engine must say about it: tests/corpus/models.yaml.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus import model_recipes as recipes
from tests.workflows import model_factory as mf
from workflows.errors import FormatError, UnsafeModelError
from workflows.formats import load_model


def test_the_pth_payload_is_real(tmp_path):
    """Control for the corpus's pth-pickle-payload entry: opting in does run it."""
    from workflows.formats.pytorch_eager import read_state_dict

    path = recipes.malicious_pth(tmp_path)
    with pytest.raises(FormatError):  # what it holds is not a state_dict of tensors
        read_state_dict(path, allow_unsafe=True)
    assert (tmp_path / recipes.MARKER).read_text() == "pwned"


def test_the_pt2_payload_is_real_and_the_opt_in_lets_it_run(tmp_path):
    path = recipes.pt2_with(tmp_path, "data/sample_inputs/model.pt")
    load_model(path, allow_unsafe=True)  # torch.export.load falls back to the unsafe unpickler
    assert (tmp_path / recipes.MARKER).read_text() == "pwned"


def test_a_keras_lambda_opens_with_the_opt_in(tmp_path):
    path = recipes.keras_lambda(tmp_path)
    with pytest.raises(UnsafeModelError):
        load_model(path)
    assert load_model(path, allow_unsafe=True).outputs[0].shape == ("batch", 3)


CLI_CASES = {
    "empty": (lambda d: recipes.empty(d, "empty.onnx"), r"empty \(0 bytes\)"),
    "truncated": (lambda d: recipes.truncated(d, "onnx"), "truncated|not an ONNX model"),
    "random": (lambda d: recipes.random_bytes(d, "random.onnx"), "ONNX"),
    "malicious": (recipes.malicious_pth, "weights_only"),
    "malicious_pt2": (
        lambda d: recipes.pt2_with(d, "data/sample_inputs/model.pt"),
        "would run code stored in it",
    ),
    "state_dict_only": (recipes.state_dict, "--model-file"),
    "not_savedmodel": (lambda d: recipes.folder_named(d, "just_a_folder"), "saved_model.pb"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_one_line_error(case, tmp_path):
    make, pattern = CLI_CASES[case]
    path = make(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("dockyard-cli: error: ")
    assert "Traceback" not in r.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / recipes.MARKER).exists()


def test_cli_unknown_op_validate_fails_with_one_line(tmp_path):
    path = recipes.onnx_unknown_op(tmp_path)
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "validate", str(path), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "FancyActivation" in r.stderr and "Traceback" not in r.stderr


def test_state_dict_pair_still_loads(tmp_path):
    weights, model_file = mf.save_state_dict(tmp_path)
    model = load_model(weights, model_file=model_file, input_shapes={"x": [1, 3, 8, 8]})
    assert model.format == "pytorch_eager" and model.parameters == 1397
    assert Path(weights).exists()
