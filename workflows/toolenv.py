"""Isolated tool environments that Dockyard prepares on first use.

Some converters cannot share Dockyard's environment: onnx2tf pins older onnx, onnxruntime, numpy,
protobuf and TensorFlow (see docs/dependencies.md). It gets its own virtual environment under the user's
cache folder, created once and reused after; a half-made environment is never used.

What goes in is fixed by a lock file under resources/toolenvs/ (every package pinned, every file's
sha256 listed), installed the way pip documents for repeatable, tamper-evident installs:
`--require-hashes --no-deps --only-binary :all:` (no setup.py of any package runs). An environment
records the lock it was made from and is rebuilt when Dockyard ships another.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from workflows.errors import ConversionError
from workflows.progress import Progress, null_progress
from workflows.resources import resource


@dataclass(frozen=True)
class Tool:
    """A tool installed into an environment of its own from a hashed lock file."""

    package: str
    version: str
    platforms: tuple[str, ...]  # `sys.platform` prefixes the lock is made for
    unsupported: str = ""  # why other platforms have none, and what to do there
    lock: Path | None = None  # default: resources/toolenvs/PACKAGE-VERSION.txt

    @property
    def name(self) -> str:
        return f"{self.package}-{self.version}"

    def lock_file(self) -> Path:
        return self.lock or resource("toolenvs", f"{self.name}.txt")


ONNX2TF = Tool(
    "onnx2tf",
    "1.29.24",
    platforms=("linux",),
    unsupported=(
        "onnx2tf 1.29.24 needs ai-edge-litert 2.1.0, which is published for Linux only. "
        "Convert on Linux (or in a Linux container), or start from a Keras or TensorFlow model, "
        "which converts to TFLite without onnx2tf."
    ),
)


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


def ensure(tool: Tool, progress: Progress | None = None) -> Path:
    """The bin folder of `tool`'s environment, created from its lock file on first use."""
    progress = progress or null_progress()
    if not sys.platform.startswith(tool.platforms):
        raise ConversionError(
            f"{tool.package} cannot be installed on this platform ({sys.platform}). "
            f"{tool.unsupported}".strip()
        )
    from workflows.frozen import is_frozen

    if is_frozen() and ready(tool) is None:
        # A tool environment is a virtual environment of its own Python packages (onnx2tf pins
        # numpy, onnx and TensorFlow versions the app cannot share): the installed app has no
        # Python to make one with.
        raise ConversionError(
            f"{tool.package} runs in a Python environment of its own, which the installed app "
            "cannot make (it has no Python interpreter). Convert from a developer install of "
            "Dockyard (pip install), or start from a Keras or TensorFlow model, which converts "
            "to TFLite without it."
        )
    lock = tool.lock_file()
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    root = cache_dir()
    env = root / tool.name
    marker = env / "dockyard-ready.json"
    if _ready(marker, digest):
        return _bin(env)
    root.mkdir(parents=True, exist_ok=True)
    # Two Dockyards (the app and a CLI run, two CI jobs) may both find it missing: one builds it,
    # the other waits for the lock and then finds the marker (without the lock each deleted the
    # other's half-made folder).
    with exclusive(root / f"{tool.name}.lock"):
        if _ready(marker, digest):
            return _bin(env)
        return _build(env, marker, tool, lock, digest, progress)


def ready(tool: Tool) -> Path | None:
    """The bin folder of `tool`'s environment when it is built already (nothing is installed)."""
    if not sys.platform.startswith(tool.platforms):
        return None
    digest = hashlib.sha256(tool.lock_file().read_bytes()).hexdigest()
    env = cache_dir() / tool.name
    return _bin(env) if _ready(env / "dockyard-ready.json", digest) else None


def _ready(marker: Path, lock_sha256: str) -> bool:
    """The environment is complete and was made from this lock file."""
    try:
        return json.loads(marker.read_text()).get("lock_sha256") == lock_sha256
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
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


def pip_command(python: Path, lock: Path) -> list[str]:
    """pip's install of exactly the lock file's files (see the module docstring)."""
    return [
        str(python),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--require-hashes",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-r",
        str(lock),
    ]


def _build(
    env: Path, marker: Path, tool: Tool, lock: Path, digest: str, progress: Progress
) -> Path:
    # Virtual environments cannot be moved (their scripts name their own path), so it is built in
    # place; the marker, written last, is what says it is complete. A folder without it is rebuilt.
    shutil.rmtree(env, ignore_errors=True)
    try:
        progress.update(0.02, f"First use: creating the {tool.package} environment (a few minutes)")
        subprocess.run(
            [sys.executable, "-m", "venv", str(env)], check=True, capture_output=True, timeout=300
        )
        status, output = run_pip(pip_command(_bin(env) / "python", lock), lock, progress)
        if status != 0:
            raise ConversionError(_install_problem(tool, env, lock, output))
        marker.write_text(
            json.dumps(
                {
                    "package": tool.package,
                    "version": tool.version,
                    "python": sys.version.split()[0],
                    "lock_sha256": digest,
                }
            )
        )
    except BaseException:
        shutil.rmtree(env, ignore_errors=True)
        raise
    progress.update(1.0, f"{tool.package} environment ready")
    return _bin(env)


# What pip prints when the package index cannot be reached.
UNREACHABLE = ("NewConnectionError", "Network is unreachable", "No route", "Name or service",
               "Temporary failure in name resolution", "ConnectTimeout", "Could not fetch URL")  # fmt: skip


def run_pip(
    command: list[str], lock: Path, progress: Progress, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run a pip install of `lock`'s files, reporting each file it fetches (5-85 %) and the
    unpacking (85 %); its exit status and output. Shared by tool environments and the installed
    app's frameworks (workflows.frameworks). A cancelled step's process-group kill ends pip too."""
    files = max(len(re.findall(r"^\S+==", lock.read_text(), flags=re.MULTILINE)), 1)
    lines: list[str] = []
    fetched = 0
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith(("Collecting", "Processing")):
                fetched += 1
                name = line.split()[1].split("/")[-1][:60]
                progress.update(0.05 + 0.8 * min(fetched / files, 1.0), f"Downloading {name}")
            elif line.startswith("Installing collected packages"):
                progress.update(0.85, "Installing (unpacking the wheels)")
    return proc.returncode, "".join(lines)


def pip_failure(output: str) -> str:
    """Why a hashed pip install failed, from its output: "hash" (a file is not the one the lock
    records: nothing was installed), "unreachable" (no package index), or "" (something else).
    Shared by tool environments and the installed app's frameworks (workflows.frameworks)."""
    if "DO NOT MATCH THE HASHES" in output:
        return "hash"
    if any(marker in output for marker in UNREACHABLE):
        return "unreachable"
    return ""


def _install_problem(tool: Tool, env: Path, lock: Path, output: str) -> str:
    """What went wrong installing a tool, in words, with pip's last lines."""
    tail = "\n".join(output.strip().splitlines()[-15:])
    failure = pip_failure(output)
    if failure == "hash":
        why = (
            f"a downloaded file does not match the sha256 recorded in {lock} (a damaged download, "
            "or a package index or proxy serving other files than PyPI's): nothing was installed"
        )
    elif failure == "unreachable":
        why = (
            f"the {tool.package} environment is downloaded from the package index on first use, "
            "and it cannot be reached: connect once (or set pip's index/proxy settings) and retry"
        )
    else:
        why = "pip failed"
    return f"installing {tool.name} into {env}: {why}.\n{tail}"
