"""TFLite bundle: fp32, fp16, dynamic-range and full-INT8 .tflite variants (TFLiteConverter), each
validated against the original model in the LiteRT interpreter, with metadata embedded in every
model, labels, a signature check, infer.py and a README.

Conversion paths: Keras -> SavedModel -> TFLiteConverter; SavedModel -> TFLiteConverter (both in
this process); ONNX (and PyTorch, via ONNX) -> onnx2tf -> SavedModel -> TFLiteConverter, all in
one process of onnx2tf's isolated environment (this one then imports no TensorFlow).
"""

from __future__ import annotations

import functools
import json
import shutil
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from workflows import __version__, formats, present, toolenv
from workflows.converters.onnx_tf import Onnx2TF
from workflows.data import (
    CALIBRATION_MAX,
    Dataset,
    Preprocess,
    calibration_and_evaluation,
    read_labels,
)
from workflows.errors import ExportError, first_line
from workflows.exporters.base import Exporter
from workflows.exporters.common import CONVERTED_HELP, SOURCE_HELP, sha256
from workflows.exporters.savedmodel_source import (
    ONNX2TF_STEP,
    source_savedmodel,
    start_onnx2tf,
)
from workflows.formats import _tf
from workflows.machine import measured_on
from workflows.metrics import compare
from workflows.model import Model
from workflows.options import LoadOptions, Options, from_dict, option, to_dict
from workflows.progress import Progress
from workflows.quantization.gate import judge
from workflows.resources import resource

VARIANTS = ("fp32", "fp16", "dynamic", "int8")
METADATA_NAME = "dockyard_metadata"
# Pass/fail per variant: fp32 by absolute error and fp16 by error relative to the output's range
# (numerical equivalence: any input shows it, synthetic ones too); the quantized ones by the
# accuracy gate (workflows.quantization.gate: top-1 drop, disagreement or SQNR with intervals),
# which makes no claim on synthetic inputs.
LIMITS = {
    "fp32": ("max_abs_error", 1e-4),
    "fp16": ("relative_error", 1e-2),
}
LOSSY = ("dynamic", "int8")


@dataclass
class TFLiteExportOptions(Options):
    """Options of the TFLite bundle target."""

    model: LoadOptions = option(None, "The model to convert (Keras, SavedModel, ONNX, PyTorch)")
    output: str = option("", "The bundle folder to write")
    name: str | None = option(None, "Bundle and file name (default: the file name)")
    variants: list[str] = option(
        list(VARIANTS), "Variants: fp32, fp16, dynamic, int8", choices=VARIANTS
    )
    calibration: str | None = option(
        None, "Representative data for INT8 (image folder, .npy, .npz)"
    )
    calibration_samples: int | None = option(
        None, f"Representative samples (empty: all given, up to {CALIBRATION_MAX:,})"
    )
    evaluation: str | None = option(
        None,
        "Validation data (default: held out from the calibration data; synthetic without it)",
    )
    max_accuracy_drop: float = option(
        1.0, "Accuracy gate of the dynamic and int8 variants: largest top-1 drop, in points"
    )
    labels: str | None = option(None, "Label names file, one per line")
    preprocess: Preprocess | None = option(None, "Image normalisation (recorded in the metadata)")
    description: str = option("", "A sentence about the model, stored in the metadata")
    opset: int = option(18, "ONNX opset when a PyTorch model is converted first")
    converted: str | None = option(None, CONVERTED_HELP)
    source: str = option("original", SOURCE_HELP)


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


def _representative(
    data: Dataset, adapt: Callable, name: str, progress: Progress
) -> Callable[[], Iterator]:
    """TFLiteConverter's representative dataset: one sample at a time, in the TFLite layout,
    read when the converter asks for it (memory stays flat), each reported to `progress`."""

    def generate() -> Iterator[dict[str, np.ndarray]]:
        total = len(data)
        for i, feeds in enumerate(data.batches(1)):
            yield {name: adapt(next(iter(feeds.values())).astype(np.float32))}
            if (i + 1) % 16 == 0 or i + 1 == total:
                progress.update((i + 1) / total, f"Calibrating: {i + 1:,} of {total:,} samples")

    return generate


@functools.cache
def _converter_script() -> Any:
    """resources/toolenvs/onnx2tf_convert.py as a module: the TFLiteConverter settings, the same
    whether a variant is converted here (Keras, SavedModel) or in onnx2tf's environment."""
    import importlib.util

    path = resource("toolenvs", "onnx2tf_convert.py")
    spec = importlib.util.spec_from_file_location("dockyard_onnx2tf_convert", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _converter(
    saved_model: Path, variant: str, representative: Callable[[], Iterator] | None
) -> bytes:
    try:
        return _converter_script().convert(str(saved_model), variant, representative)
    except Exception as exc:  # the converter raises ConverterError and friends
        raise ExportError(
            f"TFLiteConverter failed for the {variant} variant: {first_line(exc)}"
        ) from exc


def variant_order(variants: list[str]) -> tuple[str, ...]:
    """The variants converted, in order: fp32 first, always (it fixes the TFLite input layout
    that INT8's representative data must use; converted for that even when not shipped)."""
    return tuple(sorted(set(variants) | {"fp32"}, key=VARIANTS.index))


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


def _validate(
    variant: str, reference: np.ndarray, got: np.ndarray, data: Dataset, max_drop: float
) -> dict[str, Any]:
    """A variant's figures against the original on `data`; "passed" is None when nothing can be
    claimed (synthetic inputs, or too few samples to decide)."""
    figures = compare(reference, got)
    if not figures["shape_match"]:
        return {**figures, "passed": False, "limit": "shapes must match"}
    span = float(np.abs(reference).max()) or 1.0
    figures["relative_error"] = figures["max_abs_error"] / span
    if variant in LOSSY:
        g = judge([reference], [got], data.y, data.synthetic, max_drop)
        figures.update(gate=g, passed=g["passed"], limit={"metric": g["metric"], "value": max_drop})
        return figures
    metric, limit = LIMITS[variant]
    value = figures[metric]
    figures.update(passed=bool(value <= limit), limit={"metric": metric, "value": limit})
    return figures


class TFLiteExporter(Exporter):
    """The bundle: every variant converted, its metadata embedded, then run in LiteRT."""

    target = "tflite"

    @classmethod
    def check(cls, opts: TFLiteExportOptions, model: Model) -> None:
        _tf.quiet_tensorflow()
        if model.format == "tflite":
            raise ExportError(
                f"{model.path}: already TFLite. Export the bundle from the original model "
                "(Keras, SavedModel, ONNX or PyTorch) so every variant is made from full precision."
            )
        if len(model.inputs) != 1:
            raise ExportError(
                f"{model.path}: the TFLite bundle handles single-input models; this one has "
                f"{len(model.inputs)} inputs"
            )

    @classmethod
    def start_early(cls, opts: TFLiteExportOptions, work: Path) -> Any:
        return start_onnx2tf(opts, work, variant_order(opts.variants))

    def stage(self) -> None:
        opts, model = self.opts, self.model
        self.labels = read_labels(Path(opts.labels)) if opts.labels else None
        self.calib, self.evaluation, self.held_out = calibration_and_evaluation(
            opts.calibration,
            opts.evaluation,
            model.inputs,
            opts.preprocess,
            opts.calibration_samples,
            None,
            0.5,
            0,
            self.labels,
        )
        self.run_original = formats.by_name(model.format).session(model)
        from workflows.quantization.accuracy import predict

        self.reference = predict(self.run_original, self.evaluation)[0]
        self.adapt: Callable[[np.ndarray], np.ndarray] | None = None
        self.files: dict[str, Path] = {}
        order = variant_order(opts.variants)
        if model.format in ("keras", "savedmodel"):  # TensorFlow is here already: convert here
            saved_model = source_savedmodel(self, self.progress.scaled(0.05, 0.4))
            self._write_variants(order, functools.partial(self._convert, saved_model))
            return
        # Else in onnx2tf's environment, which imports TensorFlow once for all of it.
        tool = self._onnx2tf(order, self.progress.scaled(0.05, 0.4))
        try:
            self._write_variants(order, functools.partial(self._from_tool, tool))
        finally:
            if tool is not self.early:  # the early one is closed with the export
                tool.close()

    def _write_variants(
        self, order: tuple[str, ...], convert: Callable[[str, Progress], bytes]
    ) -> None:
        """Convert every variant in `order`; write the asked ones with their metadata."""
        opts = self.opts
        for i, variant in enumerate(order):
            self.progress.update(0.4 + 0.4 * i / len(order), f"Converting the {variant} variant")
            span = self.progress.scaled(
                0.4 + 0.4 * i / len(order), 0.4 + 0.4 * (i + 1) / len(order)
            )
            flat = convert(variant, span)
            if self.adapt is None:
                self._read_spec(flat)
            if variant not in opts.variants:
                continue
            metadata = _metadata(opts, self.model, self.name, variant, self.spec, self.labels)
            final = self.out / f"{self.name}.{variant}.tflite"
            final.write_bytes(embed_metadata(flat, metadata))
            if read_metadata(final) != metadata:
                raise ExportError(f"{final.name}: the embedded metadata did not read back")
            self.files[variant] = final

    def _onnx2tf(self, order: tuple[str, ...], progress: Progress) -> Onnx2TF:
        """onnx2tf converting the source's ONNX and then `order`'s variants: the one started
        early when it converts the same, else one started now (the caller closes it)."""
        onnx_path = self.onnx(progress.scaled(0.0, 0.2))
        tool = self.early
        if not (
            isinstance(tool, Onnx2TF)
            and tool.onnx_path.resolve() == Path(onnx_path).resolve()
            and tuple(tool.variants) == order
        ):
            bin_dir = toolenv.ensure(toolenv.ONNX2TF, progress=progress.scaled(0.2, 0.5))
            tool = Onnx2TF(bin_dir, onnx_path, self.work / "onnx2tf_savedmodel", order)
        tool.finish(progress.scaled(0.5, 1.0))
        self.steps.append(dict(ONNX2TF_STEP))
        return tool

    def _from_tool(self, tool: Onnx2TF, variant: str, progress: Progress) -> bytes:
        """A variant's flatbuffer from onnx2tf's environment (INT8's data streamed to it)."""
        if variant == "int8":
            assert self.adapt is not None
            name = self.spec["signature_input"]
            tool.calibrate(name, _representative(self.calib, self.adapt, name, progress))
        return tool.variant(variant)

    def _convert(self, saved_model: Path, variant: str, progress: Progress) -> bytes:
        """One variant's flatbuffer, converted in this process."""
        representative = None
        if variant == "int8":
            assert self.adapt is not None
            representative = _representative(
                self.calib, self.adapt, self.spec["signature_input"], progress
            )
        return _converter(saved_model, variant, representative)

    def _read_spec(self, flat: bytes) -> None:
        """The TFLite input's name, shape and layout, from the first (fp32) flatbuffer."""
        from workflows.formats import tflite_format

        tmp_model = self.work / "fp32.tflite"
        tmp_model.write_bytes(flat)
        interp = tflite_format.load(tmp_model).native
        detail = interp.get_input_details()[0]
        first_sig = next(iter(interp.get_signature_list().values()), {"inputs": []})
        self.spec = {
            "input_name": detail["name"],
            "signature_input": first_sig["inputs"][0] if first_sig["inputs"] else detail["name"],
            "shape": [int(d) for d in detail["shape_signature"]],
            "dtype": np.dtype(detail["dtype"]).name,
        }
        self.adapt, self.transposed = layout_adapter(
            next(iter(self.evaluation.shapes().values())), self.spec["shape"]
        )

    def validate(self) -> dict[str, Any]:
        """Run every shipped file in LiteRT on the evaluation data, against the original."""
        from workflows.formats import tflite_format

        assert self.adapt is not None
        self.variants = []
        input_name = self.model.inputs[0].name
        for variant, final in self.files.items():
            self.progress.update(0.85, f"Validating the {variant} variant in LiteRT")
            shipped = tflite_format.load(final)  # the signature check, on the file as shipped
            run = tflite_format.session(shipped)
            name = shipped.native.get_input_details()[0]["name"]
            got = np.concatenate(
                [run({name: self.adapt(b[input_name])})[0] for b in self.evaluation.batches(64)]
            )
            self.variants.append(
                {
                    "variant": variant,
                    "file": final.name,
                    "size_bytes": final.stat().st_size,
                    "validation": _validate(
                        variant, self.reference, got, self.evaluation, self.opts.max_accuracy_drop
                    ),
                    "signature": {
                        "inputs": [s.describe() for s in shipped.inputs],
                        "outputs": [s.describe() for s in shipped.outputs],
                        "signatures": shipped.metadata["signatures"],
                    },
                }
            )
        return {
            **self._data_facts(),
            "variants": {v["variant"]: v["validation"] for v in self.variants},
        }

    def _data_facts(self) -> dict[str, Any]:
        e = self.evaluation
        return {"data": e.source, "synthetic": e.synthetic, "samples": len(e)}

    def describe(self, validation: dict[str, Any]) -> tuple[dict | None, dict, dict]:
        out, opts = self.out, self.opts
        assert self.adapt is not None
        sample = next(self.evaluation.batches(1))
        np.save(out / "sample_input.npy", self.adapt(next(iter(sample.values()))))
        np.save(out / "sample_output.npy", self.run_original(sample)[0])
        meta = _metadata(opts, self.model, self.name, None, self.spec, self.labels)
        meta["variants"] = [{"variant": v["variant"], "file": v["file"]} for v in self.variants]
        meta["input"]["layout"] = "NHWC" if self.transposed else "original"
        (out / "metadata.json").write_text(json.dumps(meta, indent=2))
        if self.labels:
            (out / "labels.txt").write_text("\n".join(self.labels) + "\n")
        templates = resource("templates", "tflite")
        shutil.copyfile(templates / "infer.py", out / "infer.py")
        layout = (
            "NHWC (the original's NCHW, channels moved last)"
            if self.transposed
            else "as the original"
        )
        _readme(
            templates,
            out,
            self.model,
            self.name,
            self.variants,
            self.steps,
            self.spec,
            layout,
            self.transposed,
            measured_on(),
        )
        facts = self._data_facts()
        result = {
            "variants": self.variants,
            # Failed only by a variant shown to fail; "not judged" and "inconclusive" are said
            # in the report and the README, and do not fail the export.
            "passed": not any(v["validation"]["passed"] is False for v in self.variants),
            "input_layout": meta["input"]["layout"],
            "measured_on": measured_on(),
            "validation_data": {
                "source": facts["data"],
                "synthetic": facts["synthetic"],
                "samples": facts["samples"],
                "held_out": self.held_out,
            },
        }
        # The quantized variants' figures depend on this machine's INT8 kernels.
        machine = {"measured_on": result["measured_on"]}
        return {"input": "sample_input.npy", "output": "sample_output.npy"}, machine, result


def export_tflite(opts: TFLiteExportOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Write the TFLite bundle to opts.output; returns what was made and measured."""
    return TFLiteExporter.export(opts, progress)


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
    machine: dict[str, Any],
) -> None:
    rows = []
    for v in variants:
        f = v["validation"]
        if "gate" in f:
            check = f"accuracy gate: {present.gate(f['gate'])}"
        else:
            lim = f.get("limit", {})
            value = f.get(lim.get("metric", ""), None)
            shown = f"{value:.3g}" if isinstance(value, float) else "-"
            verdict = "pass" if f["passed"] else "FAIL"
            check = f"{verdict}: {lim.get('metric')} {shown} (limit {lim.get('value')})"
        rows.append(
            f"| `{v['file']}` | {v['variant']} | {v['size_bytes'] / 1024:.1f} KB | {check} |"
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
        "measured_on": " ".join(present.machine_lines(machine)),
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
