"""`dockyard-cli`: the engine's steps from the command line, with the same code the GUI runs.

Readable tables by default, `--json` for machines; a progress bar on stderr for long work;
exit 0 on success, 1 with a one-line error (no traceback) otherwise, 130 when interrupted.
Flags are generated from the steps' option declarations (`flags.py`), output is drawn from the
shared presenters (`render.py`). What the frameworks print goes to the step's log file
(`workflows.logs`), not between these lines, unless `--verbose`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workflows import __version__
from workflows.errors import DockyardError


def build_parser() -> argparse.ArgumentParser:
    from workflows.cli.commands import add_commands

    parser = argparse.ArgumentParser(
        prog="dockyard-cli",
        description="Load, inspect, convert, quantize, test and export ML models.",
    )
    parser.add_argument("--version", action="version", version=f"dockyard {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help="let the frameworks' own output (TensorFlow, torch, converters) through to stderr "
        "instead of the step's log file",
    )  # fmt: skip
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def _progress_bar(quiet: bool) -> Any:
    """A rich progress display on stderr; drawn only on a terminal and when not quiet."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )


def _run_with_progress(
    step: str, options: Any, outputs: list[Path], quiet: bool, log: Path | None
) -> dict[str, Any]:
    """Run a step in the child-process runner, drawing a progress bar on stderr."""
    from workflows.runner import StepProcess

    with _progress_bar(quiet) as bar:
        task = bar.add_task(step, total=1.0)
        proc = StepProcess(
            step, options, lambda f, m: bar.update(task, completed=f, description=m), outputs,
            log=log,
        )  # fmt: skip
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.cancel()
            raise


def _run_workflow(options: dict[str, Any], quiet: bool, verbose: bool) -> dict[str, Any]:
    """Run every step of a workflow file, one progress bar per step."""
    from workflows.model import model_name
    from workflows.workflow import Workflow, run_workflow

    wf = Workflow.load(Path(options["workflow"]))
    if options.get("output"):
        wf.output = options["output"]
    wf.model.allow_unsafe = bool(options.get("allow_unsafe"))  # the person running it decides
    logs = None if verbose else Path(wf.output) / model_name(wf.model.path) / "logs"
    with _progress_bar(quiet) as bar:
        tasks: dict[int, Any] = {}

        def on_event(i: int, name: str, fraction: float, message: str) -> None:
            if i not in tasks:
                tasks[i] = bar.add_task(name, total=1.0)
            bar.update(tasks[i], completed=fraction, description=f"{name}: {message}"[:80])

        return run_workflow(wf, on_event, logs)


def _print(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, allow_nan=False) + "\n")
        return
    from rich.console import Console

    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=140)
    args.command_show(out, result)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `dockyard-cli`."""
    from rich.console import Console

    args = build_parser().parse_args(argv)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    log = None
    try:
        step, options, outputs = args.command_options(args)
        if step == "run":
            result = _run_workflow(options, quiet=args.json, verbose=args.verbose)
        else:
            from workflows.logs import new_log

            log = None if args.verbose else new_log(step)
            result = _run_with_progress(step, options, outputs, quiet=args.json, log=log)
    except KeyboardInterrupt:
        err.print("dockyard-cli: interrupted; nothing was written")
        return 130
    except DockyardError as exc:
        from workflows.logs import mention

        message = " ".join(str(exc).split())
        err.print(f"dockyard-cli: error: {message}{mention(log)}", markup=False)
        return 1
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("DOCKYARD_DEBUG"):
            raise
        err.print(
            f"dockyard-cli: internal error: {type(exc).__name__}: {exc} (please report it; "
            "set DOCKYARD_DEBUG=1 for the traceback)",
            markup=False,
        )
        return 2
    _print(args, result)
    return 1 if step in ("validate", "export-tflite") and not result["passed"] else 0
