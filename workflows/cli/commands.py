"""The CLI's commands. Each subparser's flags come from its step's option declarations
(`flags.add`); each command turns the parsed arguments into (step, options, outputs)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workflows import catalogue
from workflows.cli import render
from workflows.cli.flags import add, key_value, values
from workflows.inputs import parse_input_shapes, parse_shape
from workflows.options import LoadOptions, to_dict

Built = tuple[str, dict[str, Any], list[Path]]


def _options(step: str) -> type:
    return catalogue.spec(step).options_class()


def _command(
    sub: Any, name: str, help: str, build: Callable[[argparse.Namespace], Built], show: Callable
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help)
    p.set_defaults(command_options=build, command_show=show)
    return p


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _load_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model loading")
    add(g, LoadOptions, "format")
    add(g, LoadOptions, "model_file")
    add(g, LoadOptions, "model_class")
    add(
        g,
        LoadOptions,
        "input_shapes",
        "--input-shape",
        action="append",
        type=str,
        default=[],
        metavar="NAME=1x3x224x224",
        help="input shape for formats that do not record it (repeatable)",
    )
    add(g, LoadOptions, "dynamic_batch", "--static-batch",
        help="keep the first dimension fixed instead of a dynamic batch")  # fmt: skip
    add(g, LoadOptions, "allow_unsafe", help="accept a file whose loading runs code stored in it "
        "(trusted files only)")  # fmt: skip


def load_options(args: argparse.Namespace, path: str) -> dict[str, Any]:
    """The LoadOptions the model-loading flags describe, as a dict."""
    shapes = {k: list(v) for k, v in parse_input_shapes(args.input_shapes).items()}
    return to_dict(LoadOptions(**{**values(args, LoadOptions), "path": str(path),
                                  "input_shapes": shapes}))  # fmt: skip


def _preprocess_flags(p: argparse.ArgumentParser) -> None:
    from workflows.data import Preprocess

    g = p.add_argument_group("image preprocessing (image folders only)")
    add(g, Preprocess, "size", "--resize", type=lambda t: list(parse_shape(t)), metavar="HxW")
    for name in ("layout", "channels", "scale", "mean", "std"):
        add(g, Preprocess, name)


def preprocess(args: argparse.Namespace) -> dict[str, Any]:
    from workflows.data import Preprocess

    return values(args, Preprocess)


def _output(p: argparse.ArgumentParser, cls: type, required: bool = True) -> None:
    add(p, cls, "output", "-o", "--output", required=required)


def _inspect(sub: Any) -> None:
    cls = _options("inspect")
    p = _command(sub, "inspect", "describe a model: I/O, ops, parameters, MACs",
                 lambda a: ("inspect", {**values(a, cls), "model": load_options(a, a.model)}, []),
                 render.inspect)  # fmt: skip
    p.add_argument("model")
    add(p, cls, "include_graph", "--graph", default=False,
        help="with --json: include every node and tensor")  # fmt: skip
    _json(p)
    _load_flags(p)


def _convert(sub: Any) -> None:
    cls = _options("convert")

    def build(a: argparse.Namespace) -> Built:
        return "convert", {**values(a, cls), "model": load_options(a, a.model)}, [Path(a.output)]

    p = _command(sub, "convert", "convert a model to ONNX", build, render.convert)
    p.add_argument("model")
    add(p, cls, "target", "--to", choices=["onnx"])
    _output(p, cls)
    for name in ("opset", "simplify"):
        add(p, cls, name)
    _json(p)
    _load_flags(p)


def _validate(sub: Any) -> None:
    cls = _options("validate")

    def build(a: argparse.Namespace) -> Built:
        options = {
            **values(a, cls),
            "original": load_options(a, a.original),
            "candidate": {"path": str(a.candidate)},
        }
        return "validate", options, [Path(a.output)] if a.output else []

    p = _command(sub, "validate", "compare a candidate with the original on the same inputs",
                 build, render.validate)  # fmt: skip
    p.add_argument("original")
    p.add_argument("candidate")
    for name in ("inputs", "batch_sizes", "seed", "atol", "rtol"):
        add(p, cls, name)
    _output(p, cls, required=False)
    _json(p)
    _load_flags(p)


def _data_step(step: str, cls: type) -> Callable[[argparse.Namespace], Built]:
    """`build` of a step that reads a model and data into an output folder (quantize, prune,
    compress): its own flags, the model-loading flags and the image preprocessing."""

    def build(a: argparse.Namespace) -> Built:
        options = {**values(a, cls), "model": load_options(a, a.model),
                   "preprocess": preprocess(a)}  # fmt: skip
        return step, options, [Path(a.output)]

    return build


def _quantize(sub: Any) -> None:
    cls = _options("quantize")
    p = _command(sub, "quantize", "INT8 (static QDQ, dynamic) and FP16 variants with ONNX Runtime",
                 _data_step("quantize", cls), render.quantize)  # fmt: skip
    p.add_argument("model")
    _output(p, cls)
    add(p, cls, "modes", "--mode")
    for name in ("calibration", "calibration_samples", "method", "per_channel", "activation_type",
                 "evaluation", "evaluation_samples", "labels", "max_accuracy_drop", "confidence",
                 "min_sqnr_db", "holdout", "reduce_range", "dynamic_ops", "compute_ops_only"):  # fmt: skip
        add(p, cls, name)
    add(p, cls, "fallback", "--no-fallback")
    _preprocess_flags(p)
    _json(p)
    _load_flags(p)


def _prune(sub: Any) -> None:
    cls = _options("prune")
    p = _command(sub, "prune", "remove whole channels (torch-pruning), then distil from the "
                 "original on your data", _data_step("prune", cls), render.prune)  # fmt: skip
    p.add_argument("model")
    _output(p, cls)
    for name in ("ratio", "target_macs_reduction", "importance", "round_to", "data",
                 "data_samples", "evaluation", "evaluation_samples", "labels", "holdout",
                 "distill_steps", "batch_size", "learning_rate", "temperature", "eval_every",
                 "max_accuracy_drop", "confidence", "min_sqnr_db", "seed"):  # fmt: skip
        add(p, cls, name)
    _preprocess_flags(p)
    _json(p)
    _load_flags(p)


def _compress(sub: Any) -> None:
    cls = _options("compress")
    p = _command(sub, "compress", "shrink the weights for size: magnitude sparsity or clustering, "
                 "per layer by sensitivity", _data_step("compress", cls), render.compress)  # fmt: skip
    p.add_argument("model")
    _output(p, cls)
    add(p, cls, "methods", "--method")
    for name in ("sparsity", "clusters", "calibration", "calibration_samples", "evaluation",
                 "evaluation_samples", "labels", "holdout", "max_accuracy_drop", "confidence",
                 "min_sqnr_db", "min_weights", "seed"):  # fmt: skip
        add(p, cls, name)
    add(p, cls, "reconstruct", "--no-reconstruct")
    _preprocess_flags(p)
    _json(p)
    _load_flags(p)


def _test(sub: Any) -> None:
    cls = _options("predict")
    p = _command(sub, "test", "run one input through the original and its variants",
                 lambda a: ("predict", {**values(a, cls), "preprocess": preprocess(a)}, []),
                 render.predict)  # fmt: skip
    p.add_argument("models", nargs="+", help="model files (any format) or a quantize output folder")
    add(p, cls, "input", required=True)
    for name in ("labels", "top_k"):
        add(p, cls, name)
    _preprocess_flags(p)
    _json(p)


def _benchmark(sub: Any) -> None:
    cls = _options("benchmark")

    def build(a: argparse.Namespace) -> Built:
        return "benchmark", values(a, cls), [Path(a.output)] if a.output else []

    p = _command(sub, "benchmark", "latency and throughput of ONNX variants, INT8 verdict", build,
                 render.benchmark)  # fmt: skip
    p.add_argument("models", nargs="+", help="ONNX files or a quantize output folder")
    for name in ("batch_sizes", "threads", "max_seconds", "dim_values"):
        add(p, cls, name)
    _output(p, cls, required=False)
    _json(p)


def _edit(sub: Any) -> None:
    cls = _options("edit")

    def build(a: argparse.Namespace) -> Built:
        dims = {k: int(v) if v.isdigit() else v for k, v in a.dim or []}
        options = {**values(a, cls), "model": a.model, "outputs": a.keep_output or [],
                   "drop_outputs": a.drop_output or [], "dims": dims,
                   "rename": dict(a.rename or [])}  # fmt: skip
        return "edit", options, [Path(a.output)]

    p = _command(sub, "edit", "cut the graph, set or free input dimensions, rename inputs and "
                 "outputs; checked against the original, written as a new file", build,
                 render.edit)  # fmt: skip
    p.add_argument("model", help="an ONNX model")
    p.add_argument(
        "--keep-output",
        action="append",
        metavar="TENSOR",
        help="cut the graph: keep only these outputs (repeatable; any tensor)",
    )
    p.add_argument(
        "--drop-output",
        action="append",
        metavar="OUTPUT",
        help="drop an output and what only it needs (repeatable)",
    )
    p.add_argument(
        "--dim",
        action="append",
        type=key_value,
        metavar="INPUT:AXIS=SIZE|NAME",
        help="fix an input dimension (x:0=1) or free it (x:0=batch); repeatable",
    )
    p.add_argument(
        "--rename",
        action="append",
        type=key_value,
        metavar="OLD=NEW",
        help="rename an input or output (repeatable)",
    )
    for name in ("data", "samples"):
        add(p, cls, name)
    _output(p, cls)
    _json(p)


def _compare(sub: Any) -> None:
    cls = _options("compare")

    def build(a: argparse.Namespace) -> Built:
        return "compare", values(a, cls), [Path(a.output)] if a.output else []

    p = _command(sub, "compare", "what conversion and quantization changed, node by node",
                 build, render.compare)  # fmt: skip
    p.add_argument("candidates", nargs="+", help="ONNX variants or a quantize output folder")
    add(p, cls, "model", "--model")
    _output(p, cls, required=False)
    _json(p)


def _insight(sub: Any) -> None:
    cls = _options("insight")

    def build(a: argparse.Namespace) -> Built:
        return "insight", values(a, cls), [Path(a.output)] if a.output else []

    p = _command(sub, "insight", "per-node INT8/FP16 error and time of ONNX variants", build,
                 render.insight)  # fmt: skip
    p.add_argument("variants", nargs="+", help="ONNX variants or a quantize output folder")
    add(p, cls, "model", "--model")
    for name in ("data", "samples", "batch_size", "runs"):
        add(p, cls, name)
    _output(p, cls, required=False)
    _json(p)


EXPORT_FLAGS = {"variants": "--variant"}  # the CLI's singular for a repeatable choice


def _export(sub: Any) -> None:
    classes = {t: _options(f"export-{t}") for t in catalogue.export_targets()}
    owners: dict[str, list[str]] = {}
    for target, cls in classes.items():
        for f in dataclasses.fields(cls):
            owners.setdefault(f.name, []).append(target)

    def build(a: argparse.Namespace) -> Built:
        cls = classes[a.target]
        options = {**values(a, cls), "model": load_options(a, a.model)}
        if "preprocess" in options:
            options["preprocess"] = preprocess(a) if a.images else None
        return f"export-{a.target}", options, [Path(a.output)]

    p = _command(sub, "export", "handoff artifacts: " + ", ".join(catalogue.export_targets()),
                 build, render.export)  # fmt: skip
    p.add_argument("target", choices=list(classes), help="what to export")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="the folder to write")
    for name, targets in owners.items():
        # `source` picks a variant of a workflow's earlier steps: the CLI names the file instead.
        if name in ("model", "output", "preprocess", "source"):
            continue
        prefix = "" if len(targets) == len(classes) else ", ".join(targets) + ": "
        flags = [EXPORT_FLAGS[name]] if name in EXPORT_FLAGS else []
        add(p, classes[targets[0]], name, *flags, prefix=prefix)
    p.add_argument("--images", action="store_true",
                   help="docker, torchserve, tflite: takes images, preprocessed as below")  # fmt: skip
    _preprocess_flags(p)
    _json(p)
    _load_flags(p)


def _report(sub: Any) -> None:
    cls = _options("report")

    def build(a: argparse.Namespace) -> Built:
        out = Path(a.output)
        return "report", values(a, cls), [out, out.with_suffix(".json")]

    p = _command(sub, "report", "HTML report (with plots) from quantize/benchmark results", build,
                 render.report)  # fmt: skip
    p.add_argument("inputs", nargs="+", help="result .json files or folders (quantize output)")
    _output(p, cls)
    add(p, cls, "title")
    _json(p)


def _run(sub: Any) -> None:
    def build(a: argparse.Namespace) -> Built:
        options = {"workflow": a.workflow, "output": a.output, "allow_unsafe": a.allow_unsafe}
        return "run", options, []

    p = _command(sub, "run", "run a workflow file (YAML/JSON) saved by the app or written by hand",
                 build, render.run)  # fmt: skip
    p.add_argument("workflow")
    p.add_argument("-o", "--output", help="run folder (overrides the workflow's output)")
    add(p, LoadOptions, "allow_unsafe", help="let the workflow's model run code stored in it "
        "(trusted files only; a workflow file cannot grant this itself)")  # fmt: skip
    _json(p)


def _frameworks(sub: Any) -> None:
    def build(a: argparse.Namespace) -> Built:
        return "frameworks", {"install": a.family if a.action == "install" else None}, []

    p = _command(sub, "frameworks", "the installed app's PyTorch and TensorFlow: which are ready; "
                 "prepare one (a download on first use)", build, render.frameworks)  # fmt: skip
    p.add_argument("action", nargs="?", choices=["status", "install"], default="status")
    p.add_argument("family", nargs="?", choices=["torch", "tensorflow"])
    _json(p)


COMMANDS = (
    _inspect,
    _convert,
    _validate,
    _quantize,
    _prune,
    _compress,
    _test,
    _benchmark,
    _insight,
    _compare,
    _edit,
    _export,
    _run,
    _report,
    _frameworks,
)


def add_commands(sub: Any) -> None:
    """Every command's subparser."""
    for command in COMMANDS:
        command(sub)
