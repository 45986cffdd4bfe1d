"""Sample arrays read on demand: a dataset of thousands of images or a multi-GB .npz is read a
batch at a time, so memory stays flat however many samples the user gives.

A row source is anything with `shape`, `dtype`, `len()` and `source[rows]` (rows: a slice or an
array of indices) returning a numpy array: an in-memory array, a read-only memory map of a .npy
or of an uncompressed .npz member, or `ImageRows`, which decodes image files when asked.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import weakref
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from workflows.errors import DataError


class Rows(Protocol):
    """Samples along the first axis, read when indexed."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __len__(self) -> int: ...

    def __getitem__(self, rows: Any) -> np.ndarray: ...


def _check_array_dtype(path: Path, dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise DataError(
            f"{path}: holds Python objects (a pickle), which Dockyard does not load; "
            "save plain numeric arrays (numpy.savez with numeric dtypes)"
        )


def open_npy(path: Path) -> np.memmap:
    """A .npy file as a read-only memory map (nothing is read until rows are taken)."""
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:  # object arrays cannot be memory-mapped
        raise DataError(f"{path}: not a plain numeric .npy array ({exc})") from exc
    _check_array_dtype(path, arr.dtype)
    return arr


class NpzColumns:
    """The arrays of a .npz, each opened on demand without loading it.

    numpy's NpzFile decompresses a whole array on access, and cannot memory-map. So members
    stored uncompressed (numpy.savez) are memory-mapped in place, at their offset inside the
    zip; compressed ones (numpy.savez_compressed) are first streamed to a scratch .npy, which is
    then memory-mapped. The scratch folder goes when this object does.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"{path}: not a readable .npz file ({exc})") from exc
        self.names = [n.removesuffix(".npy") for n in self._zip.namelist() if n.endswith(".npy")]
        self._scratch: Path | None = None
        self._finalizer: Callable[[], Any] | None = None

    def close(self) -> None:
        self._zip.close()
        if self._finalizer is not None:
            self._finalizer()

    def small(self, name: str) -> np.ndarray:
        """A small array (labels, label names) read whole."""
        with self._zip.open(f"{name}.npy") as f:
            return np.lib.format.read_array(f, allow_pickle=False)

    def column(self, name: str) -> np.ndarray:
        """Member `name` as a read-only array whose rows are read when taken."""
        info = self._zip.getinfo(f"{name}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            return self._map_stored(info)
        return open_npy(self._spool(info))

    def _map_stored(self, info: zipfile.ZipInfo) -> np.memmap:
        # zipfile gives no offset for a member's data; it starts after the local file header
        # (30 bytes, then the name and extra fields, whose lengths are at bytes 26..29).
        with open(self.path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            f.seek(info.header_offset + 30 + name_len + extra_len)
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
        _check_array_dtype(self.path, dtype)
        return np.memmap(self.path, dtype, "r", offset, shape, order="F" if fortran else "C")

    def _spool(self, info: zipfile.ZipInfo) -> Path:
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="dockyard-npz-"))
            self._finalizer = weakref.finalize(
                self, shutil.rmtree, self._scratch, ignore_errors=True
            )
        target = self._scratch / Path(info.filename).name
        with self._zip.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 16 * 2**20)
        return target


class ImageRows:
    """Image files decoded and preprocessed when their rows are taken (float32 model input)."""

    def __init__(
        self,
        files: list[Path],
        decode: Callable[[Path], np.ndarray],
        apply: Callable[[np.ndarray], np.ndarray],
        folder: Path,
    ) -> None:
        self.files, self._decode, self._apply, self.folder = files, decode, apply, folder
        first = decode(files[0])
        self._size = (first.shape[:2], files[0])
        self.shape = (len(files), *apply(first[None]).shape[1:])
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, rows: Any) -> np.ndarray:
        picked = self.files[rows] if isinstance(rows, slice) else [self.files[i] for i in rows]
        pixels = [self._checked(f) for f in picked]
        if not pixels:
            return np.zeros((0, *self.shape[1:]), self.dtype)
        return self._apply(np.stack(pixels))

    def _checked(self, path: Path) -> np.ndarray:
        arr = self._decode(path)
        (size, first) = self._size
        if arr.shape[:2] != size:
            raise DataError(
                f"{self.folder}: images have different sizes ({first.name} is {size[1]}x{size[0]}, "
                f"{path.name} is {arr.shape[1]}x{arr.shape[0]}) and no resize is set; set one "
                "(e.g. --resize 224x224)"
            )
        return arr
