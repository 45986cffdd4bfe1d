"""Frameworks on demand (workflows/frameworks.py), as the installed app meets them: a framework
is prepared once from a hashed lock file by pip --target into a folder that appears only when
complete; step processes put it on sys.path; a step failing for want of one says what to do;
a damaged download or no index leaves nothing behind and says why. A tiny wheel made here
stands in for PyTorch (pip installs it exactly as it would torch's)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from dataclasses import replace

import pytest

from tests.workflows.tiny_wheel import make_wheel
from workflows import frameworks
from workflows.errors import FrameworkMissing


@pytest.fixture
def installed_app(tmp_path, monkeypatch):
    """Frozen as far as workflows.frameworks can tell, a torch framework that is the tiny wheel,
    a package index that is a folder, and a fresh cache."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = make_wheel(wheels, "tinyfw", "1.0", "VALUE = 7\n")
    lock = tmp_path / "torch-test.txt"
    lock.write_text(
        "# download-mb: 1\n# installed-mb: 1\n"
        f"tinyfw==1.0 \\\n    --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}\n"
    )
    fake = replace(frameworks.FRAMEWORKS["torch"], modules=("tinyfw",), lock=lock)
    monkeypatch.setitem(frameworks.FRAMEWORKS, "torch", fake)
    monkeypatch.setattr(frameworks, "is_frozen", lambda: True)
    monkeypatch.setenv("DOCKYARD_TOOLS_DIR", str(tmp_path / "cache" / "tools"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # not the machine's index or constraints
    monkeypatch.delenv(frameworks.PATH_ENV, raising=False)
    return lock


def test_prepared_once_then_on_the_path_of_step_processes(installed_app, monkeypatch):
    assert not frameworks.available("torch")
    missing = frameworks.missing_framework(ModuleNotFoundError("No module", name="tinyfw.sub"))
    assert isinstance(missing, FrameworkMissing) and missing.family == "torch"
    assert "dockyard-cli frameworks install torch" in str(missing)
    assert frameworks.missing_framework(ModuleNotFoundError("x", name="requests")) is None
    try:  # as a format loader reports it: its own error, the import failure as the cause
        try:
            raise ModuleNotFoundError("No module named 'tinyfw'", name="tinyfw")
        except ImportError as exc:
            raise ValueError("x.pt2: not a readable exported_program model") from exc
    except ValueError as wrapped:
        assert frameworks.missing_framework(wrapped).family == "torch"

    messages = []
    from workflows.progress import Progress

    folder = frameworks.prepare("torch", Progress(lambda f, m: messages.append((f, m))))
    assert folder == frameworks.root() / "torch" and (folder / "tinyfw" / "__init__.py").exists()
    assert frameworks.available("torch") and frameworks.prepared("torch") == folder
    assert messages[-1][0] == 1.0 and any("Downloading tinyfw" in m for _, m in messages)
    assert not list(frameworks.root().glob("torch.partial-*"))
    assert frameworks.prepare("torch") == folder  # once: the second call installs nothing

    monkeypatch.setattr(sys, "path", list(sys.path))
    assert str(folder) in map(str, frameworks.activate())
    import tinyfw  # noqa: F401  (from the prepared folder)

    assert sys.modules["tinyfw"].VALUE == 7
    sys.modules.pop("tinyfw")

    # Another lock (a new Dockyard release): the folder no longer counts as prepared.
    installed_app.write_text(installed_app.read_text() + "# changed\n")
    assert frameworks.prepared("torch") is None


def test_a_damaged_download_leaves_nothing_and_says_so(installed_app):
    installed_app.write_text("tinyfw==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    stale = frameworks.root() / "torch.partial-999"
    stale.mkdir(parents=True)  # left by a killed preparation
    with pytest.raises(Exception, match="does not match the sha256"):
        frameworks.prepare("torch")
    assert not (frameworks.root() / "torch").exists()
    assert not list(frameworks.root().glob("torch.partial-*"))


def test_no_index_reachable_is_a_clear_offline_error(installed_app, monkeypatch):
    monkeypatch.delenv("PIP_NO_INDEX")
    monkeypatch.delenv("PIP_FIND_LINKS")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    with pytest.raises(Exception, match="cannot be reached from here") as caught:
        frameworks.prepare("torch")
    assert frameworks.PATH_ENV in str(caught.value)
    assert not (frameworks.root() / "torch").exists()


def test_an_existing_environment_instead(installed_app, tmp_path, monkeypatch):
    site = tmp_path / "site-packages"
    (site / "tinyfw").mkdir(parents=True)
    (site / "tinyfw" / "__init__.py").write_text("VALUE = 8\n")
    monkeypatch.setenv(frameworks.PATH_ENV, str(site))
    assert frameworks.available("torch")
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert frameworks.activate() == [site]


def test_the_frameworks_step_through_the_runner(installed_app):
    from workflows.runner import run_step

    # The child process is not frozen: it reports the frameworks as installed packages.
    result = run_step("frameworks", {})
    assert {f["family"] for f in result["frameworks"]} == {"torch", "tensorflow"}
    with pytest.raises(Exception, match="not one of"):
        run_step("frameworks", {"install": "jax"})


def test_the_cli_lists_frameworks():
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "frameworks"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "PyTorch 2.13.0" in r.stdout and "installed" in r.stdout


def test_the_framework_index_is_used_unless_pip_sources_are_set(tmp_path, monkeypatch):
    for name in frameworks.PIP_SOURCES:
        monkeypatch.delenv(name, raising=False)
    url = frameworks.FRAMEWORKS["torch"].index_url
    assert url == "https://download.pytorch.org/whl/cpu"
    command = frameworks.pip_install_command(tmp_path / "lock.txt", tmp_path / "t", url)
    assert command[command.index("--extra-index-url") + 1] == url
    assert {"--require-hashes", "--no-deps", "--target"} <= set(command)
    monkeypatch.setenv("PIP_INDEX_URL", "https://mirror.example/simple")
    assert "--extra-index-url" not in frameworks.pip_install_command(tmp_path / "l", tmp_path, url)


LOCKS = sorted((frameworks.resources_dir() / "frameworks").glob("*.txt"))


def _pins(lock):
    """name -> (version, its hashes) of a lock file."""
    text = lock.read_text()
    pins = {}
    for block in re.split(r"\n(?=\S)", re.sub(r"^#.*\n", "", text, flags=re.MULTILINE)):
        name, version = re.match(r"([a-z0-9-]+)==(\S+)", block).groups()
        pins[name] = (version, re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return pins


def test_a_lock_per_framework_and_platform_the_app_ships_for():
    names = {lock.stem for lock in LOCKS}
    assert names == {f"{family}-{p}" for family in frameworks.FRAMEWORKS
                     for p in ("linux-x86_64", "win32-amd64", "darwin-arm64")}  # fmt: skip
    for lock in LOCKS:
        pins = _pins(lock)
        assert all(len(hashes) == 1 for _, hashes in pins.values()), lock.name  # the one file
        header = dict(re.findall(r"^# ([a-z-]+): (\S+)$", lock.read_text(), flags=re.MULTILINE))
        assert 50 < int(header["download-mb"]) < int(header["installed-mb"]) < 2000, lock.name
        assert not {"numpy", "onnx", "protobuf", "onnxruntime"} & set(pins), lock.name  # bundled
        local_builds = [v for v, _ in pins.values() if "+" in v]
        # a build PyPI lacks comes with the index that has it, and only then
        assert bool(local_builds) == ("extra-index-url" in header), lock.name
    # PyPI's Linux torch is the CUDA build; its Windows and macOS wheels are the CPU ones
    assert _pins(LOCKS[0].parent / "torch-linux-x86_64.txt")["torch"][0] == "2.13.0+cpu"
    assert _pins(LOCKS[0].parent / "torch-win32-amd64.txt")["torch"][0] == "2.13.0"
    # tensorflow-cpu has no macOS wheel; macOS's tensorflow is the CPU build
    assert "tensorflow" in _pins(LOCKS[0].parent / "tensorflow-darwin-arm64.txt")
    assert "tensorflow-cpu" in _pins(LOCKS[0].parent / "tensorflow-win32-amd64.txt")


def test_the_locks_pin_what_pyproject_pins():
    """A changed pin in pyproject.toml without new locks would ship untested versions. (What
    pyproject leaves unpinned floats in a fresh install, so only its pins are compared.)"""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    pinned = dict(
        re.match(r"([A-Za-z0-9_.-]+)==([^;\s]+)", d).groups()
        for d in project["project"]["dependencies"]
        if "==" in d
    )
    pinned = {re.sub(r"[-_.]+", "-", n).lower(): v for n, v in pinned.items()}
    compared = set()
    for lock in LOCKS:
        for name, (version, _) in _pins(lock).items():
            want = pinned.get("tensorflow-cpu" if name == "tensorflow" else name)
            if want:
                assert version.split("+")[0] == want, f"{lock.name}: {name}"
                compared.add(name)
    assert {"torch", "tensorflow-cpu", "keras", "torchserve"} <= compared


def test_what_preparing_costs_is_read_from_this_platforms_lock():
    torch = frameworks.FRAMEWORKS["torch"]
    header = torch.lock_header()
    assert torch.size_text() == (
        f"a {header['download-mb']} MB download, {header['installed-mb']} MB on disk"
    )
    assert torch.index_url == header.get("extra-index-url", "")
