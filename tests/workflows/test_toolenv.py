"""Tool environments: two Dockyards that both find one missing build it once, not twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from workflows import toolenv


class _FakePip:
    """Stands in for `pip install` (no network in tests): slow enough for the two to overlap."""

    runs = 0

    def __init__(self, cmd, **_kwargs) -> None:
        type(self).runs += 1
        time.sleep(0.5)
        self.stdout = iter(["Collecting fakepkg==1\n", "Successfully installed fakepkg-1\n"])

    def wait(self) -> int:
        return 0


def _fake_venv(cmd, **_kwargs):
    env = Path(cmd[-1])
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")


def test_two_concurrent_creators_build_it_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKYARD_TOOLS_DIR", str(tmp_path))
    monkeypatch.setattr(toolenv.subprocess, "run", _fake_venv)
    monkeypatch.setattr(toolenv.subprocess, "Popen", _FakePip)
    _FakePip.runs = 0
    found: list[Path] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            found.append(toolenv.ensure("fakepkg", "1"))
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
