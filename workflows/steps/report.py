"""Combine prune, quantize and benchmark results into report.json + a self-contained HTML
report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.atomic import atomic_file
from workflows.errors import DataError
from workflows.jsonable import jsonable
from workflows.options import Options, from_dict, option
from workflows.progress import Progress, null_progress

# The steps whose results it reports.
SECTIONS = ("prune", "quantize", "compress", "benchmark", "compare")


@dataclass
class ReportOptions(Options):
    """Options of the report step."""

    inputs: list[str] = option(
        [], "Result files (.json) or folders holding report.json/benchmark.json"
    )
    output: str = option("", "The HTML file to write (its .json twin is written beside it)")
    title: str | None = option(None, "Report title")


def collect(inputs: list[str]) -> dict[str, dict[str, Any]]:
    """Results by step name (one of SECTIONS) from files or folders."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += [f for f in (p / "report.json", p / "benchmark.json", p / "compare.json")
                      if f.exists()]  # fmt: skip
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such result file or folder")
    results: dict[str, dict[str, Any]] = {}
    for f in files:
        try:
            data = json.loads(f.read_text())
        except ValueError as exc:
            raise DataError(f"{f}: not a JSON result file ({exc})") from exc
        step = data.get("step") if isinstance(data, dict) else None
        if step not in SECTIONS:
            raise DataError(f"{f}: not a Dockyard result ({', '.join(SECTIONS)})")
        results[step] = data
    if not results:
        raise DataError(f"report: found no results ({', '.join(SECTIONS)}) in " + ", ".join(inputs))
    return results


def _compare_quantized(inputs: list[str]) -> dict[str, Any] | None:
    """What quantizing changed (the compare step) for the quantize folder among `inputs`."""
    from workflows.steps.compare import CompareOptions, compare_variants

    for item in inputs:
        report = Path(item) / "report.json"
        if report.is_file() and json.loads(report.read_text()).get("step") == "quantize":
            try:
                return compare_variants(CompareOptions(candidates=[item]))
            except DataError:  # a folder without its float model: report the rest
                return None
    return None


def report(opts: ReportOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Write the HTML report and its JSON twin; returns their paths."""
    from workflows.report_html import render

    progress = progress or null_progress()
    if not opts.output:
        raise DataError("report: give an output file (-o report.html)")
    results = collect(opts.inputs)
    if "quantize" in results and "compare" not in results:
        progress.update(0.1, "Comparing the variants with the float model")
        changes = _compare_quantized(opts.inputs)
        if changes:
            results["compare"] = changes
    progress.update(0.3, "Drawing plots")
    page = render(
        results.get("quantize"), results.get("benchmark"), opts.title, results.get("prune"),
        results.get("compress"), results.get("compare"),
    )  # fmt: skip
    out = Path(opts.output)
    twin = out.with_suffix(".json")
    with atomic_file(out) as tmp_html, atomic_file(twin) as tmp_json:
        tmp_html.write_text(page, encoding="utf-8")
        tmp_json.write_text(json.dumps(jsonable(results), indent=2, allow_nan=False))
    progress.update(1.0, f"Wrote {out}")
    return {
        "step": "report",
        "html": str(out),
        "json": str(twin),
        "sections": sorted(results),
        "bytes": out.stat().st_size,
    }


def run(options: ReportOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return report(from_dict(ReportOptions, options), progress)
