"""Tool environments: made from a hashed lock file (a file that is not the recorded one is refused
and nothing is left), rebuilt when the lock changes, built once by two concurrent creators."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.workflows.tiny_wheel import make_wheel
from workflows import toolenv
from workflows.errors import ConversionError


def _wheel(folder: Path, version: str = "1") -> Path:
    """A minimal pure-Python wheel of `dockyardfake` (no network in tests)."""
    return make_wheel(folder, "dockyardfake", version, f"VERSION = {version!r}\n")


def _tool(lock: Path, version: str = "1") -> toolenv.Tool:
    return toolenv.Tool("dockyardfake", version, platforms=(sys.platform,), lock=lock)


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A local package index holding one wheel; the cache folder in tmp_path."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("DOCKYARD_TOOLS_DIR", str(tmp_path / "tools"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_CONSTRAINT", "")
    return wheels


def test_installs_exactly_the_locked_file_and_records_its_lock(tmp_path, index):
    wheel = _wheel(index)
    lock = tmp_path / "lock.txt"
    lock.write_text(
        f"dockyardfake==1 --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}\n"
    )
    bin_dir = toolenv.ensure(_tool(lock))
    out = subprocess.run(
        [str(bin_dir / "python"), "-c", "import dockyardfake; print(dockyardfake.VERSION)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "1"
    marker = bin_dir.parent / "dockyard-ready.json"
    assert hashlib.sha256(lock.read_bytes()).hexdigest() in marker.read_text()

    # A changed lock (a Dockyard upgrade) rebuilds it; an unchanged one is reused as it is.
    before = marker.stat().st_mtime_ns
    assert toolenv.ensure(_tool(lock)) == bin_dir and marker.stat().st_mtime_ns == before
    lock.write_text(lock.read_text() + "# upgraded\n")
    toolenv.ensure(_tool(lock))
    assert marker.stat().st_mtime_ns != before


def test_a_file_that_does_not_match_its_hash_is_refused_and_nothing_is_left(tmp_path, index):
    _wheel(index)
    lock = tmp_path / "lock.txt"
    lock.write_text(f"dockyardfake==1 --hash=sha256:{'0' * 64}\n")
    with pytest.raises(ConversionError, match="does not match the sha256 recorded in") as err:
        toolenv.ensure(_tool(lock))
    assert str(lock) in str(err.value)
    assert not (tmp_path / "tools" / "dockyardfake-1").exists()


def test_an_unpinned_or_unhashed_lock_installs_nothing(tmp_path, index):
    _wheel(index)
    lock = tmp_path / "lock.txt"
    lock.write_text("dockyardfake\n")
    with pytest.raises(ConversionError, match="pip failed"):
        toolenv.ensure(_tool(lock))
    assert not (tmp_path / "tools" / "dockyardfake-1").exists()


def test_a_platform_without_a_lock_is_told_why_before_anything_is_made(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_TOOLS_DIR", str(tmp_path))
    tool = toolenv.Tool("x", "1", platforms=("plan9",), unsupported="Use Linux.")
    with pytest.raises(
        ConversionError,
        match=rf"cannot be installed on this platform \({sys.platform}\). Use Linux",
    ):
        toolenv.ensure(tool)
    assert list(tmp_path.iterdir()) == []


def test_the_shipped_onnx2tf_lock_pins_and_hashes_every_package():
    lock = toolenv.ONNX2TF.lock_file()
    entries = [
        e
        for e in lock.read_text().replace("\\\n", " ").splitlines()
        if e.strip() and not e.lstrip().startswith("#")
    ]
    names = {e.split("==")[0] for e in entries}
    assert "onnx2tf" in names and "tensorflow" in names and len(entries) > 50
    for e in entries:
        assert "==" in e and "--hash=sha256:" in e, e
    assert "onnx2tf==1.29.24" in lock.read_text()
    assert "--require-hashes" in toolenv.pip_command(Path("python"), lock)


class _FakePip:
    """Stands in for `pip install`: slow enough for the two creators to overlap."""

    runs = 0

    def __init__(self, cmd, **_kwargs) -> None:
        type(self).runs += 1
        time.sleep(0.5)
        self.stdout = iter(["Collecting fakepkg==1\n", "Successfully installed fakepkg-1\n"])

    returncode = 0

    def __enter__(self) -> _FakePip:
        return self

    def __exit__(self, *_exc) -> None:
        pass


def _fake_venv(cmd, **_kwargs):
    env = Path(cmd[-1])
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")


def test_two_concurrent_creators_build_it_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_TOOLS_DIR", str(tmp_path))
    monkeypatch.setattr(toolenv.subprocess, "run", _fake_venv)
    monkeypatch.setattr(toolenv.subprocess, "Popen", _FakePip)
    _FakePip.runs = 0
    lock = tmp_path / "fakepkg.lock.txt"
    lock.write_text("fakepkg==1 --hash=sha256:" + "1" * 64 + "\n")
    tool = toolenv.Tool("fakepkg", "1", platforms=(sys.platform,), lock=lock)
    found: list[Path] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            found.append(toolenv.ensure(tool))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and len(found) == 2 and found[0] == found[1]
    assert _FakePip.runs == 1, "the environment was built twice (one creator deleted the other's)"
    assert (tmp_path / "fakepkg-1" / "dockyard-ready.json").is_file()


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_CACHE_HOME": "/x/cache"}, "/x/cache/dockyard/tools"),
        ("linux", {"HOME": "/home/u"}, "/home/u/.cache/dockyard/tools"),
        ("darwin", {"HOME": "/Users/u"}, "/Users/u/Library/Caches/dockyard/tools"),
        ("win32", {"LOCALAPPDATA": "C:/Users/u/AppData/Local"},
         "C:/Users/u/AppData/Local/dockyard/tools"),
    ],
)  # fmt: skip
def test_cache_folders_per_platform(monkeypatch, platform, env, expected):
    """Where tool environments and the installed app's frameworks go on each OS."""
    from workflows import frameworks

    for name in ("DOCKYARD_TOOLS_DIR", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", platform)
    assert toolenv.cache_dir().as_posix() == expected
    assert frameworks.root().as_posix() == expected.replace("/tools", "/frameworks")


def test_the_installed_app_says_why_it_cannot_make_a_tool_environment(tmp_path, monkeypatch):
    import workflows.frozen

    monkeypatch.setenv("DOCKYARD_TOOLS_DIR", str(tmp_path))
    monkeypatch.setattr(workflows.frozen, "is_frozen", lambda: True)
    with pytest.raises(ConversionError, match=r"cannot make.*Keras or TensorFlow model"):
        toolenv.ensure(toolenv.ONNX2TF)
    assert not list(tmp_path.iterdir())  # nothing made


def test_pip_progress_counts_the_lock_files_fetched(tmp_path):
    """One reading of pip's output for tool environments and the app's frameworks."""
    lock = tmp_path / "lock.txt"
    lock.write_text("".join(f"p{i}==1 \\\n    --hash=sha256:{'0' * 64}\n" for i in range(4)))
    said = "Collecting p0==1\\nCollecting p1==1\\nProcessing ./p2-1.whl\\nCollecting p3==1\\n"
    said += "Installing collected packages: p0, p1, p2, p3\\nSuccessfully installed\\n"
    seen: list[tuple[float, str]] = []

    class Record:
        def update(self, fraction: float, message: str = "") -> None:
            seen.append((fraction, message))

    status, output = toolenv.run_pip(
        [sys.executable, "-c", f"print('{said}', end='')"], lock, Record()
    )
    assert status == 0 and output.endswith("Successfully installed\n")
    assert [round(f, 2) for f, _ in seen] == [0.25, 0.45, 0.65, 0.85, 0.85]
    assert seen[2][1] == "Downloading p2-1.whl" and "unpacking" in seen[-1][1]
