"""Build Dockyard's core bundle with PyInstaller (build_installer.spec), then use it as a user
would: no Python on PATH, a clean HOME, from a folder outside the checkout.

The smoke test: the GUI starts (offscreen) and paints; the bundled CLI inspects an ONNX model,
quantizes it (static INT8 with the sample's calibration data, gated on the sample's labelled
test set) and exports a Docker build context, whose own smoke test starts the inference server
with the bundle's Python mode and queries it over HTTP and gRPC. Prints the build time, the
bundle's size and the cold start to first paint; exits 1 when any check fails.

    python scripts/build_installer.py [--skip-build] [--package] [--dist DIR]
                                      [--with-pytorch] [--with-tensorflow]

The ONNX model is the bundled sample converted by this checkout's Python (the core bundle has
no PyTorch to convert it). `--package` then makes the platform's package from the folder:
a .tar.gz with a .desktop file on Linux, a .zip on Windows, a .dmg on macOS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "resources" / "sample"
EXE = ".exe" if sys.platform == "win32" else ""


def build(dist: Path, work: Path) -> float:
    """Run PyInstaller on the spec; seconds taken."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(dist), "--workpath", str(work), str(ROOT / "build_installer.spec")],
        check=True,
        cwd=ROOT,
    )  # fmt: skip
    return time.perf_counter() - started


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def user_env(home: Path) -> dict[str, str]:
    """A user's environment: a fresh HOME, a PATH with no Python on it, no PYTHON* settings."""
    bare = home / "bin"  # nothing in it: every tool the bundle needs comes with it
    bare.mkdir(parents=True, exist_ok=True)
    keep = ("LANG", "LC_ALL", "TZ", "TMPDIR", "TEMP", "TMP", "SYSTEMROOT", "WINDIR", "JAVA_HOME")
    # pip's sources stay: the user's own pip settings (here, the machine's wheel folder).
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    java = shutil.which("java")
    if java and not env.get("JAVA_HOME"):
        # A user with Java (TorchServe's) has it on PATH; that PATH here would bring Python too.
        env["JAVA_HOME"] = str(Path(java).resolve().parent.parent)
    env.update(
        HOME=str(home),
        USERPROFILE=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        LOCALAPPDATA=str(home / "AppData" / "Local"),
        PATH=str(bare),
        QT_QPA_PLATFORM="offscreen",
        QT_LOGGING_RULES="qt.qpa.*=false",
    )
    return env


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> str:
    """Run a bundled executable; its output, or SystemExit with what it said when it failed."""
    r = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        said = (r.stdout + r.stderr).strip()[-3000:]
        raise SystemExit(f"FAIL: {' '.join(command[:3])}... exited {r.returncode}:\n{said}")
    return r.stdout


def sample_onnx(out: Path) -> Path:
    """The sample as ONNX, converted by this checkout (the core bundle has no PyTorch)."""
    model = out / "digits_cnn.onnx"
    subprocess.run(
        [sys.executable, "-m", "workflows.cli", "convert", str(SAMPLE / "digits_cnn.pt2"),
         "-o", str(model)],
        check=True, cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return model


def first_paint(app: Path, env: dict[str, str], cwd: Path, runs: int) -> list[float]:
    """Milliseconds from the GUI process's start (bootloader included) to its first paint."""
    times = []
    for _ in range(runs):
        said = run([str(app / f"dockyard{EXE}"), "--quit-after-first-paint"],
                   {**env, "DOCKYARD_NO_WARM_WORKERS": "1"}, cwd, timeout=120)  # fmt: skip
        found = re.search(r"first paint (\d+) ms", said)
        if not found:
            raise SystemExit(f"FAIL: the GUI did not report its first paint: {said[-500:]}")
        times.append(float(found.group(1)))
    return times


@contextlib.contextmanager
def user_home(files: list[Path]) -> Iterator[tuple[dict[str, str], Path]]:
    """A fresh user (see user_env) and their working folder holding copies of `files`."""
    with tempfile.TemporaryDirectory(prefix="dockyard-user-") as tmp:
        home = Path(tmp)
        work = home / "work"
        work.mkdir()
        for path in files:
            shutil.copy(path, work / path.name)
        yield user_env(home), work


def smoke(app: Path, model: Path, paint_runs: int = 3) -> dict[str, object]:
    """The bundle used as a user would (see the module docstring); the figures it produced."""
    cli = str(app / f"dockyard-cli{EXE}")
    data = [SAMPLE / "digits_calibration.npz", SAMPLE / "digits_test.npz"]
    with user_home([model, *data]) as (env, work):
        paints = first_paint(app, env, work, runs=paint_runs)
        version = run([cli, "--version"], env, work).strip()
        facts = json.loads(run([cli, "inspect", model.name, "--json"], env, work))
        quantized = json.loads(
            run([cli, "quantize", model.name, "-o", "variants", "--mode", "static",
                 "--calibration", "digits_calibration.npz", "--evaluation", "digits_test.npz",
                 "--json"], env, work)
        )  # fmt: skip
        int8 = next(Path(work / "variants").glob("*int8*.onnx"), None)
        if int8 is None:
            raise SystemExit(f"FAIL: quantize wrote no INT8 model: {quantized}")
        exported = json.loads(
            run([cli, "export", "docker", str(int8), "-o", "docker", "--no-build", "--json"],
                env, work)
        )  # fmt: skip
        return {
            "version": version,
            "first_paint_ms": paints,
            "inputs": facts["model"]["inputs"],
            "quantize": quantized,
            "export": exported,
            "files": sorted(p.name for p in (work / "docker").iterdir()),
        }


def with_pytorch(app: Path) -> dict[str, object]:
    """A PyTorch .pt2 in the core bundle: the clear error from the CLI first; then the GUI
    (scripts/frozen_gui_walk.py, run by the bundle) opens it, gets the offer, prepares PyTorch
    and walks it through every page's steps to the Docker and TorchServe exports."""
    cli = str(app / f"dockyard-cli{EXE}")
    names = ("digits_cnn.pt2", "digits_calibration.npz", "digits_test.npz")
    files = [SAMPLE / name for name in names] + [ROOT / "scripts" / "frozen_gui_walk.py"]
    with user_home(files) as (env, work):
        home = work.parent
        inspected = json.loads(run([cli, "inspect", "digits_cnn.pt2", "--json"], env, work))
        r = subprocess.run([cli, "convert", "digits_cnn.pt2", "-o", "x.onnx"], env=env,
                           cwd=work, capture_output=True, text=True, timeout=300)  # fmt: skip
        if r.returncode == 0 or "frameworks install torch" not in r.stderr:
            raise SystemExit(f"FAIL: convert without PyTorch did not say how to get it: {r.stderr}")
        # The console executable in Python mode (the windowed one has no stdout on Windows).
        said = run([cli, "--dockyard-python", "frozen_gui_walk.py"], env, work, timeout=3600)
        folder = home / ".cache" / "dockyard" / "frameworks" / "torch"
        return {
            "inspect_params": inspected["model"]["parameters"],
            "refused": r.stderr.strip().splitlines()[-1],
            "gui": json.loads(said.strip().splitlines()[-1]),
            "framework_mb": folder_size(folder) / 1e6 if folder.is_dir() else 0.0,
        }


GUI_STEPS = ["inspect", "frameworks", "convert", "validate", "quantize", "predict", "benchmark",
             "export-docker", "export-torchserve"]  # fmt: skip


def gui_problems(gui: dict) -> list[str]:
    """What is wrong with the frozen GUI's walk (empty: nothing)."""
    problems = []
    offers = gui.get("offers", [])
    if len(offers) != 1 or "MB download" not in offers[0].get("details", ""):
        problems.append(
            f"the GUI's offer to prepare PyTorch: expected one with its size, got {offers}"
        )
    ran = [s["step"] for s in gui.get("steps", []) if s["ok"]]
    if [s for s in GUI_STEPS if s not in ran] or gui.get("errors"):
        problems.append(f"the GUI's walk: {gui}")
    cancelled = gui.get("cancelled") or {}
    if (
        cancelled.get("ended_ok") is not False
        or cancelled.get("left")
        or not cancelled.get("processes")
    ):
        problems.append(f"the GUI's cancel of a running step: {cancelled}")
    for export, smoke in gui.get("smoke", {}).items():
        if not (smoke or {}).get("passed"):
            problems.append(f"the GUI's {export}: its smoke test did not pass: {smoke}")
    return problems


KERAS_PIPELINE = """version: 1
model: {path: classifier.keras}
output: runs
steps:
  - step: convert
  - step: validate
    options: {inputs: test.npz}
  - step: quantize
    options: {modes: [static], calibration: calibration.npz, evaluation: test.npz}
  - step: benchmark
  - step: export-tflite
    options: {variants: [fp32, int8], calibration: calibration.npz, evaluation: test.npz}
  - step: export-docker
"""


def keras_classifier(out: Path) -> list[Path]:
    """A small Keras image classifier trained here on synthetic classes (this checkout's Keras:
    the core bundle has none), with calibration and labelled test data."""
    code = f"""
import numpy as np, keras
keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
patterns = rng.standard_normal((5, 8, 8, 3)).astype("float32")
def data(n):
    y = rng.integers(0, 5, n)
    return (patterns[y] + 0.7 * rng.standard_normal((n, 8, 8, 3))).astype("float32"), y
model = keras.Sequential([keras.Input((8, 8, 3), name="image"),
    keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
    keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
x, y = data(2000)
model.fit(x, y, epochs=8, verbose=0)
model.save({str(out / "classifier.keras")!r})
np.savez({str(out / "calibration.npz")!r}, x=data(128)[0])
x, y = data(500)
np.savez({str(out / "test.npz")!r}, x=x, y=y)
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=600,
                   capture_output=True)  # fmt: skip
    return [out / "classifier.keras", out / "calibration.npz", out / "test.npz"]


def with_tensorflow(app: Path) -> dict[str, object]:
    """A Keras model in the core bundle: the clear error first, then TensorFlow prepared from
    its lock file, then the model through every step up to the TFLite and Docker exports."""
    cli = str(app / f"dockyard-cli{EXE}")
    with (
        tempfile.TemporaryDirectory() as tmp,
        user_home(keras_classifier(Path(tmp))) as (env, work),
    ):
        home = work.parent
        r = subprocess.run([cli, "convert", "classifier.keras", "-o", "x.onnx"], env=env,
                           cwd=work, capture_output=True, text=True, timeout=300)  # fmt: skip
        if r.returncode == 0 or "frameworks install tensorflow" not in r.stderr:
            raise SystemExit(
                f"FAIL: convert without TensorFlow did not say how to get it: {r.stderr}"
            )
        started = time.perf_counter()
        run([cli, "frameworks", "install", "tensorflow", "--json"], env, work, timeout=1800)
        prepare_seconds = time.perf_counter() - started
        folder = home / ".cache" / "dockyard" / "frameworks" / "tensorflow"
        (work / "all.yaml").write_text(KERAS_PIPELINE)
        started = time.perf_counter()
        steps = json.loads(run([cli, "run", "all.yaml", "--json"], env, work, timeout=1800))
        results = {s["step"]: s.get("result") or {} for s in steps["steps"]}
        return {
            "refused": r.stderr.strip().splitlines()[-1],
            "prepare_seconds": prepare_seconds,
            "framework_mb": folder_size(folder) / 1e6,
            "pipeline_seconds": time.perf_counter() - started,
            "steps": list(results),
            "results": results,
        }


def keras_figures(results: dict[str, dict]) -> str:
    """The Keras run's numbers in one line."""
    int8 = results["quantize"]["variants"][0]
    tfl = {v["variant"]: v["validation"] for v in results["export-tflite"]["variants"]}
    served = results["export-docker"].get("smoke_test") or {}
    return (
        f"Keras -> ONNX max abs error {results['validate']['worst']['max_abs_error']:.2e}; "
        f"ONNX static INT8 top-1 "
        f"{100 * int8['accuracy']['top1']:.1f} % ({int8['accuracy']['gate']['decision']}); "
        f"TFLite fp32 max abs error {tfl['fp32']['max_abs_error']:.2e}, int8 gate "
        f"{tfl['int8']['gate']['decision']}; Docker server max abs error "
        f"{served.get('max_abs_error')}"
    )


def keras_problems(tf: dict[str, object]) -> list[str]:
    """What is wrong with the Keras run (empty: nothing)."""
    results: dict[str, dict] = tf["results"]  # type: ignore[assignment]
    if len(results) != KERAS_PIPELINE.count("- step:"):
        return [f"the Keras workflow ran {list(results)}"]
    problems = []
    if not results["validate"]["passed"]:
        problems.append(f"Keras -> ONNX validation failed: {results['validate']['worst']}")
    if not results["export-tflite"]["passed"]:
        problems.append(f"the TFLite bundle did not pass: {results['export-tflite']['variants']}")
    if not (results["export-docker"].get("smoke_test") or {}).get("passed"):
        problems.append("the Keras model's Docker server smoke test did not pass")
    return problems


def check(found: dict[str, object]) -> list[str]:
    """What is wrong with the smoke test's figures (empty: nothing)."""
    problems = []
    smoke_test = found["export"].get("smoke_test") or {}  # type: ignore[union-attr]
    if not smoke_test.get("passed"):
        problems.append(f"the Docker export's server smoke test did not pass: {smoke_test}")
    if "Dockerfile" not in found["files"] or "server" not in found["files"]:  # type: ignore[operator]
        problems.append(f"the Docker context is incomplete: {found['files']}")
    if not found["inputs"]:
        problems.append("inspect found no inputs")
    int8 = found["quantize"]["variants"][0]  # type: ignore[index]
    if int8["accuracy"]["gate"]["decision"] == "fail":
        problems.append(f"the static INT8 variant failed its accuracy gate: {int8['accuracy']}")
    return problems


def package(app: Path, dist: Path, version: str) -> Path:
    """The platform's package of the one-folder bundle."""
    machine = platform.machine().lower()
    if sys.platform.startswith("linux"):
        desktop = app / "dockyard.desktop"
        desktop.write_text(
            "[Desktop Entry]\nType=Application\nName=Dockyard\n"
            "Comment=Take a trained ML model to deployment\nExec=dockyard %f\nIcon=dockyard\n"
            "Categories=Development;Science;\nTerminal=false\n"
        )
        shutil.copy(ROOT / "resources" / "icons" / "dockyard.png", app / "dockyard.png")
        out = dist / f"Dockyard-{version}-linux-{machine}.tar.gz"
        with tarfile.open(out, "w:gz") as tar:
            tar.add(app, arcname=f"Dockyard-{version}")
    elif sys.platform == "win32":
        out = dist / f"Dockyard-{version}-windows-{machine}.zip"
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for p in app.rglob("*"):
                z.write(p, Path(f"Dockyard-{version}") / p.relative_to(app))
    else:
        out = dist / f"Dockyard-{version}-macos-{machine}.dmg"
        subprocess.run(
            ["hdiutil", "create", "-volname", "Dockyard", "-srcfolder",
             str(dist / "Dockyard.app"), "-ov", "-format", "UDZO", str(out)],
            check=True,
        )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--skip-build", action="store_true", help="smoke-test the last build")
    parser.add_argument("--package", action="store_true", help="make the platform's package")
    parser.add_argument("--paint-runs", type=int, default=3, help="GUI starts to time")
    parser.add_argument("--with-pytorch", action="store_true",
                        help="then prepare PyTorch in the bundle (a 197 MB download) and run "
                        "the sample .pt2 through every step to the Docker export")  # fmt: skip
    parser.add_argument("--with-tensorflow", action="store_true",
                        help="then prepare TensorFlow in the bundle (a 310 MB download) and run "
                        "a Keras model through every step to the TFLite and Docker exports")  # fmt: skip
    args = parser.parse_args()
    dist = args.dist.resolve()
    app = dist / "Dockyard"
    from workflows import __version__
    from workflows.machine import measured_on

    print(f"measured on: {measured_on()['label']}, {os.cpu_count()} cores")
    if not args.skip_build:
        seconds = build(dist, dist.parent / "build-installer")
        print(f"build: {seconds:.0f} s")
    size = folder_size(app)
    print(f"core bundle: {size / 1e6:.0f} MB unpacked ({app})")
    with tempfile.TemporaryDirectory() as tmp:
        model = sample_onnx(Path(tmp))
        found = smoke(app, model, args.paint_runs)
    paints = found["first_paint_ms"]
    print(f"cold start to first paint: {', '.join(f'{t:.0f}' for t in paints)} ms")  # type: ignore[union-attr]
    print(f"bundled CLI: {found['version']}; inspect, quantize (static INT8), export docker: ok")
    smoke_test = found["export"].get("smoke_test") or {}  # type: ignore[union-attr]
    print(f"exported server, started from the bundle: ready in {smoke_test.get('server_ready_seconds')} s, "
          f"protocols {', '.join(smoke_test.get('protocols', []))}; the server's answer vs the "
          f"model: max abs error {smoke_test.get('max_abs_error')}")  # fmt: skip
    quantized = found["quantize"]
    int8 = quantized["variants"][0]  # type: ignore[index]
    print(f"static INT8: top-1 {100 * int8['accuracy']['top1']:.2f} % (float "
          f"{100 * quantized['float_model']['accuracy']['top1']:.2f} %), "  # type: ignore[index]
          f"{int8['size_ratio']:.2f}x smaller, gate {int8['accuracy']['gate']['decision']}")  # fmt: skip
    problems = check(found)
    if args.with_pytorch:
        torch = with_pytorch(app)
        print(
            f"a .pt2 without PyTorch: inspected ({torch['inspect_params']:,} parameters); "
            f"convert refused with: {torch['refused']}"
        )
        gui = torch["gui"]
        seconds = {s["step"]: s["seconds"] for s in gui["steps"]}  # type: ignore[index]
        print(f"the GUI opened it and offered: {gui['offers'][0]['details'] if gui['offers'] else None}")  # type: ignore[index]  # fmt: skip
        print(
            f"PyTorch prepared from its lock file (the GUI's offer accepted) in "
            f"{seconds.get('frameworks', 0):.0f} s, {torch['framework_mb']:.0f} MB on disk"
        )
        print(
            f"the GUI's steps after it: {', '.join(f'{k} {v:.1f} s' for k, v in seconds.items())}"
        )
        cancelled = gui["cancelled"]  # type: ignore[index]
        print(f"a running {cancelled.get('step')} cancelled from the GUI: ended in "
              f"{cancelled.get('seconds')} s, {cancelled.get('processes')} step process(es), "
              f"{len(cancelled.get('left') or [])} left")  # fmt: skip
        served = {k: v or {} for k, v in gui["smoke"].items()}  # type: ignore[union-attr]
        print(f"the exports' smoke tests from the GUI: Docker server max abs error "
              f"{served['export-docker'].get('max_abs_error')}; the .mar served by TorchServe "
              f"(its workers the bundle's Python mode): max abs error "
              f"{served['export-torchserve'].get('max_abs_error')}")  # fmt: skip
        problems += gui_problems(gui)  # type: ignore[arg-type]
    if args.with_tensorflow:
        tf = with_tensorflow(app)
        print(f"a .keras without TensorFlow: convert refused with: {tf['refused']}")
        print(
            f"TensorFlow prepared from its lock file in {tf['prepare_seconds']:.0f} s, "
            f"{tf['framework_mb']:.0f} MB on disk"
        )
        print(
            f"a Keras classifier through {', '.join(tf['steps'])}: "  # type: ignore[arg-type]
            f"{tf['pipeline_seconds']:.0f} s"
        )
        print(keras_figures(tf["results"]))  # type: ignore[arg-type]
        problems += keras_problems(tf)
    if args.package and not problems:
        out = package(app, dist, __version__)
        print(f"package: {out} ({out.stat().st_size / 1e6:.0f} MB)")
    for problem in problems:
        print(f"FAIL: {problem}")
    print("FAIL" if problems else "PASS")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
