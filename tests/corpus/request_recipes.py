"""Makers of request bodies that tests/corpus/requests.yaml names (those too long or too binary to
write in YAML). Each returns the body's bytes."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

ZEROS_64 = "[" + ", ".join(["0.0"] * 64) + "]"


def v2(
    data: str = ZEROS_64,
    shape: str = "[1, 1, 8, 8]",
    extra: str = "",
    datatype: str = '"FP32"',
    name: str = '"x"',
    first_value: str | None = None,
) -> bytes:
    """An Open Inference Protocol v2 request for the digits model, spliced from text (so that it
    can hold what json.dumps would never write: NaN, 400-digit numbers …)."""
    if first_value is not None:
        data = "[" + first_value + ", 0.0" * 63 + "]"
    tensor = f'{{"name": {name}, "shape": {shape}, "datatype": {datatype}, "data": {data}}}'
    return f'{{"inputs": [{tensor}]{extra}}}'.encode()


def v2_nested(depth: int) -> bytes:
    """A v2 request whose data is nested `depth` lists deep."""
    return v2(data="[" * depth + "0" + "]" * depth)


def batch_v2(n: int) -> bytes:
    return v2("[" + ", ".join(["0"] * 64 * n) + "]", shape=f"[{n}, 1, 8, 8]")


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return (open_ * depth + close * depth).encode()


def repeated(unit: str, times: int, prefix: str = "", suffix: str = "") -> bytes:
    return (prefix + unit * times + suffix).encode()


def tensor_json(shape: list[int], key: str = "inputs", first: str | None = None) -> bytes:
    """{key: zeros(shape)} as JSON, its first number replaced by `first` (NaN, 1e999 …)."""
    text = json.dumps({key: np.zeros(shape).tolist()})
    return (text.replace("0.0", first, 1) if first else text).encode()


def random_bytes(size: int = 1024, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def png_header(width: int, height: int, cut: int | None = None) -> bytes:
    """A PNG that claims `width`x`height` 1-bit pixels (a decompression bomb's header) with a few
    bytes of data: a server must refuse it from its header, before decoding anything."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64)))
    return data[:cut] if cut else data
