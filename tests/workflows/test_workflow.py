"""Workflow files: save/load (YAML, JSON), validation against each step's options, headless run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.replay import absolute_paths, differences
from workflows import catalogue
from workflows.errors import DataError, DockyardError
from workflows.exporters.common import portable
from workflows.options import LoadOptions, from_dict
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


def test_replay_comparison_sees_what_differs(tmp_path):
    a, b = tmp_path / "a" / "m", tmp_path / "b" / "m"
    for root, created, weight in ((a, "2026-01-01", b"\x01"), (b, "2026-02-02", b"\x01")):
        (root / "export").mkdir(parents=True)
        (root / "export" / "manifest.json").write_text(
            json.dumps({"created": created, "output": str(root / "export"), "n": 1})
        )
        (root / "export" / "model.onnx").write_bytes(weight)
    assert differences(a, b, ["export"]) == []  # a timestamp and the run folder may differ
    (b / "export" / "model.onnx").write_bytes(b"\x02")
    (b / "export" / "manifest.json").write_text(json.dumps({"created": "x", "n": 2}))
    assert differences(a, b, ["export"]) == ["export/manifest.json", "export/model.onnx"]


def test_manifests_name_no_folder_of_this_machine():
    manifest = portable(
        {"source": {"file": "m.pt2"}, "steps": [{"options": {"model": {"path": "/home/me/m.pt2"},
         "calibration": "C:\\data\\calib.npz", "name": "digits", "labels": None}}]}
    )  # fmt: skip
    assert absolute_paths(manifest) == []
    options = manifest["steps"][0]["options"]
    assert options["model"]["path"] == "m.pt2" and options["calibration"] == "calib.npz"
    assert options["name"] == "digits"


# A workflow saved by the app before the catalogue and the typed loader (2026-11, version 1),
# verbatim but for the paths: it must still load, type-check and plan the same folders.
V1_FROM_THE_APP = """\
version: 1
model:
  path: {sample}/digits_cnn.pt2
  format: null
  model_file: null
  model_class: null
  input_shapes: {{}}
  dynamic_batch: true
  allow_unsafe: false
output: {out}
steps:
- step: convert
  options:
    opset: 18
    simplify: true
- step: validate
  options:
    inputs: {sample}/digits_test.npz
- step: quantize
  options:
    modes:
    - static
    calibration: {sample}/digits_calibration.npz
    evaluation: {sample}/digits_test.npz
    labels: null
    max_accuracy_drop: 1.0
    preprocess:
      size: null
      layout: NCHW
      channels: L
      scale: 0.00392156862745098
      mean:
      - 0.0
      std:
      - 1.0
- step: benchmark
  options:
    batch_sizes:
    - 1
    threads:
    - 0
    max_seconds: 5.0
- step: export-tflite
  options:
    labels: null
    calibration: {sample}/digits_calibration.npz
    evaluation: {sample}/digits_test.npz
"""


def test_version_1_files_from_the_app_still_load_and_plan(sample_dir, tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(V1_FROM_THE_APP.format(sample=sample_dir, out=tmp_path / "run"))
    wf = Workflow.load(path)
    planned = {name: (options, out) for name, options, out in plan(wf)}
    root = tmp_path / "run" / "digits_cnn"
    assert planned["convert"][1] == root / "convert" / "digits_cnn.onnx"
    assert planned["validate"][0]["output"] == str(root / "validate.json")
    assert planned["quantize"][0]["model"] == {"path": str(root / "convert" / "digits_cnn.onnx")}
    assert planned["benchmark"][0]["models"] == [str(root / "quantize")]
    assert planned["export-tflite"][1] == root / "export-tflite"
    for name, options, _ in plan(wf):  # every planned step builds its options
        from_dict(catalogue.spec(name).options_class(), options)


def test_a_workflow_file_cannot_grant_unsafe_loading(sample_dir, tmp_path):
    data = {"model": {"path": str(sample_dir / "digits_cnn.pt2"), "allow_unsafe": True},
            "steps": [{"step": "convert"}]}  # fmt: skip
    with pytest.raises(DataError, match=r"cannot grant itself.*run --allow-unsafe"):
        Workflow.from_dict(data)
    wf = _wf(sample_dir, tmp_path / "run")
    wf.model.allow_unsafe = True  # granted at the keyboard for this run: never saved
    wf.save(tmp_path / "wf.yaml")
    assert "allow_unsafe" not in (tmp_path / "wf.yaml").read_text()
    assert Workflow.load(tmp_path / "wf.yaml").model.allow_unsafe is False


def test_run_allow_unsafe_is_the_users_flag(tmp_path):
    from workflows.cli import build_parser

    for argv, granted in (
        (["run", "wf.yaml"], False),
        (["run", "wf.yaml", "--allow-unsafe"], True),
    ):
        args = build_parser().parse_args(argv)
        step, options, _ = args.command_options(args)
        assert step == "run" and options["allow_unsafe"] is granted


def test_a_run_hands_each_step_a_warm_worker_and_converts_once(sample_dir, tmp_path, monkeypatch):
    from workflows import warm

    monkeypatch.delenv(warm.DISABLE_ENV, raising=False)
    pool = warm.Pool()
    monkeypatch.setattr(warm, "_POOL", pool)
    wf = _wf(sample_dir, tmp_path / "run")
    wf.steps = [*wf.steps[:2], Step("export-docker", {"build": False})]
    try:
        result = run_workflow(wf, logs=tmp_path / "logs")
    finally:
        pool.shutdown()
    steps = result["steps"]
    # The first step starts cold; each next one was imported while the one before ran.
    assert [s["warm"] for s in steps] == [False, True, True]
    assert all(s["seconds"] > 0 for s in steps)
    manifest = steps[2]["result"]["manifest"]
    convert = next(s for s in manifest["steps"] if s["step"] == "convert")
    assert convert["reused"] == "digits_cnn.onnx" and convert["opset"] == 17
    note = (tmp_path / "run" / "digits_cnn" / "HANDOFF.md").read_text()
    assert result["handoff"].endswith("HANDOFF.md") and note.startswith("## digits_cnn")
    assert "**ONNX model** — `convert/digits_cnn.onnx`" in note
    assert "**Docker image** — `export-docker`" in note and "docker build -t" in note
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "01-convert.log", "02-validate.log", "03-export-docker.log"
    ]  # fmt: skip


def test_an_export_hands_off_the_variant_it_is_told_to(tmp_path):
    from workflows.planner import plan_steps

    model = {"path": "models/net.pt", "model_file": "net.py"}
    out = tmp_path / "run"
    root = out / "net"

    def planned(steps, export_options):
        found = plan_steps(out, model, [(s, {}) for s in steps] + [("export-docker",
                                                                      export_options)])  # fmt: skip
        return found[-1][1]

    # After pruning, quantize reads the pruned model and names its files after it.
    steps = ["prune", "quantize", "compress"]
    picked = planned(steps, {"source": "int8-static"})
    assert picked["model"] == {"path": str(root / "quantize" / "net.pruned.int8-static.onnx")}
    assert picked["converted"] is None
    assert planned(steps, {"source": "pruned"})["model"]["path"] == str(
        root / "prune" / "net.pruned.onnx"
    )
    assert planned(steps, {"source": "clustered"})["model"]["path"] == str(
        root / "compress" / "net.pruned.clustered.onnx"
    )
    # Without pruning, after a conversion: the converted model's name.
    assert planned(["convert", "quantize"], {"source": "fp16"})["model"]["path"] == str(
        root / "quantize" / "net.fp16.onnx"
    )
    assert planned(["convert"], {})["model"] == model  # the original, as before
    with pytest.raises(DockyardError, match="made by the compress step"):
        planned(["convert", "quantize"], {"source": "sparse"})
    with pytest.raises(DockyardError, match=r"unknown variant 'int4'.*original, pruned"):
        planned(["quantize"], {"source": "int4"})


def test_consecutive_exports_are_grouped_to_run_side_by_side(monkeypatch):
    from workflows.errors import OptionsError
    from workflows.workflow import SIDE_BY_SIDE_ENV, _batches

    def planned(*steps: str | tuple[str, dict]) -> list[tuple[str, dict, Path]]:
        return [(s, {}, Path(s)) if isinstance(s, str) else (*s, Path(s[0])) for s in steps]

    steps = planned(
        "convert", "export-docker", "export-torchserve",
        "export-docker",  # the same export again writes the same folder: not beside the first
        "export-triton", "report", "export-tflite",
        ("export-docker", {"add_to": "earlier"}),  # adds to an earlier export's folder
    )  # fmt: skip
    monkeypatch.delenv(SIDE_BY_SIDE_ENV, raising=False)
    assert _batches(steps) == [[0], [1, 2], [3, 4], [5], [6], [7]]
    monkeypatch.setenv(SIDE_BY_SIDE_ENV, "1")
    assert _batches(steps) == [[i] for i in range(8)]
    monkeypatch.setenv(SIDE_BY_SIDE_ENV, "0")
    with pytest.raises(OptionsError, match="DOCKYARD_SIDE_BY_SIDE: '0' is not a whole number"):
        _batches(steps)


def test_exports_run_side_by_side_and_a_failing_one_leaves_nothing(sample_dir, tmp_path):
    wf = _wf(sample_dir, tmp_path / "run")
    wf.steps = [
        wf.steps[0],
        Step("export-docker", {"build": False}),
        Step("export-triton", {}),
    ]
    result = run_workflow(wf)
    steps = result["steps"]
    assert [s["step"] for s in steps] == ["convert", "export-docker", "export-triton"]
    (_, docker_end), (triton_start, _) = steps[1]["span"], steps[2]["span"]
    assert triton_start < docker_end  # the second export started before the first one ended
    assert steps[1]["span"][0] >= steps[0]["span"][1]  # and both after the conversion
    root = tmp_path / "run" / "digits_cnn"
    assert (root / "export-docker" / "manifest.json").is_file()
    assert steps[2]["result"]["validation"]  # checked against the original

    # A failing export: its error is the run's; nothing half-written is left by either export.
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 3, 5, 5), np.float32))  # the sample takes 1x1x8x8
    failing = _wf(sample_dir, tmp_path / "failing")
    failing.steps = [
        failing.steps[0],
        Step("export-docker", {"build": False, "sample_inputs": str(bad)}),
        Step("export-triton", {}),
    ]
    with pytest.raises(DockyardError, match=r"bad\.npy: the model refused this sample"):
        run_workflow(failing)
    left = sorted(p.name for p in (tmp_path / "failing" / "digits_cnn").iterdir())
    assert "export-docker" not in left
    assert not [name for name in left if name.startswith(".")], left  # no partial folders
