"""The fallback search's bookkeeping with stand-in callables: tries the quantizer or the runtime
refuses are recorded as failed tries, never the end of the search."""

from __future__ import annotations

from workflows.errors import ConversionError, RuntimeLoadError
from workflows.progress import Progress
from workflows.quantization.search import Search


def _gate(decision: str) -> dict:
    return {"decision": decision, "passed": decision == "pass"}


def test_tries_that_cannot_be_made_or_loaded_are_recorded_and_the_search_goes_on(tmp_path):
    # PP-OCRv4's detector: per-channel weights made a model ONNX Runtime cannot load (opset 11's
    # DequantizeLinear has no axis); that used to end the whole quantize step.
    def make(settings, path):
        if settings.get("method") == "entropy":
            raise ConversionError("ORT's quantizer could not make static INT8")
        path.write_bytes(b"made")

    def measure(path):
        if path.name == "try-1.onnx":
            raise RuntimeLoadError(f"{path}: ONNX Runtime cannot load the model")
        return {"gate": _gate("pass" if path.name == "try-3.onnx" else "fail")}

    naive = tmp_path / "naive.onnx"
    naive.write_bytes(b"naive")
    search = Search(
        make=make,
        measure=measure,
        cost=lambda path: {"size_bytes": 4, "p50_ms": 1.0},
        rank=lambda path: [],
        int8_fraction=lambda path: 1.0,
        workdir=tmp_path / "search",
        max_rounds=0,
        progress=Progress(),
    )
    base = {"method": "minmax", "per_channel": False, "exclude": []}
    knobs = [
        ("per-channel weights", {**base, "per_channel": True}),
        ("entropy calibration", {**base, "method": "entropy"}),
        ("percentile calibration", {**base, "method": "percentile"}),
    ]
    found = search.run((naive, {"gate": _gate("fail")}), base, knobs)
    decisions = [(t["what"], t["gate"]["decision"]) for t in search.tries]
    assert decisions == [
        ("as asked", "fail"),
        ("per-channel weights", "fail"),
        ("entropy calibration", "fail"),
        ("percentile calibration", "pass"),
    ]
    assert "cannot load" in search.tries[1]["gate"]["error"]
    assert "could not make" in search.tries[2]["gate"]["error"]
    assert found["outcome"] == "passed" and found["chosen"]["try"] == 3
