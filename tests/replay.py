"""Compare two runs of the same steps file by file: the wizard's and its saved workflow's replay.

Every file must be byte-identical, except (1) the run folder's own location wherever a result
names it, (2) the fields listed in VOLATILE: timestamps and durations, and (3) a SavedModel's
fingerprint.pb (its uuid is new at every save). Archives (.mar) are compared member by member,
since a zip records when each member was written.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

VOLATILE = {
    "created",  # manifest.json: when it was written
    "createdOn",  # TorchServe's MAR-INF/MANIFEST.json: when the archive was built
    "seconds",  # durations measured while the step ran
    "server_ready_seconds",
    "original_seconds",
    "candidate_seconds",
}


def _normalise(value: Any, root: str) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v, root) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_normalise(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(root, "<run>")
    return value


def _same(a: bytes, b: bytes, name: str, roots: tuple[str, str]) -> bool:
    if a == b:
        return True
    if name.endswith(".json"):
        return _normalise(json.loads(a), roots[0]) == _normalise(json.loads(b), roots[1])
    # A SavedModel's fingerprint: hashes of the files beside it (compared themselves) and a
    # uuid TensorFlow draws anew at every save. (Parsing it would import TensorFlow, which
    # crashes a process that has Qt WebEngine loaded.)
    return name == "fingerprint.pb"


def _zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def differences(a: Path, b: Path, parts: list[str]) -> list[str]:
    """What differs between run folders `a` and `b` under `parts` (files or folders)."""
    roots = (str(a), str(b))
    found = []
    for part in parts:
        files_a = sorted(p.relative_to(a) for p in (a / part).rglob("*") if p.is_file()) or [
            Path(part)
        ]
        files_b = sorted(p.relative_to(b) for p in (b / part).rglob("*") if p.is_file()) or [
            Path(part)
        ]
        if files_a != files_b:
            found.append(f"{part}: files {set(map(str, files_a)) ^ set(map(str, files_b))}")
            continue
        for rel in files_a:
            fa, fb = a / rel, b / rel
            if not fa.is_file() or not fb.is_file():
                found.append(f"{rel}: missing")
            elif fa.suffix in (".mar", ".zip"):
                ma, mb = _zip_members(fa), _zip_members(fb)
                if ma.keys() != mb.keys():
                    found.append(f"{rel}: members {set(ma) ^ set(mb)}")
                found += [f"{rel}!{n}" for n in ma if n in mb and not _same(ma[n], mb[n], n, roots)]
            elif not _same(fa.read_bytes(), fb.read_bytes(), rel.name, roots):
                found.append(str(rel))
    return found


def absolute_paths(value: Any, where: str = "") -> list[str]:
    """Every string in a JSON value that is an absolute path (POSIX or Windows), with its key."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in absolute_paths(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in absolute_paths(v, f"{where}[{i}]")]
    if isinstance(value, str) and (
        PurePosixPath(value).is_absolute() or PureWindowsPath(value).is_absolute()
    ):
        return [f"{where}: {value}"]
    return []
