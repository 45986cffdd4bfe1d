"""The Docker export's model versions: `models/NAME/1/`, `models/NAME/2/`, ... each a complete
served model (model.onnx, config.json, warm-up sample, drift profile), and `models/NAME/model.json`
naming the model and its default version — the layout TF Serving and Triton give a model's
versions. An export can carry on an earlier export's versions and add one (`--add-to`)."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from workflows.errors import ExportError

MODEL_CONFIG = "model.json"


@dataclass
class Versions:
    """The versions an export carries: version -> the folder it is copied from."""

    name: str | None = None  # the earlier export's model name; None when there is none
    folders: dict[str, Path] = field(default_factory=dict)
    default: str | None = None  # the earlier export's default version

    def next(self) -> str:
        """The version number after the newest one (1 for a first export)."""
        numbers = [int(v) for v in self.folders if v.isdigit()]
        return str(max(numbers, default=0) + 1)

    def sorted(self, *more: str) -> list[str]:
        """Every version, with `more`, in numeric order."""
        return sorted({*self.folders, *more}, key=version_key)


def version_key(version: str) -> tuple[int, int, str]:
    """Sort key of version names: numbers by value (2 before 10), then other names."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def model_folder(export: Path) -> Path:
    """models/NAME of a Docker export (it holds one model)."""
    found = sorted(p for p in (export / "models").glob("*") if p.is_dir())
    if len(found) != 1:
        raise ExportError(
            f"{export}: expected one model folder in models/, found "
            + (", ".join(p.name for p in found) or "none")
        )
    return found[0]


def earlier_versions(export: Path) -> Versions:
    """The versions of an earlier Docker export (`--add-to`), checked."""
    manifest_path = export / "manifest.json"
    hint = "--add-to takes a folder an earlier `dockyard-cli export docker` wrote"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        raise ExportError(
            f"{export}: not a Dockyard export (no readable manifest.json); {hint}"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("target") != "docker":
        target = manifest.get("target") if isinstance(manifest, dict) else None
        raise ExportError(f"{export}: a {target or 'non-Docker'} export, not a Docker one; {hint}")
    legacy = export / "model" / "config.json"
    if not (export / "models").is_dir() and legacy.is_file():
        # An export from before versions: its model/ folder is its only version.
        config = json.loads(legacy.read_text())
        version = str(config.get("version", "1"))
        return Versions(config.get("name"), {version: legacy.parent}, version)
    folder = model_folder(export)
    config_path = folder / MODEL_CONFIG
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    folders = {p.name: p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()}
    if not folders:
        raise ExportError(f"{folder}: no version folders (1/, 2/, ...) to carry on")
    default = config.get("default_version")
    return Versions(config.get("name") or folder.name, folders, str(default) if default else None)


def check_version(version: str, versions: Versions) -> str:
    """A new version's name: a whole number that the earlier export does not hold."""
    # Whole numbers: TF Serving's and Triton's version folders, and TF Serving's gRPC ModelSpec
    # (an int64), take nothing else.
    if not re.fullmatch(r"[1-9][0-9]{0,17}", version):
        raise ExportError(f"version {version!r}: give a whole number from 1 (as 1, 2, 10)")
    if version in versions.folders:
        raise ExportError(
            f"version {version} is already in the export; give another number "
            f"(the next one is {versions.next()}) or leave --model-version out"
        )
    return version


def copy_versions(versions: Versions, target: Path) -> None:
    """Copy the earlier versions into `target` (models/NAME)."""
    for version, folder in versions.folders.items():
        shutil.copytree(folder, target / version, ignore=shutil.ignore_patterns("__pycache__"))


def write_model_config(target: Path, name: str, default: str) -> None:
    """models/NAME/model.json: the name and the default version (the server re-reads it)."""
    (target / MODEL_CONFIG).write_text(
        json.dumps({"name": name, "default_version": default}, indent=2) + "\n"
    )
