"""Atomic outputs: write into a temp folder beside the target, rename into place when complete.

A failed or cancelled step leaves no half-written artifact and never replaces a good one. Temp
folders carry the writing process's pid so the runner can remove what a killed child left behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from workflows.errors import OutputExistsError

PARTIAL_MARK = ".dockyard-partial-"


def _umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux), since
    setting it to read it races with other threads."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _partial_prefix(target: Path, pid: int | None = None) -> str:
    return f".{target.name}{PARTIAL_MARK}{pid or os.getpid()}-"


# Every folder written by atomic_dir carries this file: a folder that does not is the user's, and
# is never replaced (an export to `-o ~/Documents` must not delete the documents).
OWNER_MARK = ".dockyard-output"


def check_replaceable(target: Path) -> None:
    """Raise OutputExistsError unless `target` is absent, an empty folder or a Dockyard output."""
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise OutputExistsError(
            f"{target}: exists and is not a folder Dockyard made; choose another output folder"
        )
    entries = sorted(p.name for p in target.iterdir())
    if entries and OWNER_MARK not in entries and not _made_before_the_mark(target):
        shown = ", ".join(entries[:3]) + (" …" if len(entries) > 3 else "")
        raise OutputExistsError(
            f"{target}: this folder exists and was not written by Dockyard (it holds {shown}). "
            "Dockyard replaces only folders it made: choose another output folder, or empty "
            "this one first."
        )


def _made_before_the_mark(folder: Path) -> bool:
    """An output of an earlier Dockyard (before OWNER_MARK): an export's manifest.json or a
    quantize folder's report.json, as Dockyard writes them."""
    import json

    for name, key, value in (("manifest.json", "dockyard_version", None),
                             ("report.json", "step", "quantize")):  # fmt: skip
        try:
            data = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and key in data and value in (None, data[key]):
            return True
    return False


@contextlib.contextmanager
def atomic_dir(target: Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temp folder; on success it replaces `target`, on any exception it is removed.

    `target` may be replaced only when it is a folder Dockyard wrote (or empty): checked before
    any work starts and again just before the swap."""
    target = Path(target).absolute()  # temp paths must not depend on the working folder
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; choose another output or allow overwrite")
    check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(target), dir=target.parent))
    OPEN_PARTIALS.add(tmp)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide a handoff from its receiver
    try:
        yield tmp
        (tmp / OWNER_MARK).write_text(
            "Written by Dockyard. Running the step again replaces this whole folder.\n"
        )
        check_replaceable(target)
        _may_finish()
        _replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        OPEN_PARTIALS.discard(tmp)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temp file path beside `target`; on success it is renamed onto `target`."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=_partial_prefix(target), dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    OPEN_PARTIALS.add(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # as a plain open() would create it, not mkstemp's 0600
    try:
        yield tmp
        _may_finish()
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        OPEN_PARTIALS.discard(tmp)


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
    PENDING_SWAPS[old] = target
    try:
        os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            os.replace(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        PENDING_SWAPS.pop(old, None)


# Temp files and folders of this process not yet renamed into place or removed: what a step
# whose parent died removes before it kills itself (child._die_with_parent; found by the kill
# drills, scripts/drills.py: a CLI killed during quantize left its half-written folder behind).
OPEN_PARTIALS: set[Path] = set()


# Set in a step's process by the runner: raises when the step must not put its output in place
# (the CLI or app that started it is gone: a killed run must not replace a good output, which
# the kill drills caught happening in the ~0.2 s before the step noticed).
FINISH_CHECKS: list[Callable[[], None]] = []


def _may_finish() -> None:
    for check in FINISH_CHECKS:
        check()


# The previous output, moved aside while its replacement is renamed into place (_replace).
PENDING_SWAPS: dict[Path, Path] = {}


def remove_open_partials() -> None:
    """Remove this process's unfinished temp files and folders; a swap caught halfway puts the
    previous output back (or, when the new one is already in place, drops the old)."""
    for old, target in list(PENDING_SWAPS.items()):
        if old.exists() and not target.exists():
            os.replace(old, target)
        elif old.exists():
            shutil.rmtree(old, ignore_errors=True)
    for path in list(OPEN_PARTIALS):
        for _ in range(2):  # a second pass for files another thread wrote during the first
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


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
    beside = Path(beside).absolute()
    beside.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(beside) + "work-", dir=beside.parent))
    OPEN_PARTIALS.add(tmp)
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        OPEN_PARTIALS.discard(tmp)
