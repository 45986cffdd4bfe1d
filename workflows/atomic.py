"""Atomic outputs: write into a temp folder beside the target, rename into place when complete.

A failed or cancelled step leaves no half-written artifact and never replaces a good one. Temp
folders carry the writing process's pid so the runner can remove what a killed child left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PARTIAL_MARK = ".dockyard-partial-"


def _partial_prefix(target: Path, pid: int | None = None) -> str:
    return f".{target.name}{PARTIAL_MARK}{pid or os.getpid()}-"


@contextlib.contextmanager
def atomic_dir(target: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp folder; on success it replaces `target`, on any exception it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; choose another output or allow overwrite")
    tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(target), dir=target.parent))
    try:
        yield tmp
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temp file path beside `target`; on success it is renamed onto `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_partial_prefix(target), dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(target: Path, value: object) -> None:
    """`value` as indented JSON at `target`, atomically (strict: NaN and infinity refused)."""
    import json

    from workflows.jsonable import jsonable

    with atomic_file(target) as tmp:
        tmp.write_text(json.dumps(jsonable(value), indent=2, allow_nan=False))


def _replace(tmp: Path, target: Path) -> None:
    """Swap a finished folder into place; the old one is removed only after the swap."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = target.with_name(f".{target.name}{PARTIAL_MARK}old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_partials(folder: Path, pid: int) -> list[Path]:
    """Remove the temp files and folders that process `pid` left in `folder`; return them."""
    removed = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if PARTIAL_MARK + f"{pid}-" in entry.name:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def scratch_dir(beside: Path) -> Iterator[Path]:
    """A work folder beside `beside` (same disk), removed afterwards; marked for crash clean-up."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(beside) + "work-", dir=beside.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
