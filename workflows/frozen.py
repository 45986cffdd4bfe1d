"""Dockyard as a PyInstaller bundle (build_installer.spec): how it runs Python code it has no
interpreter for, and what its executables do first.

A frozen app has no `python` to start: the exported server's smoke test (`python -m server`),
its `client.py` and pip need one. Each bundled executable therefore has a Python mode:
`dockyard-cli --dockyard-python -m server` runs a module, a script or `-c` code the way the
interpreter would, with the bundle's packages. Outside a bundle `python_command()` is just
`sys.executable`.
"""

from __future__ import annotations

import os
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

PYTHON_FLAG = "--dockyard-python"
CLI_NAME = "dockyard-cli"


def is_frozen() -> bool:
    """Running from the PyInstaller bundle rather than a Python installation."""
    return bool(getattr(sys, "frozen", False))


def python_command() -> list[str]:
    """The start of a command line that runs Python code (`[*python_command(), "-m", "x"]`)."""
    return [sys.executable, PYTHON_FLAG] if is_frozen() else [sys.executable]


def enter(argv: list[str] | None = None) -> None:
    """What a bundled executable does before its own main: serve multiprocessing's spawned
    children (a step process re-enters the executable) and the Python mode. Returns only when
    the executable is to run as itself."""
    import multiprocessing

    multiprocessing.freeze_support()  # exits here in a spawned child, once its target is done
    argv = sys.argv if argv is None else argv
    if len(argv) > 1 and argv[1] == PYTHON_FLAG:
        sys.exit(run_as_python(argv[2:]))


def started_as_cli(argv: list[str] | None = None) -> bool:
    """The bundle's two executables are one program (one analysis, half the build time):
    started as dockyard-cli (a console copy on Windows, a symbolic link elsewhere), it is the
    CLI. Told by the name it was started with: sys.executable resolves the link."""
    argv = sys.argv if argv is None else argv
    return is_frozen() and bool(argv) and os.path.basename(argv[0]).lower().startswith(CLI_NAME)


def run_as_python(args: list[str]) -> int:
    """`python -m MODULE ARGS`, `python -c CODE ARGS` or `python SCRIPT ARGS`, in this process:
    sys.path and sys.argv set as the interpreter sets them (PYTHONPATH honoured, which a frozen
    executable otherwise ignores). Returns the exit status."""
    if not args:
        print(f"usage: {os.path.basename(sys.executable)} {PYTHON_FLAG} -m MODULE | -c CODE | "
              "SCRIPT [ARGS]", file=sys.stderr)  # fmt: skip
        return 2
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    try:
        if args[0] == "-m" and len(args) > 1:
            sys.path[:0] = [os.getcwd(), *extra]
            sys.argv = [args[1], *args[2:]]
            runpy.run_module(args[1], run_name="__main__", alter_sys=True)
        elif args[0] == "-c" and len(args) > 1:
            sys.path[:0] = ["", *extra]
            sys.argv = ["-c", *args[2:]]
            exec(compile(args[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.path[:0] = [os.path.dirname(os.path.abspath(args[0])), *extra]
            sys.argv = list(args)
            runpy.run_path(args[0], run_name="__main__")
    except SystemExit as done:
        code = done.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    return 0


def python_shim(folder: Path) -> Path:
    """An executable named `python` in `folder` that runs `python_command()`: for a program that
    insists on starting "a Python" with its own arguments (TorchServe's frontend starts
    `PYTHON model_service_worker.py ...` for each worker), where the bundle's Python mode needs
    its flag first. Outside a bundle it simply starts this interpreter."""
    command = python_command()
    if sys.platform == "win32":
        shim = folder / "python.cmd"
        shim.write_text("@" + subprocess.list2cmdline(command) + " %*\r\n")
    else:
        shim = folder / "python"
        shim.write_text("#!/bin/sh\nexec " + shlex.join(command) + ' "$@"\n')
        shim.chmod(0o755)
    return shim
