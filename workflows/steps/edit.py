"""The edit step (issue 16, item 4): cut an ONNX graph at chosen outputs or drop one, set or free
an input dimension, rename inputs and outputs (workflows.graph_edits) — then check the result
(ONNX checker with shape inference) and run it against the original on the same inputs before
it is written, as a new file, beside nothing it could overwrite half-way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from workflows.errors import DataError
from workflows.options import Options, from_dict, option
from workflows.progress import Progress, null_progress

TOLERANCE = 1e-6  # edited vs original on the kept outputs, both run without graph optimisations
# Running two samples as one batch may sum in another order in some kernels: measured 0 on the
# sample and the test models; this bound only allows for kernels that block by batch size.
BATCHED_TOLERANCE = 1e-5


@dataclass
class EditOptions(Options):
    """Options of the edit step."""

    model: str = option("", "The ONNX model to edit")
    output: str = option("", "Folder for the edited model and edit.json")
    outputs: list[str] = option([], "Cut the graph: keep only these outputs (any tensor names)")
    drop_outputs: list[str] = option([], "Drop these outputs (and what only they need)")
    dims: dict[str, int | str] = option(
        {}, "Input dimensions: INPUT:AXIS -> a size (fix it) or a name (free it), e.g. x:0=batch"
    )
    rename: dict[str, str] = option({}, "Rename inputs and outputs: old -> new")
    data: str | None = option(None, "Inputs to check the edit on (.npz); default: synthetic")
    samples: int = option(4, "Samples the edited model is run on against the original")
    seed: int = option(0, "Seed for the synthetic inputs")


def _session(proto: Any) -> Any:
    """An ORT session without graph optimisations: the same kernels on both sides."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _exposing(proto: Any, tensors: list[str]) -> Any:
    """A copy of the original whose outputs are `tensors` (intermediate ones made outputs)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    infos = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input,
                                 *inferred.graph.output]}  # fmt: skip
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    del copy.graph.output[:]
    copy.graph.output.extend(infos[t] for t in tensors)
    return copy


def _validate(original: Any, edited: Any, names: dict[str, str], freed: list[tuple[str, int]],
              feeds: dict[str, np.ndarray]) -> dict[str, Any]:  # fmt: skip
    """Run both on `feeds`; the kept outputs must match within TOLERANCE. `names` maps the
    edited model's inputs and outputs back to the original's tensors. A freed batch axis is
    also run at batch 2 against the original run one sample at a time."""
    import onnx

    from workflows.graph_edits import io_names

    try:
        onnx.checker.check_model(edited, full_check=True)
    except Exception as exc:  # onnx raises ValidationError and InferenceError
        raise DataError(f"edit: the edited model fails the ONNX checker: {exc}") from exc
    inputs, outputs = io_names(edited)
    reference = _session(_exposing(original, [names.get(o, o) for o in outputs]))
    try:
        candidate = _session(edited)
    except Exception as exc:
        raise DataError(f"edit: ONNX Runtime cannot load the edited model: {exc}") from exc

    worst = 0.0
    samples = len(next(iter(feeds.values())))
    for s in range(samples):
        one = {k: v[s : s + 1] for k, v in feeds.items()}
        try:
            ours = candidate.run(None, {i: one[names.get(i, i)] for i in inputs})
        except Exception as exc:
            raise DataError(f"edit: the edited model does not run: {exc}") from exc
        worst = max(worst, _difference(outputs, ours, reference.run(None, one), "edit: output"))
    if worst > TOLERANCE:
        raise DataError(f"edit: the edited model's outputs differ from the original's by "
                        f"{worst:.3g} (allowed {TOLERANCE:g}); the edit is not written")  # fmt: skip
    result: dict[str, Any] = {"checker": "ok", "samples": samples, "outputs": outputs,
                              "max_abs_diff": worst, "freed": []}  # fmt: skip
    batch_checked = False
    for name, axis in freed:
        if axis == 0 and batch_checked:
            continue  # one batch-2 run covers every input whose batch was freed
        batch_checked = batch_checked or axis == 0
        result["freed"].append(_run_freed(candidate, inputs, outputs, names, feeds, name, axis,
                                          reference))  # fmt: skip
    return result


def _difference(outputs: list[str], ours: list[np.ndarray], theirs: list[np.ndarray],
                what: str) -> float:  # fmt: skip
    """The largest |ours - theirs| over the outputs; DataError when a shape differs."""
    worst = 0.0
    for name, a, b in zip(outputs, ours, theirs, strict=True):
        if a.shape != b.shape:
            raise DataError(f"{what} {name} has shape {a.shape}, the original's {b.shape}")
        worst = max(worst, _max_abs(a, b))
    return worst


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    if not np.issubdtype(a.dtype, np.number):
        return 0.0 if np.array_equal(a, b) else float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _run_freed(candidate: Any, inputs: list[str], outputs: list[str], names: dict[str, str],
               feeds: dict[str, np.ndarray], name: str, axis: int,
               reference: Any) -> dict[str, Any]:  # fmt: skip
    """Run the edited model with the freed axis at another size. Axis 0 (the batch): two
    samples at once, against the original one at a time; another axis: the last slice
    repeated once more, checked to run (the original cannot say what it should give)."""
    original_name = names.get(name, name)
    size = feeds[original_name].shape[axis]
    if axis == 0:
        # Two samples in one batch for the inputs whose batch is free; an input whose batch
        # stays fixed (a per-request constant) keeps its one row.
        free = {names.get(i.name, i.name) for i in candidate.get_inputs()
                if i.shape and not isinstance(i.shape[0], int)}  # fmt: skip
        two = {k: np.concatenate([v[:1], v[1:2] if len(v) > 1 else v[:1]]) if k in free
               else v[:1] for k, v in feeds.items()}  # fmt: skip
        try:
            ours = candidate.run(None, {i: two[names.get(i, i)] for i in inputs})
        except Exception as exc:
            raise DataError(f"edit: with {name}:0 freed, the model does not run at batch 2: "
                            f"{exc}; something inside fixes the batch (a Reshape?)") from exc  # fmt: skip
        theirs = [reference.run(None, {k: v[s : s + 1] if k in free else v
                                       for k, v in two.items()}) for s in (0, 1)]  # fmt: skip
        stacked = [np.concatenate([a, b]) for a, b in zip(*theirs, strict=True)]
        worst = _difference(outputs, ours, stacked, f"edit: with {name}:0 freed, at batch 2 output")
        if worst > BATCHED_TOLERANCE:
            raise DataError(f"edit: with {name}:0 freed, batch 2 differs from two single runs by "
                            f"{worst:.3g}; the batch is not independent in this model")  # fmt: skip
        return {"dim": f"{name}:0", "ran_at": 2, "max_abs_diff": worst}
    grown = dict(feeds)
    x = feeds[original_name][:1]
    grown[original_name] = np.concatenate([x, np.take(x, [-1], axis=axis)], axis=axis)
    try:
        candidate.run(None, {i: grown[names.get(i, i)][:1] for i in inputs})
    except Exception as exc:
        raise DataError(f"edit: with {name}:{axis} freed, the model does not run at size "
                        f"{size + 1}: {exc}") from exc  # fmt: skip
    return {"dim": f"{name}:{axis}", "ran_at": size + 1, "max_abs_diff": None}


def edit_model(opts: EditOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Apply the edits in the order cut, dims, rename; validate; write `<name>.edited.onnx`
    and edit.json into the output folder (atomically)."""
    import copy

    import onnx

    from workflows.atomic import atomic_dir
    from workflows.data import load_dataset
    from workflows.formats import onnx_format
    from workflows.graph_edits import cut, io_names, rename, set_dims

    progress = progress or null_progress()
    source = Path(opts.model)
    if not opts.output:
        raise DataError("edit: give an output folder (-o DIR)")
    if not onnx_format.match(source):
        raise DataError(f"{source}: edit works on ONNX models; convert it first "
                        "(dockyard-cli convert, or a convert step before edit)")  # fmt: skip
    if not (opts.outputs or opts.drop_outputs or opts.dims or opts.rename):
        raise DataError("edit: nothing to do; give outputs, drop_outputs, dims or rename")
    original = onnx_format.read_proto(source)
    outputs = io_names(original)[1]
    edited, done, dropped_inputs = copy.deepcopy(original), [], []
    keep = list(opts.outputs) or list(outputs)
    for name in opts.drop_outputs:
        if name not in keep:
            raise DataError(f"drop_outputs: {name!r} is not an output; outputs: {', '.join(keep)}")
        keep.remove(name)
    if keep != outputs:
        progress.update(0.1, "Cutting the graph")
        edited, dropped_inputs = cut(edited, keep)
        done.append(f"outputs: {', '.join(outputs)} -> {', '.join(keep)}"
                    f" ({len(original.graph.node) - len(edited.graph.node)} nodes removed)")  # fmt: skip
    for key in opts.dims:
        if key.rpartition(":")[0] in dropped_inputs:
            raise DataError(f"dims: {key}: input {key.rpartition(':')[0]} is gone after the cut "
                            "(nothing the kept outputs need reads it)")  # fmt: skip
    if opts.dims:
        progress.update(0.2, "Setting dimensions")
        done += set_dims(edited, opts.dims)
    if opts.rename:
        done += rename(edited, opts.rename)
    back = {new: old for old, new in opts.rename.items()}
    freed = []
    for key, value in opts.dims.items():
        name, _, axis = key.rpartition(":")
        if isinstance(value, str):
            freed.append((opts.rename.get(name, name), int(axis)))
    progress.update(0.4, "Checking and running the edited model against the original")
    specs = onnx_format.load(source).inputs
    fixed = {k: v for k, v in opts.dims.items() if isinstance(v, int)}
    specs = [_with_fixed(s, fixed) for s in specs]  # the original needs every input
    data = load_dataset(opts.data, specs, None, opts.samples, opts.seed,
                        synthetic_count=opts.samples)  # fmt: skip
    feeds = data.batch(0, len(data))
    validation = _validate(original, edited, back, freed, feeds)
    name = source.name.removesuffix(".onnx") + ".edited.onnx"
    progress.update(0.9, "Writing the edited model")
    result = {
        "step": "edit",
        "source": str(source),
        "model": str(Path(opts.output) / name),
        "edits": done,
        "dropped_inputs": dropped_inputs,
        "inputs": io_names(edited)[0],
        "outputs": io_names(edited)[1],
        "nodes": {"before": len(original.graph.node), "after": len(edited.graph.node)},
        "validation": validation,
    }
    with atomic_dir(Path(opts.output)) as tmp:
        onnx.save_model(edited, str(tmp / name))
        from workflows.atomic import write_json

        write_json(tmp / "edit.json", result)
    progress.update(1.0, f"Wrote {result['model']}")
    return result


def _with_fixed(spec: Any, fixed: dict[str, int]) -> Any:
    """The input spec with the dimensions the edit fixes (the original must run at them)."""
    import dataclasses

    shape = list(spec.shape or ())
    for key, value in fixed.items():
        name, _, axis = key.rpartition(":")
        if name == spec.name and shape:
            shape[int(axis)] = value
    return dataclasses.replace(spec, shape=tuple(shape)) if spec.shape else spec


def run(options: EditOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return edit_model(from_dict(EditOptions, options), progress)
