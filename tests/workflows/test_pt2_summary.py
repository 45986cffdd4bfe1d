"""A torch.export .pt2 inspected from its JSON, without importing torch (issue 18: the sample's
inspect imported torch, dynamo and sympy, 2-4 s, to read a 17 KB file): the same summary as
torch's own loader gives, and every archive it does not fully know left to that loader."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import pytest

from tests.corpus import model_recipes as recipes
from tests.workflows import model_factory as mf
from workflows.errors import FormatError, UnsafeModelError
from workflows.formats import load_model
from workflows.formats.pt2_summary import summarize
from workflows.progress import Progress
from workflows.steps.inspect import inspect_model
from workflows.steps.inspect import run as inspect_run


def _with_torch(path):
    result = inspect_model(load_model(path))
    result.pop("seconds")
    return result


def _without_torch(path):
    model, details = summarize(path)
    result = inspect_model(model, details=details)
    result.pop("seconds")
    return result


@pytest.mark.parametrize("which", ["sample", "dynamic batch", "batch norm buffers"])
def test_the_summary_equals_torchs_own(which, sample_dir, tmp_path):
    if which == "sample":
        path = sample_dir / "digits_cnn.pt2"
    elif which == "dynamic batch":
        path = mf.save_exported_program(tmp_path)
    else:
        import torch

        module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4),
                                     torch.nn.Flatten(), torch.nn.Linear(144, 2)).eval()  # fmt: skip
        program = torch.export.export(module, (torch.randn(1, 3, 8, 8),))
        path = tmp_path / "bn.pt2"
        torch.export.save(program, str(path))
    fast = _without_torch(path)
    assert fast == _with_torch(path)
    assert fast["model"]["parameters"] > 0 and fast["op_histogram"]
    if which == "dynamic batch":
        batch = fast["model"]["inputs"][0]["shape"][0]  # torch's symbol for it (s77)
        assert fast["model"]["inputs"][0]["shape"][1:] == [3, 8, 8]
        assert fast["model"]["metadata"]["range_constraints"][batch].startswith("VR[")
    if which == "batch norm buffers":  # running mean/var and the batch counter (int64) count too
        assert set(fast["parameters_by_dtype"]) == {"float32", "int64"}


def test_the_inspect_step_reads_a_pt2_without_importing_torch(sample_dir):
    code = ("import sys, json; from workflows.steps.inspect import run; "
            "from workflows.progress import Progress; "
            f"r = run({{'model': {{'path': {str(sample_dir / 'digits_cnn.pt2')!r}}}}}, Progress()); "
            "print(json.dumps([r['model']['parameters'], 'torch' in sys.modules]))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout) == [71754, False], out.stderr


@pytest.mark.parametrize(
    "recipe, error",
    [
        (lambda d: recipes.pt2_with(d, "data/sample_inputs/model.pt"), UnsafeModelError),
        (recipes.pt2_pickled_weight, UnsafeModelError),
        (lambda d: recipes.pt2_with(d, "models/model.json", payload="garbage"), FormatError),
    ],
    ids=["code in the sample inputs", "pickled weight", "damaged program"],
)
def test_what_it_does_not_know_goes_to_torchs_loader(recipe, error, tmp_path):
    path = recipe(tmp_path)
    assert summarize(path) is None
    with pytest.raises(error):  # torch's loader, with its own checks and messages
        inspect_run({"model": {"path": str(path)}}, Progress())
    assert not (tmp_path / recipes.MARKER).exists()


def test_an_unknown_schema_version_is_left_to_torch(sample_dir, tmp_path):
    path = tmp_path / "future.pt2"
    with zipfile.ZipFile(sample_dir / "digits_cnn.pt2") as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename.endswith("models/model.json"):
                program = json.loads(body)
                program["schema_version"]["major"] = 99
                body = json.dumps(program).encode()
            dst.writestr(item, body)
    assert summarize(path) is None
