"""The bundle's Python mode (workflows/frozen.py): `python -m`, `-c` and a script, run in-process
the way the interpreter runs them; and the command that starts Python code, frozen or not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from workflows import frozen

RUN = "from workflows.frozen import run_as_python; import sys; sys.exit(run_as_python({args!r}))"


def python_mode(args: list[str], cwd: Path, env: dict[str, str] | None = None):
    """run_as_python(args) in a fresh interpreter (it changes sys.path and sys.argv)."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-c", RUN.format(args=args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), **(env or {})},
    )


def test_module_from_the_working_folder_with_its_arguments(tmp_path):
    pkg = tmp_path / "server"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import sys\nprint('main', __name__, sys.argv[1:])\nsys.exit(int(sys.argv[1]))\n"
    )
    r = python_mode(["-m", "server", "3", "x"], tmp_path)
    assert r.returncode == 3, r.stderr
    assert "main __main__ ['3', 'x']" in r.stdout


def test_script_gets_its_folder_on_the_path_and_pythonpath_is_honoured(tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 41\n")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "other.py").write_text("VALUE = 1\n")
    (tmp_path / "client.py").write_text(
        "import sys, helper, other\nprint(helper.VALUE + other.VALUE, sys.argv)\n"
    )
    r = python_mode([str(tmp_path / "client.py"), "--url", "u"], Path("/"),
                    {"PYTHONPATH": f"{Path(__file__).resolve().parents[2]}:{extra}"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("42 [") and "'--url', 'u'" in r.stdout


def test_code_string_and_exit_messages(tmp_path):
    r = python_mode(["-c", "import sys; print(sys.argv); raise SystemExit('went wrong')", "a"],
                    tmp_path)  # fmt: skip
    assert r.returncode == 1
    assert "['-c', 'a']" in r.stdout and "went wrong" in r.stderr
    assert python_mode([], tmp_path).returncode == 2


def test_python_command_frozen_or_not(monkeypatch):
    assert frozen.python_command() == [sys.executable]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert frozen.python_command() == [sys.executable, frozen.PYTHON_FLAG]


def test_the_bundle_is_the_cli_when_started_by_that_name(monkeypatch):
    assert not frozen.started_as_cli(["/opt/Dockyard/dockyard-cli"])  # not frozen: never
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert frozen.started_as_cli(["/opt/Dockyard/dockyard-cli", "inspect"])
    assert frozen.started_as_cli(["C:\\Dockyard\\dockyard-cli.exe"]) == (sys.platform == "win32")
    assert not frozen.started_as_cli(["/opt/Dockyard/dockyard"])


def test_a_python_shim_passes_its_arguments_to_the_python_mode(tmp_path, monkeypatch):
    """TorchServe's frontend starts `PYTHON model_service_worker.py --sock-type ...` for each
    worker; in the bundle PYTHON is a shim that re-enters the Python mode with them."""
    code = "import sys; print(sys.argv[1:])"
    monkeypatch.setattr(frozen, "python_command", lambda: [sys.executable, "-c", code])
    shim = frozen.python_shim(tmp_path)
    said = subprocess.run([str(shim), "worker.py", "--sock-name", "/tmp/a b", "$HOME"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert said.returncode == 0, said.stderr
    assert said.stdout.strip() == "['worker.py', '--sock-name', '/tmp/a b', '$HOME']"
    monkeypatch.setattr(frozen.sys, "platform", "win32")
    (tmp_path / "win").mkdir()
    cmd = frozen.python_shim(tmp_path / "win")
    assert cmd.name == "python.cmd" and cmd.read_text().rstrip().endswith(" %*")
