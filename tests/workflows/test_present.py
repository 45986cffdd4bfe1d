"""Presenters: one formatting of each result kind for the CLI, the HTML report and the GUI."""

from __future__ import annotations

from workflows import present


def _quantize() -> dict:
    gate = {"passed": True, "drop_points": 0.22}
    return {
        "float_model": {"accuracy": {"samples": 450, "top1": 0.9844, "top5": 1.0}},
        "variants": [
            {
                "name": "int8-static",
                "file": "m.int8-static.onnx",
                "size_bytes": 78_748,
                "size_ratio": 3.667,
                "excluded_nodes": ["/conv1/Conv"],
                "fallback": {
                    "outcome": "passed",
                    "chosen": 1,
                    "tries": [
                        {
                            "try": 0,
                            "what": "as asked",
                            "int8_fraction": 1.0,
                            "size_bytes": 78_000,
                            "p50_ms": 0.2,
                            "gate": {"passed": False, "drop_points": 3.1},
                        },
                        {
                            "try": 1,
                            "what": "1 node(s) in float",
                            "int8_fraction": 0.75,
                            "size_bytes": 90_000,
                            "p50_ms": 0.25,
                            "gate": gate,
                        },
                    ],
                    "cost": {
                        "before": {"size_bytes": 78_000, "p50_ms": 0.2},
                        "after": {"size_bytes": 90_000, "p50_ms": 0.25},
                    },
                },
                "accuracy": {
                    "samples": 450,
                    "top1": 0.9822,
                    "deviation": {"top1_agreement": 0.995, "max_abs_error": 1.6234},
                    "gate": gate,
                },
            }
        ],
    }


def test_numbers_units_and_verdicts():
    assert present.pct(0.98444) == "98.44 %" and present.pct(None) == "-"
    assert present.size(512) == "512 B" and present.size(78_748) == "76.9 KB"
    assert present.size(3 * 2**20) == "3.0 MB"
    assert present.num(None) == "exact" and present.num(0.000123456) == "0.000123"
    assert present.gate({"passed": False, "drop_points": 1.5}) == "FAIL (+1.50 pt)"  # old report
    assert present.gate({"passed": None}) == "-"
    g = {"decision": "pass", "metric": "top1", "drop_points": 0.22, "ci_points": [-0.31, 0.75]}
    assert present.gate(g) == "pass (+0.22 pt, CI -0.31..+0.75)"
    g = {**g, "decision": "inconclusive", "ci_points": [-0.2, 1.6], "samples_needed": 1417}
    assert present.gate(g) == "inconclusive (+0.22 pt, CI -0.20..+1.60; ~1,417 samples to decide)"


def test_quantize_and_accuracy_tables():
    q = _quantize()
    t = present.quantize_variants(q)
    assert t.headers[0] == "variant" and len(t.rows) == 1
    row = dict(zip(t.headers, t.rows[0], strict=True))
    assert row == {
        "variant": "int8-static",
        "file": "m.int8-static.onnx",
        "size": "76.9 KB",
        "smaller": "3.67x",
        "top-1": "98.22 %",
        "top-1 agree": "99.50 %",
        "max abs err": "1.62",
        "gate": "pass (+0.22 pt)",
        "kept float": "1",
    }
    acc = present.accuracy(q)
    assert [r[0] for r in acc.rows] == ["float (fp32)", "int8-static"]
    assert acc.rows[0][1:4] == ["450", "98.44 %", "100.00 %"] and acc.rows[0][6] == "-"
    assert present.fallback_lines(q) == [
        "int8-static: fallback search passed the gate with 1 node(s) in float",
        "  kept in float: /conv1/Conv",
        "  cost: size 76.2 KB -> 87.9 KB, p50 (batch 1) 0.200 -> 0.250 ms",
    ]
    tries = present.fallback_tries(q["variants"][0])
    assert tries.headers == ["try", "what", "INT8 ops", "size", "p50 ms", "gate", "chosen"]
    assert tries.rows[0] == ["0", "as asked", "100%", "76.2 KB", "0.200", "FAIL (+3.10 pt)", ""]
    assert tries.rows[1][2] == "75%" and tries.rows[1][-1] == "yes"


def test_benchmark_table_and_summary():
    b = {
        "variants": [
            {"name": "fp32", "size_bytes": 2048, "diagnostics": {"fraction_int8": 0.0}},
            {"name": "int8-static", "size_bytes": 1024, "diagnostics": {"fraction_int8": 0.75}},
        ],
        "configs": [
            {"variant": v, "batch": 1, "threads": 0, "p50_ms": p, "p90_ms": p, "p99_ms": p,
             "throughput_per_s": 1000 / p, "peak_rss_mb": 80.4, "stable": True}
            for v, p in (("fp32", 0.5), ("int8-static", 0.25))
        ],
        "verdicts": [{"variant": "int8-static", "batch": 1, "threads": 0, "verdict": "2x faster"}],
    }  # fmt: skip
    t = present.benchmark_configs(b)
    assert t.rows[1][:3] == ["int8-static", "1.0 KB", "75%"] and t.rows[1][5] == "0.250"
    assert t.rows[1][8] == "4,000" and t.rows[1][-1] == "yes"
    assert present.verdicts(b) == ["int8-static (batch 1, threads auto): 2x faster"]
    lines = present.summary_lines({"quantize": _quantize(), "benchmark": b,
                                   "export-docker": {"output": "/x/export-docker"}})  # fmt: skip
    assert "- **int8-static**: 76.9 KB (3.67x smaller), top-1 98.22 %" in lines
    assert "- **Latency** (p50, batch 1): fp32 0.5 ms, int8-static 0.25 ms" in lines
    assert lines[-1] == "- **docker**: `/x/export-docker`"


def test_machine_lines_name_the_cpu_and_the_u8s8_caveat():
    m = {"label": "AMD EPYC 7B12 (AVX2), ONNX Runtime 1.32.0", "u8s8_saturation_risk": True}
    lines = present.machine_lines(m)
    assert lines[0] == "Measured on: AMD EPYC 7B12 (AVX2), ONNX Runtime 1.32.0."
    assert "VPMADDUBSW" in lines[1] and "reduce_range" in lines[1]
    assert len(present.machine_lines({**m, "u8s8_saturation_risk": False})) == 1
    assert present.machine_lines(None) == []
