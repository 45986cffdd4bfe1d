"""The exported server's request decoding on its own (orjson, strict): what a client's JSON
becomes, and which mistakes are refused with a 4xx and a message."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources" / "templates" / "docker"))
from server.decode import RequestError, Signature, TensorInfo, v1_request, v2_request

FLOATS = Signature([TensorInfo("x", "float32", [None, 3])])
INTS = Signature([TensorInfo("ids", "int64", [None, 3])])
BYTES8 = Signature([TensorInfo("ids", "int8", [None, 3])])


def _v2(data: str, name: str = "x", datatype: str = "FP32") -> bytes:
    return (
        f'{{"inputs": [{{"name": "{name}", "shape": [1, 3], "datatype": "{datatype}", '
        f'"data": {data}}}]}}'
    ).encode()


def test_values_arrive_exactly():
    feeds = v2_request(_v2("[0.1, -2.5, 3e-7]"), FLOATS).feeds
    np.testing.assert_array_equal(feeds["x"], np.float32([[0.1, -2.5, 3e-7]]))
    ids = v2_request(_v2("[1, 9007199254740993, -4]", "ids", "INT64"), INTS).feeds["ids"]
    assert ids.dtype == np.int64 and ids.tolist() == [[1, 9007199254740993, -4]]
    assert v1_request(b'{"instances": [[1, 2, 3]]}', FLOATS)["x"].shape == (1, 3)


@pytest.mark.parametrize(
    ("body", "signature", "says"),
    [
        (_v2("[NaN, 1, 2]"), FLOATS, "not valid JSON"),
        (_v2("[Infinity, 1, 2]"), FLOATS, "not valid JSON"),
        (_v2("[1e400, 1, 2]"), FLOATS, "not valid JSON"),
        (_v2("[1e39, 1, 2]"), FLOATS, "out of range for FP32"),
        (b"[" * 2000 + b"]" * 2000, FLOATS, "nested too deeply"),
        (b'{"inputs": [], "id": NaN}', FLOATS, "NaN is not a JSON number"),
        (_v2("[1.5, 2, 3]", "ids", "INT64"), INTS, "whole numbers"),
        (_v2("[123456789012345678901234567890, 2, 3]", "ids", "INT64"), INTS, "INT64"),
        (_v2("[300, 2, 3]", "ids", "INT8"), BYTES8, "INT8"),
        (_v2('["a", 2, 3]'), FLOATS, "not a list of FP32 numbers"),
    ],
)
def test_mistakes_are_refused_with_a_message(body, signature, says):
    with pytest.raises(RequestError) as caught:
        v2_request(body, signature)
    assert caught.value.status == 400 and says in str(caught.value)
