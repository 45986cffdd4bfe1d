"""Frameworks on demand: PyTorch and TensorFlow for the installed app's core bundle.

The bundle (build_installer.spec) carries ONNX Runtime, not the frameworks: they are gigabytes
and many users never need one. A step that needs one runs in a step process that has the
framework's folder on its `sys.path`; the folder is prepared once, on first use, by the bundle's
own pip (`dockyard-cli --dockyard-python -m pip`: a frozen app has no Python to make a virtual
environment with) installing `--target` from a lock file under resources/frameworks/ (every
package pinned, every file's sha256 listed, `--require-hashes --no-deps --only-binary :all:`).
It is installed into a temporary folder and renamed into place when complete: a cancelled or
failed preparation leaves nothing a step would use.

`DOCKYARD_FRAMEWORK_PATH` (folders separated by os.pathsep, e.g. an existing Python 3.11
environment's site-packages) takes the place of prepared folders: the setting for users who
manage their own environment. From a Python installation (the developer install, CI) nothing
here applies: the frameworks are installed packages.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from workflows.errors import DockyardError, FrameworkMissing
from workflows.frozen import is_frozen, python_command
from workflows.progress import Progress, null_progress
from workflows.resources import resources_dir

PATH_ENV = "DOCKYARD_FRAMEWORK_PATH"
READY = "dockyard-ready.json"


def framework_missing(family: str, message: str = "") -> FrameworkMissing:
    """The error for a step that needs `family`'s framework: what it costs and the three ways
    to get it."""
    framework = FRAMEWORKS[family]
    return FrameworkMissing(
        message
        or f"This step needs {framework.title}, which the Dockyard app prepares on first use "
        f"({framework.size_text()}). In the app, accept the offer to prepare it; from the "
        f"command line run `dockyard-cli frameworks install {family}`; or point {PATH_ENV} at "
        "an existing Python 3.11 environment's site-packages that has it.",
        family,
    )


@dataclass(frozen=True)
class Framework:
    """A framework the core bundle leaves out. What preparing it costs, and where its files are
    published besides PyPI (PyTorch's CPU builds: PyPI's Linux torch is the CUDA one, gigabytes
    more), are measured per platform by scripts/lock_framework.py and read from the lock file."""

    family: str  # the step-worker family that imports it (workflows.warm.FAMILIES)
    title: str
    modules: tuple[str, ...]  # top-level modules it brings (a step failing on one needs it)
    lock: Path | None = None  # default: resources/frameworks/FAMILY-PLATFORM.txt

    def _lock_path(self) -> Path:
        return self.lock or resources_dir() / "frameworks" / f"{self.family}-{platform_tag()}.txt"

    def lock_file(self) -> Path:
        """The platform's lock file; FrameworkMissing when Dockyard ships none for it."""
        path = self._lock_path()
        if not path.exists():
            raise framework_missing(
                self.family,
                f"Dockyard has no {self.title} package list for {platform_tag()}: point "
                f"{PATH_ENV} at an existing Python 3.11 environment's site-packages that has it.",
            )
        return path

    def lock_header(self) -> dict[str, str]:
        """The lock's `# key: value` lines (download-mb, installed-mb, extra-index-url); empty
        when Dockyard ships no lock for this platform."""
        path = self._lock_path()
        if not path.exists():
            return {}
        return dict(re.findall(r"^# ([a-z-]+): (\S+)$", path.read_text(), flags=re.MULTILINE))

    @property
    def download_mb(self) -> int | None:
        value = self.lock_header().get("download-mb")
        return int(value) if value else None

    @property
    def installed_mb(self) -> int | None:
        value = self.lock_header().get("installed-mb")
        return int(value) if value else None

    @property
    def index_url(self) -> str:
        """The index the lock's files come from besides PyPI ("" when PyPI has them all)."""
        return self.lock_header().get("extra-index-url", "")

    def size_text(self) -> str:
        if self.download_mb is None:
            return f"no package list for {platform_tag()}"
        return f"a {self.download_mb} MB download, {self.installed_mb} MB on disk"


FRAMEWORKS = {
    "torch": Framework(
        "torch",
        "PyTorch 2.13.0 (CPU)",
        ("torch", "torchvision", "onnxscript", "onnx_ir", "onnxslim", "torch_pruning",
         "safetensors", "networkx", "jinja2", "fsspec", "filelock", "ts"),
    ),
    "tensorflow": Framework(
        "tensorflow",
        "TensorFlow 2.21.0 (CPU) with Keras 3",
        ("tensorflow", "keras", "tf2onnx", "tf_keras", "h5py", "ml_dtypes", "onnxslim"),
    ),
}  # fmt: skip


def platform_tag() -> str:
    """`linux-x86_64`, `darwin-arm64`, `win32-amd64`: which lock file applies here."""
    return f"{sys.platform}-{platform.machine().lower()}"


def root() -> Path:
    """Where prepared frameworks live: beside the tool environments (workflows.toolenv)."""
    from workflows.toolenv import cache_dir

    return cache_dir().parent / "frameworks"


def _lock_digest(framework: Framework) -> str:
    return hashlib.sha256(framework.lock_file().read_bytes()).hexdigest()


def prepared(family: str) -> Path | None:
    """The folder of `family`'s prepared framework, when it is complete and current."""
    folder = root() / family
    try:
        marker = json.loads((folder / READY).read_text())
        current = marker.get("lock_sha256") == _lock_digest(FRAMEWORKS[family])
    except (OSError, ValueError, AttributeError, DockyardError):
        return None
    return folder if current else None


def configured_paths() -> list[Path]:
    """The folders given with DOCKYARD_FRAMEWORK_PATH (an existing environment's packages)."""
    return [Path(p) for p in os.environ.get(PATH_ENV, "").split(os.pathsep) if p]


def available(family: str) -> bool:
    """Can a step process import `family`'s framework here?"""
    if family not in FRAMEWORKS:
        return True
    if not is_frozen():
        return importlib.util.find_spec(FRAMEWORKS[family].modules[0]) is not None
    first = FRAMEWORKS[family].modules[0]
    return prepared(family) is not None or any((p / first).is_dir() for p in configured_paths())


def activate() -> list[Path]:
    """Put the prepared frameworks (and DOCKYARD_FRAMEWORK_PATH) on this process's sys.path:
    a step process of the frozen app does this before its step imports anything. After the
    bundle's own packages, so that the bundle's numpy, onnx and protobuf are the ones used."""
    if not is_frozen():
        return []
    added = [*configured_paths(), *filter(None, (prepared(f) for f in FRAMEWORKS))]
    for folder in added:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    return added


def missing_framework(exc: BaseException) -> FrameworkMissing | None:
    """The clear error for a step that failed importing a framework module the bundle lacks."""
    if not is_frozen():
        return None
    seen: BaseException | None = exc
    for _ in range(10):  # a loader may have wrapped it ("not a readable model (...)")
        if seen is None:
            return None
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            top = seen.name.split(".")[0]
            for framework in FRAMEWORKS.values():
                if top in framework.modules:
                    return framework_missing(framework.family)
        seen = seen.__cause__ or seen.__context__
    return None


def prepare(family: str, progress: Progress | None = None) -> Path:
    """Install `family`'s framework from its lock file (once; later calls return the folder)."""
    from workflows.toolenv import exclusive

    progress = progress or null_progress()
    framework = FRAMEWORKS[family]
    lock = framework.lock_file()
    base = root()
    base.mkdir(parents=True, exist_ok=True)
    with exclusive(base / f"{family}.lock"):  # the app and a CLI run may both ask
        done = prepared(family)
        if done is not None:
            return done
        for stale in base.glob(f"{family}.partial-*"):  # left by a killed preparation
            shutil.rmtree(stale, ignore_errors=True)
        partial = base / f"{family}.partial-{os.getpid()}"
        final = base / family
        try:
            _install(framework, lock, partial, progress)
            (partial / READY).write_text(
                json.dumps(
                    {
                        "family": family,
                        "title": framework.title,
                        "python": sys.version.split()[0],
                        "platform": platform_tag(),
                        "lock_sha256": _lock_digest(framework),
                    }
                )
            )
            shutil.rmtree(final, ignore_errors=True)  # an older lock's framework
            os.replace(partial, final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    progress.update(1.0, f"{framework.title} is ready")
    return final


PIP_SOURCES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX")


def pip_install_command(lock: Path, target: Path, index_url: str = "") -> list[str]:
    """pip's install of exactly the lock file's files into `target` (see the module docstring);
    from `index_url` too, unless pip's sources are set in the environment (a mirror, a proxy,
    a wheel folder: the user's choice wins; the hashes decide which files are acceptable)."""
    extra = ["--extra-index-url", index_url] if index_url else []
    if any(os.environ.get(name) for name in PIP_SOURCES):
        extra = []
    return [
        *python_command(), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
        "--progress-bar", "off", "--require-hashes", "--no-deps", "--only-binary", ":all:",
        "--no-compile", *extra, "--target", str(target), "-r", str(lock),
    ]  # fmt: skip


def _install(framework: Framework, lock: Path, target: Path, progress: Progress) -> None:
    from workflows.toolenv import run_pip

    progress.update(0.01, f"Preparing {framework.title}: {framework.size_text()}")
    started = time.monotonic()
    env = {**os.environ, "PIP_NO_WARN_SCRIPT_LOCATION": "1", "PYTHONPATH": ""}
    command = pip_install_command(lock, target, framework.index_url)
    status, output = run_pip(command, lock, progress, env)
    if status != 0:
        raise DockyardError(install_problem(framework, lock, output))
    progress.update(0.98, f"Installed in {time.monotonic() - started:.0f} s")


def install_problem(framework: Framework, lock: Path, output: str) -> str:
    """What went wrong preparing a framework, in words, with pip's last lines."""
    from workflows.toolenv import pip_failure

    tail = "\n".join(output.strip().splitlines()[-8:])
    failure = pip_failure(output)
    if failure == "hash":
        why = (
            f"a downloaded file does not match the sha256 recorded in {lock.name} (a damaged "
            "download, or an index or proxy serving other files than PyPI's): nothing was installed"
        )
    elif failure == "unreachable" or "No matching distribution" in output:
        # Unreachable, pip often says only "from versions: none" (its connection errors are
        # logged at debug level when it does not retry).
        why = (
            "it is downloaded from the package index the first time it is needed, and the index "
            "cannot be reached from here (or does not offer these files). Connect and retry, set "
            "pip's index or proxy (PIP_INDEX_URL, HTTPS_PROXY), or point "
            f"{PATH_ENV} at an existing environment that has it"
        )
    else:
        why = "pip failed"
    return f"Preparing {framework.title} failed: {why}.\n{tail}"


def status() -> list[dict[str, object]]:
    """Each framework: available here, where from, and what preparing it costs."""
    rows = []
    for family, framework in FRAMEWORKS.items():
        folder = prepared(family) if is_frozen() else None
        rows.append(
            {
                "family": family,
                "title": framework.title,
                "available": available(family),
                "folder": str(folder) if folder else None,
                "download_mb": framework.download_mb,
                "installed_mb": framework.installed_mb,
            }
        )
    return rows
