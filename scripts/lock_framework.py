"""Write the lock file of a framework the installed app prepares on first use
(resources/frameworks/FAMILY-PLATFORM.txt; workflows/frameworks.py): every distribution the
framework's steps need beyond the core bundle, at the version this environment has (the pins
of pyproject.toml), with the sha256 of each file pip downloads for this platform.

    python scripts/lock_framework.py torch        # run on each platform the app ships for

What the core bundle itself carries (numpy, onnx, protobuf, sympy, ...) is left out: a step
process finds the bundle's copy first (workflows.frameworks.activate).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# What each family's steps import, as distributions (their dependencies are added).
TOP = {
    "torch": ["torch", "onnxscript", "onnxslim", "safetensors", "torch-pruning"],
    "tensorflow": ["tensorflow-cpu", "keras", "tf2onnx", "onnxslim"],
}
# In the core bundle (build_installer.spec), the one copy every process uses.
BUNDLED = {"numpy", "onnx", "protobuf", "sympy", "mpmath", "packaging", "typing-extensions",
           "pip", "setuptools", "grpcio", "pillow", "rich", "pyyaml", "psutil", "onnxruntime"}  # fmt: skip


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(tops: list[str]) -> dict[str, str]:
    """name -> version of `tops` and everything they require (no extras, this platform)."""
    found: dict[str, str] = {}
    todo = list(tops)
    while todo:
        name = _canonical(todo.pop())
        if name in found or name in BUNDLED:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement for another platform or Python
        found[name] = dist.version
        for req in dist.requires or []:
            if "extra ==" in req:
                continue
            marker_ok = True
            if ";" in req:
                from packaging.markers import Marker

                marker_ok = Marker(req.split(";", 1)[1]).evaluate()
            if marker_ok:
                todo.append(re.split(r"[\s;<>=!~\[(]", req, maxsplit=1)[0])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("family", choices=sorted(TOP))
    args = parser.parse_args()
    from workflows.frameworks import platform_tag

    pins = closure(TOP[args.family])
    out = ROOT / "resources" / "frameworks" / f"{args.family}-{platform_tag()}.txt"
    out.parent.mkdir(exist_ok=True)
    lines = [
        f"# The {args.family} framework of the installed app (workflows/frameworks.py), pinned and",
        "# hashed: its pip installs it with --require-hashes --no-deps --only-binary :all: --target.",
        f"# {platform_tag()}, Python 3.11. Made with: python scripts/lock_framework.py {args.family}",
    ]
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, version in sorted(pins.items()):
            folder = Path(tmp) / name
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                 "--quiet", "-d", str(folder), f"{name}=={version}"],
                check=True,
            )  # fmt: skip
            hashes = []
            for wheel in sorted(folder.iterdir()):
                total += wheel.stat().st_size
                said = subprocess.run(
                    [sys.executable, "-m", "pip", "hash", str(wheel)],
                    check=True, capture_output=True, text=True,
                ).stdout  # fmt: skip
                hashes.append(said.strip().splitlines()[-1].strip())
            lines.append(f"{name}=={version} \\")
            lines += [f"    {h} \\" for h in hashes[:-1]] + [f"    {hashes[-1]}"]
    out.write_text("\n".join(lines) + "\n")
    print(f"{out}: {len(pins)} distributions, {total / 1e6:.0f} MB of wheels")


if __name__ == "__main__":
    main()
