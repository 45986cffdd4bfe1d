"""Write the lock file of a framework the installed app prepares on first use
(resources/frameworks/FAMILY-PLATFORM.txt; workflows/frameworks.py), for any platform the app
ships for, from any machine:

    python scripts/lock_framework.py torch                          # this machine's platform
    python scripts/lock_framework.py tensorflow --platform darwin-arm64

1. uv resolves the family's distributions for the target platform and Python 3.11, with the
   versions this environment has (pyproject's pins) as constraints. uv, not pip: pip evaluates
   environment markers against the machine it runs on, so a lock for macOS made on Linux would
   pull in torch's Linux-only CUDA packages (`pip install uv` first).
2. pip downloads each pinned file for that platform (cached in ~/.cache/dockyard-locks) and
   the lock records its sha256: one file per distribution, the one the app's pip will install.
3. The header records the wheels' size, their unpacked size and, where a pin is a build that
   PyPI does not carry (torch's `+cpu`), the index that does. The app reads them from there.

What the core bundle itself carries (numpy, onnx, protobuf, sympy, ...) is left out: a step
process finds the bundle's copy first (workflows.frameworks.activate).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Target:
    uv_platform: str  # uv pip compile --python-platform
    wheel_platforms: tuple[str, ...]  # pip download --platform (pip widens only macOS's itself)
    tensorflow: str  # the CPU TensorFlow distribution that has a wheel there
    torch_local: str  # torch's local version label there ("+cpu": PyPI's build has CUDA)


TARGETS = {
    # PyPI's Linux torch is the CUDA build (its wheel pulls ~3 GB of nvidia packages): the CPU
    # build comes from PyTorch's own index. tensorflow-cpu has no macOS wheel; macOS's
    # `tensorflow` is CPU-only (Metal is a plug-in). torch 2.13's macOS wheel needs macOS 14.
    "linux-x86_64": Target(
        "x86_64-manylinux_2_28",
        (*(f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)),
         "manylinux2014_x86_64", "manylinux1_x86_64", "linux_x86_64"),
        "tensorflow-cpu", "+cpu",
    ),
    "win32-amd64": Target("x86_64-pc-windows-msvc", ("win_amd64",), "tensorflow-cpu", ""),
    "darwin-arm64": Target("aarch64-apple-darwin", ("macosx_14_0_arm64",), "tensorflow", ""),
}  # fmt: skip

# In the core bundle (build_installer.spec), the one copy every process uses.
BUNDLED = {"numpy", "onnx", "protobuf", "sympy", "mpmath", "packaging", "typing-extensions",
           "pip", "setuptools", "grpcio", "pillow", "rich", "pyyaml", "psutil", "onnxruntime",
           "torch-model-archiver", "enum-compat"}  # fmt: skip


def tops(family: str, target: Target) -> list[str]:
    """What a family's steps import, as distributions (uv adds their dependencies)."""
    if family == "torch":
        # torchserve: the TorchServe export's smoke test serves the .mar (its workers need torch)
        return ["torch", "onnxscript", "onnxslim", "safetensors", "torch-pruning", "torchserve"]
    return [target.tensorflow, "keras", "tf2onnx", "onnxslim"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def constraints(target: Target) -> list[str]:
    """This environment's versions (pyproject's pins and what they resolved to) for every
    distribution, with torch's local label as the target platform needs it."""
    lines = []
    for dist in metadata.distributions():
        name, version = canonical(dist.metadata["Name"]), dist.version
        if name == "torch":
            version = version.split("+")[0] + target.torch_local
        elif name == "tensorflow-cpu":
            lines.append(f"tensorflow=={version}")  # the same release where only it exists
        if name != "dockyard":
            lines.append(f"{name}=={version}")
    return sorted(set(lines))


def resolve(family: str, target: Target, find_links: list[str]) -> dict[str, str]:
    """name -> version of everything `family` needs on `target`, resolved by uv."""
    uv = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if not uv:
        sys.exit("uv is needed to resolve for other platforms: pip install uv")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "in.txt").write_text("\n".join(tops(family, target)) + "\n")
        (Path(tmp) / "constraints.txt").write_text("\n".join(constraints(target)) + "\n")
        sources = [arg for link in find_links for arg in ("--find-links", link)]
        if target.torch_local and family == "torch" and not find_links:
            sources += ["--extra-index-url", PYTORCH_CPU_INDEX,
                        "--index-strategy", "unsafe-best-match"]  # fmt: skip
        said = subprocess.run(
            [uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate", "--python-version",
             "3.11", "--python-platform", target.uv_platform, "--only-binary", ":all:",
             "--constraint", "constraints.txt", *sources, "in.txt"],
            cwd=tmp, capture_output=True, text=True,
            env={**os.environ, "MACOSX_DEPLOYMENT_TARGET": "14.0"},
        )  # fmt: skip
    if said.returncode != 0:
        sys.exit(said.stderr)
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", said.stdout, flags=re.MULTILINE))
    return {canonical(n): v for n, v in pins.items() if canonical(n) not in BUNDLED}


def download(name: str, version: str, target: Target, cache: Path) -> Path:
    """The one wheel pip picks for `target` (cached)."""
    folder = cache / f"{name}-{version}"
    platforms = [arg for tag in target.wheel_platforms for arg in ("--platform", tag)]
    if not folder.is_dir() or not any(folder.glob("*.whl")):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "-qq", *platforms, "--python-version", "3.11", "--implementation", "cp",
             "--abi", "cp311", "--abi", "abi3", "--abi", "none",
             "-d", str(folder), f"{name}=={version}"],
            check=True,
        )  # fmt: skip
    (wheel,) = folder.glob("*.whl")
    return wheel


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def main() -> None:
    from workflows.frameworks import platform_tag

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("family", choices=["torch", "tensorflow"])
    parser.add_argument("--platform", choices=sorted(TARGETS), default=platform_tag())
    parser.add_argument(
        "--find-links", action="append", default=os.environ.get("PIP_FIND_LINKS", "").split(),
        help="a folder of wheels to resolve from too (default: PIP_FIND_LINKS)",
    )  # fmt: skip
    args = parser.parse_args()
    target = TARGETS[args.platform]
    pins = resolve(args.family, target, args.find_links)
    cache = Path.home() / ".cache" / "dockyard-locks" / args.platform
    wheels = {name: download(name, version, target, cache) for name, version in pins.items()}
    packed = sum(w.stat().st_size for w in wheels.values())
    unpacked = sum(sum(i.file_size for i in zipfile.ZipFile(w).infolist()) for w in wheels.values())
    made = f"python scripts/lock_framework.py {args.family} --platform {args.platform}"
    lines = [
        f"# The {args.family} framework of the installed app (workflows/frameworks.py), pinned and",
        "# hashed: its pip installs it with --require-hashes --no-deps --only-binary :all: --target.",
        f"# {args.platform}, Python 3.11. Made with: {made}",
        f"# download-mb: {packed / 1e6:.0f}",
        f"# installed-mb: {unpacked / 1e6:.0f}",
    ]
    if any("+" in version for version in pins.values()):
        lines.append(f"# extra-index-url: {PYTORCH_CPU_INDEX}")
    for name, version in sorted(pins.items()):
        lines += [f"{name}=={version} \\", f"    --hash=sha256:{sha256(wheels[name])}"]
    out = ROOT / "resources" / "frameworks" / f"{args.family}-{args.platform}.txt"
    out.write_text("\n".join(lines) + "\n")
    print(f"{out.relative_to(ROOT)}: {len(pins)} distributions, {packed / 1e6:.0f} MB of wheels, "
          f"{unpacked / 1e6:.0f} MB unpacked")  # fmt: skip


if __name__ == "__main__":
    main()
