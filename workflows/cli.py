"""`dockyard-cli`: the engine's steps from the command line, with the same code the GUI runs.

Readable tables by default, `--json` for machines; a progress bar on stderr for long work;
exit 0 on success, 1 with a one-line error (no traceback) otherwise, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workflows import __version__
from workflows.catalogue import export_targets
from workflows.errors import DockyardError, MissingInputError
from workflows.inputs import parse_input_shapes
from workflows.options import LoadOptions, to_dict
from workflows.steps.convert import DEFAULT_OPSET


def _add_load_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    g = p.add_argument_group(f"{prefix or 'model'} loading")
    g.add_argument(f"--{prefix}format", help="force the model format instead of detecting it")
    g.add_argument(f"--{prefix}model-file", help="eager PyTorch: the .py file defining the module")
    g.add_argument(f"--{prefix}model-class", help="eager PyTorch: the module's class name")
    g.add_argument(
        f"--{prefix}input-shape",
        action="append",
        default=[],
        metavar="NAME=1x3x224x224",
        help="input shape for formats that do not record it (repeatable)",
    )
    g.add_argument(
        f"--{prefix}static-batch",
        action="store_true",
        help="keep the first dimension fixed instead of a dynamic batch",
    )
    g.add_argument(
        f"--{prefix}allow-unsafe",
        action="store_true",
        help="accept a file whose loading runs code stored in it (trusted files only)",
    )


def _load_options(args: argparse.Namespace, path: str, prefix: str = "") -> LoadOptions:
    get = lambda name: getattr(args, prefix.replace("-", "_") + name)  # noqa: E731
    return LoadOptions(
        path=str(path),
        format=get("format"),
        model_file=get("model_file"),
        model_class=get("model_class"),
        input_shapes={k: list(v) for k, v in parse_input_shapes(get("input_shape")).items()},
        dynamic_batch=not get("static_batch"),
        allow_unsafe=get("allow_unsafe"),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockyard-cli", description="Load, inspect, convert and validate ML models."
    )
    parser.add_argument("--version", action="version", version=f"dockyard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="describe a model: I/O, ops, parameters, MACs")
    p.add_argument("model")
    p.add_argument(
        "--graph", action="store_true", help="with --json: include every node and tensor"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _add_load_options(p)

    p = sub.add_parser("convert", help="convert a model to ONNX")
    p.add_argument("model")
    p.add_argument("--to", default="onnx", choices=["onnx"], help="target format")
    p.add_argument("-o", "--output", required=True, help="output .onnx file")
    p.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    p.add_argument("--no-simplify", action="store_true", help="skip onnxslim graph simplification")
    p.add_argument("--json", action="store_true")
    _add_load_options(p)

    p = sub.add_parser("validate", help="compare a candidate with the original on the same inputs")
    p.add_argument("original")
    p.add_argument("candidate")
    p.add_argument("--inputs", help=".npy/.npz inputs (default: synthesised from the input spec)")
    p.add_argument(
        "--batch-sizes", default="1,7", help="batch sizes to try when dynamic (default 1,7)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance (default 1e-4)")
    p.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance (default 1e-3)")
    p.add_argument("--json", action="store_true")
    _add_load_options(p)

    p = sub.add_parser(
        "quantize", help="INT8 (static QDQ, dynamic) and FP16 variants with ONNX Runtime"
    )
    p.add_argument("model")
    p.add_argument(
        "-o", "--output", required=True, help="output folder for the variants and report.json"
    )
    p.add_argument(
        "--mode",
        action="append",
        choices=["static", "dynamic", "fp16"],
        help="variant to make (repeatable; default: static)",
    )
    p.add_argument(
        "--calibration", help="calibration data: image folder, .npy or .npz (default: synthetic)"
    )
    p.add_argument("--calibration-samples", type=int, default=128)
    p.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    p.add_argument("--activation-type", default="uint8", choices=["uint8", "int8"])
    p.add_argument("--evaluation", help="evaluation data: labelled .npz (x, y) or class folders")
    p.add_argument("--evaluation-samples", type=int)
    p.add_argument("--labels", help="label names file, one per line")
    p.add_argument("--max-accuracy-drop", type=float, default=1.0, help="accuracy gate in points")
    p.add_argument("--no-fallback", action="store_true", help="do not keep failing nodes in float")
    _add_preprocess_options(p)
    p.add_argument("--json", action="store_true")
    _add_load_options(p)

    p = sub.add_parser("test", help="run one input through the original and its variants")
    p.add_argument("models", nargs="+", help="model files (any format) or a quantize output folder")
    p.add_argument("--input", required=True, help="an image, a .npy (one sample) or a .npz")
    p.add_argument("--labels", help="label names file, one per line")
    p.add_argument("--top-k", type=int, default=5)
    _add_preprocess_options(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("benchmark", help="latency and throughput of ONNX variants, INT8 verdict")
    p.add_argument("models", nargs="+", help="ONNX files or a quantize output folder")
    p.add_argument("--batch-sizes", default="1", help="comma separated (default 1)")
    p.add_argument("--threads", default="0", help="comma separated intra-op threads (0: default)")
    p.add_argument("--max-seconds", type=float, default=10.0, help="time limit per configuration")
    p.add_argument("-o", "--output", help="also write the result to this .json file")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser(
        "export", help="handoff artifacts: Docker build context, TFLite bundle, .mar"
    )
    p.add_argument("target", choices=list(export_targets()), help="what to export")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="the folder to write")
    p.add_argument("--name", help="model name in URLs and manifests (default: the file name)")
    p.add_argument("--image", help="docker: image tag (default dockyard/<name>:1)")
    p.add_argument("--port", type=int, default=8080, help="docker: port in the container")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset if converting")
    p.add_argument("--no-build", action="store_true", help="docker: do not build even if possible")
    p.add_argument(
        "--labels", help="torchserve: label names file (answers then carry top-k labels)"
    )
    p.add_argument(
        "--images",
        action="store_true",
        help="torchserve: also accept raw images, preprocessed with the options below",
    )
    p.add_argument("--no-smoke-test", action="store_true", help="torchserve: skip serving it")
    p.add_argument(
        "--variant",
        action="append",
        choices=["fp32", "fp16", "dynamic", "int8"],
        help="tflite: variant to make (repeatable; default: all four)",
    )
    p.add_argument("--calibration", help="tflite: representative data for int8")
    p.add_argument("--evaluation", help="tflite: validation data (default: synthetic)")
    p.add_argument("--description", default="", help="tflite: one sentence for the metadata")
    _add_preprocess_options(p)
    p.add_argument("--json", action="store_true")
    _add_load_options(p)

    p = sub.add_parser(
        "run", help="run a workflow file (YAML/JSON) saved by the app or written by hand"
    )
    p.add_argument("workflow")
    p.add_argument("-o", "--output", help="run folder (overrides the workflow's output)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("report", help="HTML report (with plots) from quantize/benchmark results")
    p.add_argument("inputs", nargs="+", help="result .json files or folders (quantize output)")
    p.add_argument("-o", "--output", required=True, help="the .html file to write")
    p.add_argument("--title")
    p.add_argument("--json", action="store_true")
    return parser


def _add_preprocess_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("image preprocessing (image folders only)")
    g.add_argument("--resize", metavar="HxW", help="resize images to this size, e.g. 224x224")
    g.add_argument("--layout", default="NCHW", choices=["NCHW", "NHWC"])
    g.add_argument("--channels", default="RGB", choices=["RGB", "BGR", "L"])
    g.add_argument("--scale", type=float, default=1 / 255, help="pixel scale (default 1/255)")
    g.add_argument("--mean", default="0", help="per-channel mean, comma separated")
    g.add_argument("--std", default="1", help="per-channel std, comma separated")


def _preprocess(args: argparse.Namespace) -> dict[str, Any]:
    from workflows.inputs import parse_shape

    def floats(text: str) -> list[float]:
        try:
            return [float(v) for v in text.split(",")]
        except ValueError as exc:
            raise MissingInputError(f"{text!r} is not a comma-separated list of numbers") from exc

    return {
        "size": list(parse_shape(args.resize)) if args.resize else None,
        "layout": args.layout,
        "channels": args.channels,
        "scale": args.scale,
        "mean": floats(args.mean),
        "std": floats(args.std),
    }


def _progress_bar(quiet: bool) -> Any:
    """A rich progress display on stderr; drawn only on a terminal and when not quiet."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )


def _run_with_progress(step: str, options: Any, outputs: list[Path], quiet: bool) -> dict[str, Any]:
    """Run a step in the child-process runner, drawing a progress bar on stderr."""
    from workflows.runner import StepProcess

    with _progress_bar(quiet) as bar:
        task = bar.add_task(step, total=1.0)
        proc = StepProcess(
            step, options, lambda f, m: bar.update(task, completed=f, description=m), outputs
        )
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.cancel()
            raise


def _run_workflow(options: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Run every step of a workflow file, one progress bar per step."""
    from workflows.workflow import Workflow, run_workflow

    wf = Workflow.load(Path(options["workflow"]))
    if options.get("output"):
        wf.output = options["output"]
    with _progress_bar(quiet) as bar:
        tasks: dict[int, Any] = {}

        def on_event(i: int, name: str, fraction: float, message: str) -> None:
            if i not in tasks:
                tasks[i] = bar.add_task(name, total=1.0)
            bar.update(tasks[i], completed=fraction, description=f"{name}: {message}"[:80])

        return run_workflow(wf, on_event)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _spec_line(spec: dict[str, Any]) -> str:
    from rich.markup import escape

    shape = spec["shape"]
    dims = "?" if shape is None else ", ".join("?" if d is None else str(d) for d in shape)
    return escape(f"{spec['name']}: {spec['dtype']}[{dims}]")


def _print_model(console: Any, model: dict[str, Any]) -> None:
    console.print(
        f"[bold]{model['path']}[/bold]  format: {model['format']}  "
        f"size: {_size(model['size_bytes'])}  parameters: {model['parameters']:,}"
        if model["parameters"] is not None
        else f"[bold]{model['path']}[/bold]"
    )
    if model.get("producer"):
        console.print(f"producer: {model['producer']}")
    for kind in ("inputs", "outputs"):
        for spec in model[kind]:
            console.print(f"  {kind[:-1]:6} {_spec_line(spec)}")


def _show_inspect(console: Any, r: dict[str, Any]) -> None:
    from rich.table import Table

    _print_model(console, r["model"])
    if r.get("opsets"):
        console.print(
            "opsets: "
            + ", ".join(f"{d} {v}" for d, v in r["opsets"].items())
            + f"  IR: {r.get('ir_version')}"
        )
    if "macs_per_sample" in r:
        console.print(
            f"nodes: {r['node_count']:,}  MACs/sample: {r['macs_per_sample']:,}  "
            f"FLOPs/sample: {r['flops_per_sample']:,}  weights: {_size(r['parameter_bytes'])}"
        )
        for dtype, v in r["parameters_by_dtype"].items():
            console.print(f"  {dtype}: {v['count']:,} values, {_size(v['bytes'])}")
    if r.get("custom_ops"):
        console.print(f"[yellow]custom/unknown ops:[/yellow] {', '.join(r['custom_ops'])}")
    table = Table("op", "count", title="operators")
    for op, n in list(r.get("op_histogram", {}).items())[:25]:
        table.add_row(op, str(n))
    console.print(table)


def _show_convert(console: Any, r: dict[str, Any]) -> None:
    console.print(
        f"[green]wrote[/green] {r['output']} ({_size(r['size_bytes'])}, opset {r['opset']}) "
        f"in {r['seconds']:.1f} s; nodes {r['nodes_before']} -> {r['nodes_after']}"
        + (" (simplified)" if r["simplified"] else "")
    )


def _fmt(v: Any) -> str:
    if v is None:
        return "exact"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}"
    return str(v)


def _show_validate(console: Any, r: dict[str, Any]) -> None:
    from rich.table import Table

    console.print(f"original  {r['original']['path']} ({r['original']['format']})")
    console.print(f"candidate {r['candidate']['path']} ({r['candidate']['format']})")
    console.print(f"inputs: {r['inputs']}")
    table = Table(
        "trial", "output", "shape", "max abs", "mean abs", "cosine", "SQNR dB", "top-1 agree", "ok"
    )
    for t in r["trials"]:
        for o in t["outputs"]:
            table.add_row(
                t["trial"],
                o["name"],
                "x".join(map(str, o["candidate_shape"])),
                _fmt(o.get("max_abs_error")),
                _fmt(o.get("mean_abs_error")),
                _fmt(o.get("cosine_similarity")),
                _fmt(o.get("sqnr_db")),
                _fmt(o.get("top1_agreement", "-")),
                "yes" if o["within_tolerance"] else "NO",
            )
    console.print(table)
    tol = r["tolerance"]
    verdict = "[green]PASS[/green]" if r["passed"] else "[red]FAIL[/red]"
    console.print(f"{verdict} (atol {tol['atol']:g}, rtol {tol['rtol']:g})")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.2f} %"


def _show_quantize(console: Any, r: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    fp = r["float_model"]
    console.print(
        f"float model {fp['file']}: {_size(fp['size_bytes'])}, "
        f"top-1 {_pct(fp['accuracy'].get('top1'))}"
    )
    console.print(
        f"calibration: {escape(r['calibration']['source'])} ({r['calibration']['samples']} samples)"
    )
    console.print(
        f"evaluation:  {escape(r['evaluation']['source'])} ({r['evaluation']['samples']} samples)"
    )
    table = Table(
        "variant",
        "file",
        "size",
        "smaller",
        "top-1",
        "top-1 agree",
        "max abs err",
        "gate",
        "kept float",
    )
    for v in r["variants"]:
        acc = v["accuracy"]
        dev = acc.get("deviation", {})
        g = acc["gate"]
        verdict = "-" if g["passed"] is None else ("pass" if g["passed"] else "FAIL")
        if g.get("drop_points") is not None:
            verdict += f" ({g['drop_points']:+.2f} pt)"
        table.add_row(
            v["name"],
            v["file"],
            _size(v["size_bytes"]),
            f"{v['size_ratio']:.2f}x",
            _pct(acc.get("top1")),
            _pct(dev.get("top1_agreement")),
            _fmt(dev.get("max_abs_error")),
            verdict,
            str(len(v["excluded_nodes"])),
        )
    console.print(table)
    for v in r["variants"]:
        if v["excluded_nodes"]:
            console.print(
                f"{v['name']}: kept in float after fallback: {', '.join(v['excluded_nodes'])}"
            )
            cost = (v.get("fallback") or {}).get("cost")
            if cost:
                b, a = cost["before"], cost["after"]
                console.print(
                    f"  cost: size {_size(b['size_bytes'])} -> {_size(a['size_bytes'])}, "
                    f"p50 (batch 1) {b['p50_ms']:.3f} -> {a['p50_ms']:.3f} ms"
                )
    if r.get("warning"):
        console.print(f"[yellow]note:[/yellow] {r['warning']}")
    console.print(f"wrote {r['output']}")


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise MissingInputError(f"{flag}: {text!r} is not a list like 1,8") from exc
    if not values:
        raise MissingInputError(f"{flag}: give at least one number")
    return values


def _show_predict(console: Any, r: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console.print(f"input: {escape(r['input'])}")
    results = r["results"]
    if all("top_k" in e["output"] for e in results):
        table = Table("rank", *[escape(Path(e["model"]).name) for e in results])
        for k in range(len(results[0]["output"]["top_k"])):
            table.add_row(
                str(k + 1),
                *[
                    escape(f"{top['label']}  {100 * top['probability']:.1f} %")
                    for top in (e["output"]["top_k"][k] for e in results)
                ],
            )
    else:
        table = Table("model", "shape", "min", "max", "mean", "first values")
        for e in results:
            o = e["output"]
            table.add_row(
                escape(Path(e["model"]).name),
                "x".join(map(str, o["shape"])),
                _fmt(o["min"]),
                _fmt(o["max"]),
                _fmt(o["mean"]),
                ", ".join(_fmt(v) for v in o["head"][:4]),
            )
    console.print(table)
    for e in results[1:]:
        if "max_abs_diff_vs_first" in e:
            console.print(
                f"{escape(Path(e['model']).name)}: max |diff| vs "
                f"{escape(Path(results[0]['model']).name)} = {e['max_abs_diff_vs_first']:.3g}"
            )


def _show_benchmark(console: Any, r: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    cpu = r["cpu"]
    console.print(
        f"CPU: {escape(cpu['brand'])}; AVX-512 VNNI: {cpu['avx512_vnni']}, "
        f"AVX-VNNI: {cpu['avx_vnni']}, AMX: {cpu['amx_int8']}"
    )
    sizes = {v["name"]: v["size_bytes"] for v in r["variants"]}
    fractions = {v["name"]: v["diagnostics"]["fraction_int8"] for v in r["variants"]}
    table = Table(
        "variant",
        "size",
        "INT8 ops",
        "batch",
        "threads",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "samples/s",
        "peak MB",
    )
    for c in r["configs"]:
        table.add_row(
            c["variant"],
            _size(sizes[c["variant"]]),
            f"{fractions[c['variant']]:.0%}",
            str(c["batch"]),
            str(c["threads"] or "auto"),
            f"{c['p50_ms']:.3f}",
            f"{c['p90_ms']:.3f}",
            f"{c['p99_ms']:.3f}",
            f"{c['throughput_per_s']:,.0f}",
            f"{c['peak_rss_mb']:.0f}",
        )
    console.print(table)
    for v in r["verdicts"]:
        console.print(
            f"[bold]{v['variant']}[/bold] (batch {v['batch']}, threads "
            f"{v['threads'] or 'auto'}): {escape(v['verdict'])}"
        )


def _show_export(console: Any, r: dict[str, Any]) -> None:
    from rich.markup import escape

    console.print(
        f"[green]wrote[/green] {escape(r['output'])} ({r['target']}, {len(r['files'])} files)"
    )
    if r["target"] == "tflite":
        from rich.table import Table

        data = r["validation_data"]
        console.print(
            f"validated on {escape(data['source'])} ({data['samples']} samples); "
            f"input layout: {r['input_layout']}"
        )
        table = Table("file", "size", "max abs err", "relative err", "top-1 agree", "check")
        for v in r["variants"]:
            f = v["validation"]
            lim = f.get("limit", {})
            table.add_row(
                v["file"],
                _size(v["size_bytes"]),
                _fmt(f.get("max_abs_error")),
                _fmt(f.get("relative_error")),
                _fmt(f.get("top1_agreement", "-")),
                ("pass" if f["passed"] else "FAIL")
                + f" ({lim.get('metric')} limit {lim.get('value')})",
            )
        console.print(table)
        return
    smoke = r["smoke_test"]
    if r["target"] == "torchserve":
        console.print(f"archive: {escape(r['archive'])} ({r['kind']})")
        if smoke.get("ran"):
            console.print(
                f"smoke test: TorchServe served it in {smoke['seconds']} s; outputs match "
                f"the original (max abs error {smoke['max_abs_error']:.2g})"
            )
        return
    console.print(
        f"smoke test: server ready in {smoke['server_ready_seconds']} s, outputs match ONNX "
        f"Runtime (max abs error {smoke['max_abs_error']:.2g})"
    )
    lint = r.get("hadolint", {})
    if lint.get("ran"):
        findings = lint["findings"]
        console.print(
            "hadolint: clean"
            if not findings
            else "hadolint: "
            + "; ".join(f"{f['code']} line {f['line']}: {f['message']}" for f in findings)
        )
    build = r.get("build", {})
    if build.get("built"):
        console.print(f"image {build['image']}: {build['size_bytes'] / 2**20:.0f} MB")
    else:
        console.print(
            f"image not built: {escape(build.get('reason', ''))}. Build it with: "
            f"docker build -t {r['image']} {escape(r['output'])}"
        )


def _show_run(console: Any, r: dict[str, Any]) -> None:
    from rich.markup import escape

    for s in r["steps"]:
        console.print(f"[green]done[/green] {s['step']:18} -> {escape(s['output'])}")


def _show_report(console: Any, r: dict[str, Any]) -> None:
    console.print(
        f"wrote {r['html']} ({_size(r['bytes'])}; sections: {', '.join(r['sections'])}) "
        f"and {r['json']}"
    )


def _command(args: argparse.Namespace) -> tuple[str, Any, list[Path], Callable[[Any, dict], None]]:
    if args.command == "inspect":
        options = {"model": to_dict(_load_options(args, args.model)), "include_graph": args.graph}
        return "inspect", options, [], _show_inspect
    if args.command == "convert":
        out = Path(args.output)
        options = {
            "model": to_dict(_load_options(args, args.model)),
            "output": str(out),
            "target": args.to,
            "opset": args.opset,
            "simplify": not args.no_simplify,
        }
        return "convert", options, [out], _show_convert
    if args.command == "quantize":
        out = Path(args.output)
        options = {
            "model": to_dict(_load_options(args, args.model)),
            "output": str(out),
            "modes": args.mode or ["static"],
            "calibration": args.calibration,
            "calibration_samples": args.calibration_samples,
            "method": args.method,
            "per_channel": args.per_channel,
            "activation_type": args.activation_type,
            "evaluation": args.evaluation,
            "evaluation_samples": args.evaluation_samples,
            "labels": args.labels,
            "max_accuracy_drop": args.max_accuracy_drop,
            "fallback": not args.no_fallback,
            "preprocess": _preprocess(args),
        }
        return "quantize", options, [out], _show_quantize
    if args.command == "test":
        options = {
            "models": args.models,
            "input": args.input,
            "labels": args.labels,
            "top_k": args.top_k,
            "preprocess": _preprocess(args),
        }
        return "predict", options, [], _show_predict
    if args.command == "benchmark":
        options = {
            "models": args.models,
            "batch_sizes": _ints(args.batch_sizes, "--batch-sizes"),
            "threads": _ints(args.threads, "--threads"),
            "max_seconds": args.max_seconds,
            "output": args.output,
        }
        return "benchmark", options, [Path(args.output)] if args.output else [], _show_benchmark
    if args.command == "run":
        return "run", {"workflow": args.workflow, "output": args.output}, [], _show_run
    if args.command == "export":
        out = Path(args.output)
        options = {
            "model": to_dict(_load_options(args, args.model)),
            "output": str(out),
            "name": args.name,
            "opset": args.opset,
        }
        if args.target == "docker":
            options.update(image=args.image, port=args.port, build=not args.no_build)
        elif args.target == "tflite":
            options.update(
                variants=args.variant or ["fp32", "fp16", "dynamic", "int8"],
                calibration=args.calibration,
                evaluation=args.evaluation,
                labels=args.labels,
                description=args.description,
                preprocess=_preprocess(args) if args.images else None,
            )
        else:
            options.update(
                labels=args.labels,
                smoke_test=not args.no_smoke_test,
                preprocess=_preprocess(args) if args.images else None,
            )
        return f"export-{args.target}", options, [out], _show_export
    if args.command == "report":
        out = Path(args.output)
        options = {"inputs": args.inputs, "output": str(out), "title": args.title}
        return "report", options, [out, out.with_suffix(".json")], _show_report
    sizes = _ints(args.batch_sizes, "--batch-sizes")
    options = {
        "original": to_dict(_load_options(args, args.original)),
        "candidate": to_dict(LoadOptions(path=str(args.candidate))),
        "inputs": args.inputs,
        "batch_sizes": sizes,
        "seed": args.seed,
        "atol": args.atol,
        "rtol": args.rtol,
    }
    return "validate", options, [], _show_validate


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `dockyard-cli`."""
    from rich.console import Console

    args = build_parser().parse_args(argv)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        step, options, outputs, show = _command(args)
        if step == "run":
            result = _run_workflow(options, quiet=args.json)
        else:
            result = _run_with_progress(step, options, outputs, quiet=args.json)
    except KeyboardInterrupt:
        err.print("dockyard-cli: interrupted; nothing was written")
        return 130
    except DockyardError as exc:
        message = " ".join(str(exc).split())
        err.print(f"dockyard-cli: error: {message}", markup=False)
        return 1
    except Exception as exc:  # a bug: still one line, the traceback on request
        if os.environ.get("DOCKYARD_DEBUG"):
            raise
        err.print(
            f"dockyard-cli: internal error: {type(exc).__name__}: {exc} (please report it; "
            "set DOCKYARD_DEBUG=1 for the traceback)",
            markup=False,
        )
        return 2
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, allow_nan=False) + "\n")
    else:
        out = Console(highlight=False)
        if not out.is_terminal:
            out = Console(highlight=False, width=140)
        show(out, result)
    if step in ("validate", "export-tflite") and not result["passed"]:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
