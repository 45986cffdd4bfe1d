"""The platform packages scripts/build_installer.py makes from the one-folder bundle, on a small
stand-in folder: the Linux .tar.gz (with its .desktop entry, icon and the CLI's symbolic link)
and the Windows .zip (built here with sys.platform set, as the hosted runner would)."""

from __future__ import annotations

import importlib.util
import os
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_installer():
    spec = importlib.util.spec_from_file_location(
        "build_installer", ROOT / "scripts" / "build_installer.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stand_in(dist: Path) -> Path:
    app = dist / "Dockyard"
    (app / "_internal" / "resources").mkdir(parents=True)
    (app / "dockyard").write_bytes(b"\x7fELF program")
    (app / "dockyard").chmod(0o755)
    (app / "_internal" / "resources" / "sample.json").write_text("{}")
    if hasattr(os, "symlink"):
        (app / "dockyard-cli").symlink_to("dockyard")
    return app


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux package")
def test_linux_tar_has_the_desktop_entry_icon_and_the_cli_link(tmp_path):
    app = stand_in(tmp_path)
    out = build_installer().package(app, tmp_path, "9.9.9")
    assert out.name.startswith("Dockyard-9.9.9-linux-") and out.name.endswith(".tar.gz")
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        entry = tar.extractfile("Dockyard-9.9.9/dockyard.desktop").read().decode()
    assert "Exec=dockyard %f" in entry and "Icon=dockyard" in entry
    assert members["Dockyard-9.9.9/dockyard"].mode & 0o111  # still executable
    assert members["Dockyard-9.9.9/dockyard-cli"].issym()
    assert members["Dockyard-9.9.9/dockyard-cli"].linkname == "dockyard"
    assert "Dockyard-9.9.9/dockyard.png" in members
    assert "Dockyard-9.9.9/_internal/resources/sample.json" in members


def test_windows_zip_holds_the_folder_under_its_versioned_name(tmp_path, monkeypatch):
    app = stand_in(tmp_path)
    (app / "dockyard-cli").unlink(missing_ok=True)  # Windows: a console .exe instead
    (app / "dockyard-cli.exe").write_bytes(b"MZ console")
    module = build_installer()
    monkeypatch.setattr(sys, "platform", "win32")
    out = module.package(app, tmp_path, "9.9.9")
    assert out.name.startswith("Dockyard-9.9.9-windows-") and out.suffix == ".zip"
    names = set(zipfile.ZipFile(out).namelist())
    assert {"Dockyard-9.9.9/dockyard", "Dockyard-9.9.9/dockyard-cli.exe",
            "Dockyard-9.9.9/_internal/resources/sample.json"} <= names  # fmt: skip
