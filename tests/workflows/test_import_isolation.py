"""`import workflows` (and every engine module) pulls in no Qt and no heavy ML framework."""

import pkgutil
import subprocess
import sys

import workflows

HEAVY = ["torch", "tensorflow", "keras", "PySide6", "onnxruntime", "tf2onnx", "ai_edge_litert"]


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
