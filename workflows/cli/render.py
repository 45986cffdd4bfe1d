"""The CLI's readable output: the presenters' tables drawn with rich, plus a few summary lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflows import present
from workflows.present import Table, num, pct, size


def table(console: Any, t: Table) -> None:
    """Draw a presenter table (cells are plain text, never rich markup)."""
    from rich.markup import escape
    from rich.table import Table as RichTable

    rich = RichTable(*t.headers, title=t.title or None)
    for row in t.rows:
        rich.add_row(*map(escape, row))
    console.print(rich)


def _say(console: Any, text: str) -> None:
    console.print(text, markup=False)


def inspect(console: Any, r: dict[str, Any]) -> None:
    for line in present.model_lines(r["model"]):
        _say(console, line)
    if r.get("opsets"):
        _say(
            console,
            "opsets: "
            + ", ".join(f"{d} {v}" for d, v in r["opsets"].items())
            + f"  IR: {r.get('ir_version')}",
        )
    if "macs_per_sample" in r:
        _say(
            console,
            f"nodes: {r['node_count']:,}  MACs/sample: {r['macs_per_sample']:,}  "
            f"FLOPs/sample: {r['flops_per_sample']:,}  weights: {size(r['parameter_bytes'])}",
        )
        for dtype, v in r["parameters_by_dtype"].items():
            _say(console, f"  {dtype}: {v['count']:,} values, {size(v['bytes'])}")
    if r.get("custom_ops"):
        _say(console, f"custom/unknown ops: {', '.join(r['custom_ops'])}")
    table(console, present.operators(r))


def convert(console: Any, r: dict[str, Any]) -> None:
    _say(
        console,
        f"wrote {r['output']} ({size(r['size_bytes'])}, opset {r['opset']}) "
        f"in {r['seconds']:.1f} s; nodes {r['nodes_before']} -> {r['nodes_after']}"
        + (" (simplified)" if r["simplified"] else ""),
    )


def validate(console: Any, r: dict[str, Any]) -> None:
    _say(console, f"original  {r['original']['path']} ({r['original']['format']})")
    _say(console, f"candidate {r['candidate']['path']} ({r['candidate']['format']})")
    _say(console, f"inputs: {r['inputs']}")
    table(console, present.validate_trials(r))
    tol = r["tolerance"]
    _say(
        console, f"{'PASS' if r['passed'] else 'FAIL'} (atol {tol['atol']:g}, rtol {tol['rtol']:g})"
    )


def quantize(console: Any, r: dict[str, Any]) -> None:
    fp = r["float_model"]
    _say(
        console,
        f"float model {fp['file']}: {size(fp['size_bytes'])}, top-1 {pct(fp['accuracy'].get('top1'))}",
    )
    for line in present.quantize_data_lines(r):
        _say(console, line)
    table(console, present.quantize_variants(r))
    for v in r["variants"]:
        if (v.get("fallback") or {}).get("tries"):
            table(console, present.fallback_tries(v))
    for line in present.fallback_lines(r):
        _say(console, line)
    if r.get("warning"):
        _say(console, f"note: {r['warning']}")
    _say(console, f"wrote {r['output']}")


def prune(console: Any, r: dict[str, Any]) -> None:
    table(console, present.prune_models(r))
    for line in present.prune_lines(r):
        _say(console, line)
    _say(console, f"wrote {r['output']}")


def compress(console: Any, r: dict[str, Any]) -> None:
    table(console, present.compress_variants(r))
    for line in present.compress_lines(r):
        _say(console, line)
    _say(console, f"wrote {r['output']}")


def predict(console: Any, r: dict[str, Any]) -> None:
    _say(console, f"input: {r['input']}")
    table(console, present.predictions(r))
    results = r["results"]
    for e in results[1:]:
        if "max_abs_diff_vs_first" in e:
            _say(
                console,
                f"{Path(e['model']).name}: max |diff| vs {Path(results[0]['model']).name} = "
                f"{num(e['max_abs_diff_vs_first'])}",
            )


def benchmark(console: Any, r: dict[str, Any]) -> None:
    cpu = r["cpu"]
    _say(
        console,
        f"CPU: {cpu['brand']}; AVX-512 VNNI: {cpu['avx512_vnni']}, "
        f"AVX-VNNI: {cpu['avx_vnni']}, AMX: {cpu['amx_int8']}",
    )
    table(console, present.benchmark_configs(r))
    for line in present.verdicts(r):
        _say(console, line)


def insight(console: Any, r: dict[str, Any]) -> None:
    data = r["data"]
    _say(console, f"error measured on {data['samples']} samples of {data['source']}"
         + (" (synthetic: real inputs rank nodes better)" if data["synthetic"] else ""))  # fmt: skip
    reference = r["models"][0]
    for m in r["models"][1:]:
        table(console, present.insight_nodes(m, reference))
    for line in present.insight_time_lines(r):
        _say(console, line)


def edit(console: Any, r: dict[str, Any]) -> None:
    for line in r["edits"]:
        _say(console, line)
    v = r["validation"]
    _say(console, f"checked: ONNX checker ok; {v['samples']} samples, outputs "
         f"{', '.join(v['outputs'])} against the original's: max |diff| {v['max_abs_diff']:.3g}")  # fmt: skip
    for f in v["freed"]:
        _say(console, f"freed {f['dim']}: runs at {f['ran_at']}")
    _say(console, f"wrote {r['model']}")


def compare(console: Any, r: dict[str, Any]) -> None:
    _say(console, f"against {r['reference']}")
    for c in r["candidates"]:
        _say(console, present.compare_summary(c))
        changes = present.compare_changes(c, limit=40)
        if changes.rows:
            table(console, changes)
        if c["tensors"]:
            table(console, present.compare_tensors(c, limit=20))


def export(console: Any, r: dict[str, Any]) -> None:
    _say(console, f"wrote {r['output']} ({r['target']}, {len(r['files'])} files)")
    for line in present.export_lines(r):
        _say(console, line)
    if r["target"] == "tflite":
        table(console, present.tflite_variants(r))
        for line in present.machine_lines(r.get("measured_on")):
            _say(console, line)


def run(console: Any, r: dict[str, Any]) -> None:
    for s in r["steps"]:
        _say(console, f"done {s['step']:18} {s['seconds']:6.1f} s  -> {s['output']}")
    # Wall time: exports run side by side, so their seconds overlap.
    wall = max((s["span"][1] for s in r["steps"] if s.get("span")), default=None)
    if wall is None:
        wall = sum(s["seconds"] for s in r["steps"])
    _say(console, f"{len(r['steps'])} steps in {wall:.1f} s")
    if r.get("handoff"):
        _say(console, f"handoff note: {r['handoff']}")


def report(console: Any, r: dict[str, Any]) -> None:
    _say(
        console,
        f"wrote {r['html']} ({size(r['bytes'])}; sections: {', '.join(r['sections'])}) "
        f"and {r['json']}",
    )


def frameworks(console: Any, r: dict[str, Any]) -> None:
    if r.get("prepared"):
        _say(console, f"prepared in {r['prepared']}")
    t = Table(["framework", "status", "size"])
    for f in r["frameworks"]:
        where = f["folder"] or ("installed" if f["available"] else "not prepared")
        cost = (
            f"{f['download_mb']} MB download, {f['installed_mb']} MB on disk"
            if f["download_mb"] is not None
            else "no package list for this platform"
        )
        t.rows.append([f["title"], where, cost])
    table(console, t)
