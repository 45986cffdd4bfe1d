"""Workflow files: save/load (YAML, JSON), validation against each step's options, headless run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from workflows.errors import DataError, DockyardError
from workflows.options import LoadOptions
from workflows.workflow import Step, Workflow, plan, run_workflow


def _wf(sample_dir, out) -> Workflow:
    return Workflow(
        LoadOptions(path=str(sample_dir / "digits_cnn.pt2")),
        [
            Step("convert", {"opset": 17}),
            Step("validate", {"inputs": str(sample_dir / "digits_test.npz")}),
            Step(
                "quantize",
                {
                    "modes": ["static"],
                    "calibration": str(sample_dir / "digits_calibration.npz"),
                    "evaluation": str(sample_dir / "digits_test.npz"),
                },
            ),
        ],
        str(out),
    )


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_and_load_round_trip(sample_dir, tmp_path, suffix):
    wf = _wf(sample_dir, tmp_path / "run")
    path = tmp_path / f"wf{suffix}"
    wf.save(path)
    again = Workflow.load(path)
    assert again.to_dict() == wf.to_dict()


def test_plan_derives_paths(sample_dir, tmp_path):
    steps = plan(_wf(sample_dir, tmp_path / "run"))
    convert, validate, quantize = steps
    onnx_path = tmp_path / "run" / "digits_cnn" / "convert" / "digits_cnn.onnx"
    assert convert[2] == onnx_path
    assert validate[1]["candidate"] == {"path": str(onnx_path)}
    assert quantize[1]["model"] == {"path": str(onnx_path)}


@pytest.mark.parametrize(
    "bad,message",
    [
        (
            {"model": {"path": "m.onnx"}, "steps": [{"step": "transmogrify"}]},
            "step 1 is 'transmogrify'",
        ),
        (
            {
                "model": {"path": "m.onnx"},
                "steps": [{"step": "convert", "options": {"output": "x"}}],
            },
            "sets \\['output'\\]",
        ),
        (
            {
                "model": {"path": "m.onnx"},
                "steps": [{"step": "quantize", "options": {"mode": "x"}}],
            },
            "unknown option",
        ),
        (
            {
                "model": {"path": "m.onnx"},
                "steps": [{"step": "quantize", "options": {"preprocess": {"std": [1, "x"]}}}],
            },
            r"step 1 \(quantize\): options\.preprocess\.std\[1\]: expected a number",
        ),
        ({"model": {"path": 3}, "steps": []}, "model.path: expected a string"),
        ({"steps": []}, "needs 'model' and 'steps'"),
        ({"version": 9, "model": {"path": "m"}, "steps": []}, "version 9"),
    ],
)
def test_bad_workflows_are_explained(bad, message):
    with pytest.raises(DockyardError, match=message):
        Workflow.from_dict(bad)


def test_run_headless_and_from_the_cli(sample_dir, tmp_path):
    wf = _wf(sample_dir, tmp_path / "run")
    result = run_workflow(wf)
    assert [s["step"] for s in result["steps"]] == ["convert", "validate", "quantize"]
    validate = json.loads((tmp_path / "run" / "digits_cnn" / "validate.json").read_text())
    assert validate["passed"] and validate["worst"]["max_abs_error"] < 1e-4
    q = result["steps"][2]["result"]
    assert q["variants"][0]["size_ratio"] >= 3.5

    path = tmp_path / "wf.yaml"
    wf.output = str(tmp_path / "cli_run")
    wf.steps = wf.steps[:1]
    wf.save(path)
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "run", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cli_run" / "digits_cnn" / "convert" / "digits_cnn.onnx").is_file()


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        Workflow.load(tmp_path / "nope.yaml")
