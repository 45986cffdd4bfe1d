"""`import workflows` (and every engine module) pulls in no Qt and no heavy ML framework."""

import pkgutil
import subprocess
import sys

import workflows

HEAVY = ["torch", "tensorflow", "keras", "PySide6", "onnxruntime", "tf2onnx", "ai_edge_litert",
         "sklearn", "skops", "skl2onnx"]  # fmt: skip


def _all_modules() -> list[str]:
    # __main__ modules are scripts (`python -m workflows.cli`): importing one runs it.
    found = pkgutil.walk_packages(workflows.__path__, "workflows.")
    return [m.name for m in found if not m.name.endswith(".__main__")]


def test_engine_imports_without_frameworks():
    modules = ["workflows", *_all_modules()]
    assert len(modules) > 20
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print([h for h in {HEAVY!r} if h in sys.modules])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]", f"heavy modules imported: {r.stdout}"


def test_framework_is_really_detected():
    """The check above can fail: importing torch does show up in sys.modules."""
    code = "import sys, workflows, torch; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "True"


ONNX_ONLY = """
import json, sys
from workflows.runner import run_inline
onnx, q, data, one, out = sys.argv[1:6]
steps = [
    ("inspect", {{"model": {{"path": onnx}}}}),
    ("validate", {{"original": {{"path": onnx}}, "candidate": {{"path": q + "/digits_cnn.fp32.onnx"}},
                  "inputs": data}}),
    ("predict", {{"models": [onnx], "input": one}}),
    ("benchmark", {{"models": [q], "max_seconds": 0.5, "output": out + "/bench.json"}}),
    ("report", {{"inputs": [q, out + "/bench.json"], "output": out + "/report.html"}}),
    ("export-docker", {{"model": {{"path": onnx}}, "output": out + "/docker", "build": False}}),
]
seen = {{}}
for name, options in steps:
    run_inline(name, options)
    seen[name] = [h for h in {heavy!r} if h in sys.modules]
print(json.dumps(seen))
"""


def test_steps_on_an_onnx_model_never_import_torch_or_tensorflow(sample_dir, tmp_path):
    """A warm ONNX worker serves them, and a fresh process for them stays light."""
    import numpy as np

    from workflows.runner import run_step

    onnx = tmp_path / "digits_cnn.onnx"
    run_step("convert", {"model": {"path": str(sample_dir / "digits_cnn.pt2")},
                         "output": str(onnx)}, timeout=300)  # fmt: skip
    q = tmp_path / "q"
    run_step("quantize", {"model": {"path": str(onnx)}, "output": str(q), "modes": ["dynamic"]},
             timeout=300)  # fmt: skip
    one = tmp_path / "one.npy"
    np.save(one, np.load(sample_dir / "digits_test.npz")["x"][0])
    code = ONNX_ONLY.format(heavy=["torch", "tensorflow", "keras", "tf2onnx"])
    args = [str(onnx), str(q), str(sample_dir / "digits_test.npz"), str(one), str(tmp_path)]
    r = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    import json

    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert list(seen) == ["inspect", "validate", "predict", "benchmark", "report", "export-docker"]
    assert all(found == [] for found in seen.values()), seen
