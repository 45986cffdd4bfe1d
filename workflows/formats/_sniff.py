"""Cheap content sniffing shared by the format matchers (no framework imports)."""

from __future__ import annotations

import zipfile
from functools import lru_cache
from pathlib import Path


def head(path: Path, n: int = 64) -> bytes:
    """The first `n` bytes of a file, or b"" for a folder or an unreadable file."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


@lru_cache(maxsize=64)
def _zip_names(path: str, mtime: float) -> tuple[str, ...] | None:
    try:
        with zipfile.ZipFile(path) as z:
            return tuple(z.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        # ValueError includes UnicodeDecodeError: a member name that is not UTF-8 in a damaged
        # archive (found by fuzzing)
        return None


def zip_names(path: Path) -> tuple[str, ...] | None:
    """Member names when `path` is a zip archive, else None."""
    if not path.is_file() or head(path, 4) != b"PK\x03\x04":
        return None
    return _zip_names(str(path), path.stat().st_mtime)


HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
