"""The graph view's overlays from an insight result (issue 16, item 1): which overlays, their
colours' badness, a block's value, the worst node and the threshold."""

from __future__ import annotations

import pytest

from workflows.insight.overlay import BAD_DB, GOOD_DB, box_values, overlays

INSIGHT = {
    "models": [
        {"name": "fp32", "reference": True,
         "times": {"nodes": [{"node": "a", "ms": 0.2}, {"node": "b", "ms": 0.6},
                             {"node": "Transpose_1", "ms": 0.1, "inserted_by_ort": True}]}},
        {"name": "int8-static", "reference": False,
         "times": {"nodes": [{"node": "a", "ms": 0.1}, {"node": "b", "ms": 0.3}]},
         "errors": {"kind": "int8", "nodes": [{"node": "a", "sqnr_db": 42.0},
                                              {"node": "b", "sqnr_db": 12.5},
                                              {"node": "c", "sqnr_db": None}]}},
    ]
}  # fmt: skip


def test_overlays_of_an_insight_result():
    found = {o.key: o for o in overlays(INSIGHT)}
    assert list(found) == ["time:fp32", "sqnr:int8-static", "time:int8-static"]
    sqnr, time = found["sqnr:int8-static"], found["time:fp32"]
    assert sqnr.model == "fp32" and sqnr.values == {"a": 42.0, "b": 12.5}  # the float graph
    assert "Transpose_1" not in time.values  # ORT's own kernels are not nodes of the graph
    assert sqnr.badness(GOOD_DB) == 0 and sqnr.badness(BAD_DB) == 1
    assert sqnr.badness(25.0) == pytest.approx(0.5) and sqnr.badness(None) is None
    assert time.badness(0.6) == 1 and time.badness(0.3) == pytest.approx(0.5)
    assert sqnr.worst() == "b" and time.worst() == "b"
    assert sqnr.failing(20.0) == {"b"} and time.failing(0.25) == {"b"}
    boxes = {"members": [[0, 1], [2]]}
    assert box_values(sqnr, boxes, ["a", "b", "c"]) == [12.5, None]  # a block: its worst node
    assert box_values(time, boxes, ["a", "b", "c"]) == [pytest.approx(0.8), None]  # its total
