"""The frameworks step: which frameworks this installation can use, and preparing one (the
installed app's PyTorch or TensorFlow, downloaded on first use; workflows.frameworks). Run as
a step so that it has progress and Cancel like any other: a cancelled preparation leaves
nothing behind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflows import frameworks
from workflows.errors import OptionsError
from workflows.options import Options, from_dict, option
from workflows.progress import Progress, null_progress


@dataclass
class FrameworksOptions(Options):
    """Options of the frameworks step."""

    install: str | None = option(None, "Prepare this framework: torch or tensorflow")


def run(options: FrameworksOptions | dict[str, Any], progress: Progress | None = None) -> dict:
    """Prepare the framework named by `install` (if any); every framework's status."""
    opts = from_dict(FrameworksOptions, options)
    progress = progress or null_progress()
    prepared = None
    if opts.install:
        if opts.install not in frameworks.FRAMEWORKS:
            raise OptionsError("install", f"{opts.install!r} is not one of "
                               f"{', '.join(frameworks.FRAMEWORKS)}")  # fmt: skip
        if frameworks.available(opts.install):
            progress.update(1.0, f"{frameworks.FRAMEWORKS[opts.install].title} is available")
        else:
            prepared = str(frameworks.prepare(opts.install, progress))
    return {"prepared": prepared, "frameworks": frameworks.status()}
