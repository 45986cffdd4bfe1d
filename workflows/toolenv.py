"""Isolated tool environments that Dockyard prepares on first use.

Some converters cannot share Dockyard's environment: onnx2tf pins older onnx, onnxruntime, numpy,
protobuf and TensorFlow (see FIELD_NOTES). It gets its own virtual environment under the user's
cache folder, created once and reused after; a half-made environment is never used.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from workflows.errors import ConversionError
from workflows.progress import Progress, null_progress

ONNX2TF = ("onnx2tf", "1.29.24")


def cache_dir() -> Path:
    """Where tool environments live: $DOCKYARD_TOOLS_DIR, else the platform's cache folder."""
    env = os.environ.get("DOCKYARD_TOOLS_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "dockyard" / "tools"


def _bin(env: Path) -> Path:
    return env / ("Scripts" if sys.platform == "win32" else "bin")


def ensure(package: str, version: str, progress: Progress | None = None) -> Path:
    """The bin folder of an environment holding `package==version`, created on first use."""
    progress = progress or null_progress()
    root = cache_dir()
    env = root / f"{package}-{version}"
    marker = env / "dockyard-ready.json"
    if marker.exists():
        return _bin(env)
    root.mkdir(parents=True, exist_ok=True)
    # Two Dockyards (the app and a CLI run, two CI jobs) may both find it missing: one builds it,
    # the other waits for the lock and then finds the marker (without the lock each deleted the
    # other's half-made folder).
    with _exclusive(root / f"{package}-{version}.lock"):
        if marker.exists():
            return _bin(env)
        return _build(env, marker, package, version, progress)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """An inter-process lock held while the block runs (flock on POSIX, msvcrt on Windows)."""
    with open(lock_path, "a+b") as handle:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ten seconds: keep waiting
                    continue
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _build(env: Path, marker: Path, package: str, version: str, progress: Progress) -> Path:
    # Virtual environments cannot be moved (their scripts name their own path), so it is built in
    # place; the marker, written last, is what says it is complete. A folder without it is rebuilt.
    shutil.rmtree(env, ignore_errors=True)
    try:
        progress.update(0.02, f"First use: creating the {package} environment (about a minute)")
        subprocess.run(
            [sys.executable, "-m", "venv", str(env)], check=True, capture_output=True, timeout=300
        )
        pip = [
            str(_bin(env) / "python"),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            f"{package}=={version}",
        ]
        proc = subprocess.Popen(pip, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for i, line in enumerate(proc.stdout):  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith(("Collecting", "Installing", "Successfully")):
                progress.update(min(0.05 + i / 400, 0.95), line.strip()[:100])
        if proc.wait() != 0:
            tail = "".join(lines[-15:])
            raise ConversionError(f"installing {package}=={version} into {env} failed:\n{tail}")
        marker.write_text(
            json.dumps({"package": package, "version": version, "python": sys.version.split()[0]})
        )
    except BaseException:
        shutil.rmtree(env, ignore_errors=True)
        raise
    progress.update(1.0, f"{package} environment ready")
    return _bin(env)
