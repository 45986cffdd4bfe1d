"""TFLite bundle: fp32, fp16, dynamic-range and full-INT8 .tflite variants (TFLiteConverter), each
validated against the original model in the LiteRT interpreter, with metadata embedded in every
model, labels, a signature check, infer.py and a README.

Conversion paths: Keras -> SavedModel -> TFLiteConverter; SavedModel -> TFLiteConverter;
ONNX (and PyTorch, via ONNX) -> onnx2tf (isolated environment) -> SavedModel -> TFLiteConverter.
"""

from __future__ import annotations

import json
import shutil
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from workflows import __version__, formats
from workflows.atomic import atomic_dir, scratch_dir
from workflows.data import Dataset, Preprocess, load_dataset, read_labels
from workflows.errors import DataError, ExportError
from workflows.exporters.common import export_step, sha256, write_manifest
from workflows.exporters.docker import safe_name
from workflows.formats import _tf
from workflows.metrics import compare, looks_like_class_scores
from workflows.model import Model
from workflows.options import LoadOptions, Options, from_dict, option, to_dict
from workflows.progress import Progress, null_progress
from workflows.resources import resource

VARIANTS = ("fp32", "fp16", "dynamic", "int8")
METADATA_NAME = "dockyard_metadata"
# Pass/fail per variant: fp32 by absolute error, fp16 by error relative to the output's range,
# the quantized ones by top-1 agreement (class scores) or relative error (anything else).
LIMITS = {
    "fp32": ("max_abs_error", 1e-4),
    "fp16": ("relative_error", 1e-2),
    "dynamic": ("top1_agreement", 0.95),
    "int8": ("top1_agreement", 0.95),
}


@dataclass
class TFLiteExportOptions(Options):
    """Options of the TFLite bundle target."""

    model: LoadOptions = option(None, "The model to convert (Keras, SavedModel, ONNX, PyTorch)")
    output: str = option("", "The bundle folder to write")
    name: str | None = option(None, "Bundle and file name (default: the file name)")
    variants: list[str] = option(list(VARIANTS), "Variants: fp32, fp16, dynamic, int8")
    calibration: str | None = option(
        None, "Representative data for INT8 (image folder, .npy, .npz)"
    )
    calibration_samples: int = option(128, "Representative samples")
    evaluation: str | None = option(None, "Validation data (default: synthetic inputs)")
    labels: str | None = option(None, "Label names file, one per line")
    preprocess: Preprocess | None = option(None, "Image normalisation (recorded in the metadata)")
    description: str = option("", "A sentence about the model, stored in the metadata")
    opset: int = option(18, "ONNX opset when a PyTorch model is converted first")

    def check(self) -> None:
        unknown = sorted(set(self.variants) - set(VARIANTS))
        if unknown or not self.variants:
            raise DataError(
                f"export tflite: unknown variant(s) {unknown}; use {', '.join(VARIANTS)}"
            )


def _saved_model_for(model: Model, work: Path, opset: int, progress: Progress) -> tuple[Path, list]:
    """A SavedModel to feed TFLiteConverter, and the steps taken to get it."""
    if model.format == "savedmodel":
        return model.path, []
    if model.format == "keras":
        out = work / "keras_savedmodel"
        model.native.export(str(out), verbose=False)
        return out, [{"step": "keras.Model.export", "format": "savedmodel"}]
    if model.format == "tflite":
        raise ExportError(
            f"{model.path}: already TFLite. Export the bundle from the original model "
            "(Keras, SavedModel, ONNX or PyTorch) so every variant is made from full precision."
        )
    from workflows.converters.onnx_tf import onnx_to_savedmodel

    steps: list[dict[str, Any]] = []
    onnx_path = model.path
    if model.format != "onnx":
        from workflows.steps.convert import convert_model

        onnx_path = work / "model.onnx"
        convert_model(model, onnx_path, opset=opset, progress=progress.scaled(0.0, 0.2))
        steps.append({"step": "convert", "target": "onnx", "opset": opset})
    out = onnx_to_savedmodel(onnx_path, work / "onnx2tf_savedmodel", progress.scaled(0.2, 1.0))
    steps.append({"step": "onnx2tf", "version": "1.29.24", "format": "savedmodel"})
    return out, steps


def layout_adapter(
    source: tuple[int, ...], target: list[int]
) -> tuple[Callable[[np.ndarray], np.ndarray], bool]:
    """How original-layout data becomes the TFLite input: identity, or NCHW -> NHWC (True)."""
    src = list(source[1:])
    dst = [int(d) for d in target[1:]]

    def fits(a: list[int], b: list[int]) -> bool:
        return len(a) == len(b) and all(y in (-1, x) for x, y in zip(a, b, strict=True))

    if fits(src, dst):
        return (lambda x: x), False
    if len(src) == 3 and fits([src[1], src[2], src[0]], dst):
        return (lambda x: np.ascontiguousarray(x.transpose(0, 2, 3, 1))), True
    raise ExportError(f"cannot map input shape {list(source)} onto the TFLite input {target}")


def _representative(data: Dataset, adapt: Callable, name: str) -> Callable[[], Iterator]:
    """TFLiteConverter's representative dataset: one sample at a time, in the TFLite layout."""

    def generate() -> Iterator[dict[str, np.ndarray]]:
        for feeds in data.batches(1):
            yield {name: adapt(next(iter(feeds.values())).astype(np.float32))}

    return generate


def _converter(
    saved_model: Path, variant: str, representative: Callable[[], Iterator] | None
) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if variant == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    try:
        return conv.convert()
    except Exception as exc:  # the converter raises ConverterError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"TFLiteConverter failed for the {variant} variant: {first}") from exc


def embed_metadata(flatbuffer: bytes, metadata: dict[str, Any]) -> bytes:
    """The model with `metadata` (JSON) added as a flatbuffer metadata entry."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata).encode())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*(model.metadata or []), entry]
    builder = flatbuffers.Builder(len(flatbuffer) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The Dockyard metadata embedded in a .tflite (None when absent)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == METADATA_NAME:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data))
    return None


def _validate(variant: str, reference: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    figures = compare(reference, got)
    if not figures["shape_match"]:
        return {**figures, "passed": False, "limit": "shapes must match"}
    span = float(np.abs(reference).max()) or 1.0
    figures["relative_error"] = figures["max_abs_error"] / span
    metric, limit = LIMITS[variant]
    if metric == "top1_agreement" and not looks_like_class_scores(reference):
        metric, limit = "relative_error", 5e-2
    value = figures[metric]
    passed = value >= limit if metric == "top1_agreement" else value <= limit
    figures.update(passed=bool(passed), limit={"metric": metric, "value": limit})
    return figures


def export_tflite(opts: TFLiteExportOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Write the TFLite bundle to opts.output; returns what was made and measured."""
    _tf.quiet_tensorflow()
    progress = progress or null_progress()
    if not opts.output:
        raise ExportError("export tflite: give an output folder (-o DIR)")
    out_path = Path(opts.output)
    progress.update(0.02, f"Loading {opts.model.path}")
    model = opts.model.load()
    if len(model.inputs) != 1:
        raise ExportError(
            f"{model.path}: the TFLite bundle handles single-input models; this one has "
            f"{len(model.inputs)} inputs"
        )
    name = safe_name(opts.name or model.name)
    labels = read_labels(Path(opts.labels)) if opts.labels else None
    templates = resource("templates", "tflite")
    calib = load_dataset(
        opts.calibration,
        model.inputs,
        opts.preprocess,
        opts.calibration_samples,
        seed=0,
        synthetic_count=opts.calibration_samples,
    )
    evaluation = load_dataset(
        opts.evaluation, model.inputs, opts.preprocess, None, seed=1, label_names=labels
    )
    run_original = formats.by_name(model.format).session(model)
    from workflows.accuracy import predict

    reference = predict(run_original, evaluation)[0]
    with scratch_dir(out_path) as work, atomic_dir(out_path) as out:
        saved_model, steps = _saved_model_for(model, work, opts.opset, progress.scaled(0.05, 0.4))
        variants = []
        tflite_spec: dict[str, Any] | None = None
        adapt: Callable[[np.ndarray], np.ndarray] | None = None
        transposed = False
        # fp32 first: it fixes the TFLite input layout that INT8's representative data must use
        # (converted for that even when it is not asked for, then not shipped).
        order = sorted(set(opts.variants) | {"fp32"}, key=VARIANTS.index)
        for i, variant in enumerate(order):
            progress.update(0.4 + 0.5 * i / len(order), f"Converting the {variant} variant")
            representative = None
            if variant == "int8":
                assert adapt is not None and tflite_spec is not None
                representative = _representative(calib, adapt, tflite_spec["signature_input"])
            flat = _converter(saved_model, variant, representative)
            tmp_model = work / f"{variant}.tflite"
            tmp_model.write_bytes(flat)
            from workflows.formats import tflite_format

            candidate = tflite_format.load(tmp_model)
            interp = candidate.native
            detail = interp.get_input_details()[0]
            if adapt is None:
                sig = interp.get_signature_list()
                first_sig = next(iter(sig.values()), {"inputs": []})
                tflite_spec = {
                    "input_name": detail["name"],
                    "signature_input": first_sig["inputs"][0]
                    if first_sig["inputs"]
                    else detail["name"],
                    "shape": [int(d) for d in detail["shape_signature"]],
                    "dtype": np.dtype(detail["dtype"]).name,
                }
                adapt, transposed = layout_adapter(
                    next(iter(evaluation.x.values())).shape, tflite_spec["shape"]
                )
            run_candidate = tflite_format.session(candidate)
            got = np.concatenate(
                [
                    run_candidate({detail["name"]: adapt(b[model.inputs[0].name])})[0]
                    for b in evaluation.batches(64)
                ]
            )
            if variant not in opts.variants:
                continue
            figures = _validate(variant, reference, got)
            metadata = _metadata(opts, model, name, variant, tflite_spec, labels)
            final = out / f"{name}.{variant}.tflite"
            final.write_bytes(embed_metadata(flat, metadata))
            if read_metadata(final) != metadata:
                raise ExportError(f"{final.name}: the embedded metadata did not read back")
            check = tflite_format.load(final)  # the signature check, on the file as shipped
            variants.append(
                {
                    "variant": variant,
                    "file": final.name,
                    "size_bytes": final.stat().st_size,
                    "validation": figures,
                    "signature": {
                        "inputs": [s.describe() for s in check.inputs],
                        "outputs": [s.describe() for s in check.outputs],
                        "signatures": check.metadata["signatures"],
                    },
                }
            )
        assert tflite_spec is not None and adapt is not None
        layout = (
            "NHWC (the original's NCHW, channels moved last)" if transposed else "as the original"
        )
        sample = next(evaluation.batches(1))
        np.save(out / "sample_input.npy", adapt(next(iter(sample.values()))))
        np.save(out / "sample_output.npy", run_original(sample)[0])
        meta = _metadata(opts, model, name, None, tflite_spec, labels)
        meta["variants"] = [{"variant": v["variant"], "file": v["file"]} for v in variants]
        meta["input"]["layout"] = "NHWC" if transposed else "original"
        (out / "metadata.json").write_text(json.dumps(meta, indent=2))
        if labels:
            (out / "labels.txt").write_text("\n".join(labels) + "\n")
        shutil.copyfile(templates / "infer.py", out / "infer.py")
        _readme(templates, out, model, name, variants, steps, tflite_spec, layout, transposed)
        validation = {v["variant"]: v["validation"] for v in variants}
        manifest = write_manifest(
            out,
            target="tflite",
            source=model.path,
            source_format=model.format,
            steps=[*steps, export_step("tflite", opts)],
            sample={"input": "sample_input.npy", "output": "sample_output.npy"},
            validation={
                "data": evaluation.source,
                "synthetic": evaluation.synthetic,
                "samples": len(evaluation),
                "variants": validation,
            },
        )
    passed = all(v["validation"]["passed"] for v in variants)
    progress.update(1.0, f"Wrote {out_path}")
    return {
        "step": "export",
        "target": "tflite",
        "output": str(out_path),
        "model_name": name,
        "variants": variants,
        "passed": passed,
        "input_layout": meta["input"]["layout"],
        "validation_data": {
            "source": evaluation.source,
            "synthetic": evaluation.synthetic,
            "samples": len(evaluation),
        },
        "files": sorted(str(p.relative_to(out_path)) for p in out_path.rglob("*") if p.is_file()),
        "manifest": manifest,
    }


def _metadata(
    opts: TFLiteExportOptions,
    model: Model,
    name: str,
    variant: str | None,
    spec: dict[str, Any] | None,
    labels: list[str] | None,
) -> dict[str, Any]:
    return {
        "name": name,
        "variant": variant,
        "description": opts.description,
        "input": {
            "name": spec["input_name"] if spec else None,
            "shape": spec["shape"] if spec else None,
            "dtype": spec["dtype"] if spec else "float32",
        },
        "normalization": to_dict(opts.preprocess) if opts.preprocess else None,
        "labels": labels,
        "source": {"file": model.path.name, "format": model.format, "sha256": sha256(model.path)},
        "dockyard_version": __version__,
    }


def _readme(
    templates: Path,
    out: Path,
    model: Model,
    name: str,
    variants: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    spec: dict[str, Any],
    layout: str,
    transposed: bool,
) -> None:
    rows = []
    for v in variants:
        f = v["validation"]
        lim = f.get("limit", {})
        value = f.get(lim.get("metric", ""), None)
        verdict = "pass" if f["passed"] else "FAIL"
        shown = f"{value:.3g}" if isinstance(value, float) else "-"
        rows.append(
            f"| `{v['file']}` | {v['variant']} | {v['size_bytes'] / 1024:.1f} KB | "
            f"{verdict}: {lim.get('metric')} {shown} (limit {lim.get('value')}) |"
        )
    path_doc = " → ".join([model.format, *[s["step"] for s in steps], "TFLiteConverter"])
    values = {
        "model_name": name,
        "dockyard_version": __version__,
        "created": datetime.now(UTC).strftime("%Y-%m-%d"),
        "source_name": model.path.name,
        "source_format": model.format,
        "path_doc": path_doc,
        "variant_rows": "\n".join(rows),
        "input_doc": f"{spec['input_name']}: {spec['dtype']}{spec['shape']}",
        "layout": layout,
        "outputs_doc": ", ".join(f"`{o}`" for o in variants[0]["signature"]["outputs"]),
        "layout_note": (
            " The original model takes NCHW; onnx2tf moved the channels last, so feed "
            "NHWC (`x.transpose(0, 2, 3, 1)`)."
            if transposed
            else ""
        ),
        "example_file": variants[-1]["file"],
    }
    (out / "README.md").write_text(
        string.Template((templates / "README.md").read_text()).substitute(values)
    )


def run(options: TFLiteExportOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return export_tflite(from_dict(TFLiteExportOptions, options), progress)
