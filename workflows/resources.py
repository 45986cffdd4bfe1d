"""Where Dockyard's resources (templates, the sample) live: the source tree, or a frozen app."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    """The resources folder: $DOCKYARD_RESOURCES, PyInstaller's bundle, or the source checkout."""
    env = os.environ.get("DOCKYARD_RESOURCES")
    if env:
        return Path(env)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def resource(*parts: str) -> Path:
    """A file under the resources folder (FileNotFoundError naming it when absent)."""
    path = resources_dir().joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"Dockyard resource missing: {path}")
    return path
