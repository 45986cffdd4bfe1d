"""Safe small edits (issue 16, item 4): each edited model is checked, runs, and matches the
original on the outputs it keeps (<= 1e-6); a failed edit writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from workflows.errors import DataError
from workflows.steps.edit import EditOptions, edit_model


def _two_headed(path, flatten="Flatten"):
    """image [1,3,8,8] -> Conv -> Relu -> flatten -> MatMul + Add -> logits [1,10], and
    meta [1,4] -> MatMul -> aux [1,2]. `flatten="Reshape"` flattens with a fixed [1, -1] shape
    (a batch of 1 baked into the graph, as many exporters do)."""
    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    node = helper.make_node
    flat = (node("Flatten", ["relu"], ["flat"], name="flatten", axis=1) if flatten == "Flatten"
            else node("Reshape", ["relu", "one_by_any"], ["flat"], name="flatten"))  # fmt: skip
    nodes = [
        node("Conv", ["image", "w", "b"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        node("Relu", ["conv"], ["relu"], name="relu"),
        flat,
        node("MatMul", ["flat", "fw"], ["mm"], name="fc"),
        node("Add", ["mm", "fb"], ["logits"], name="fc_bias"),
        node("MatMul", ["meta", "mw"], ["aux"], name="aux_head"),
    ]
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "one_by_any")
    inits = [init("w", (8, 3, 3, 3)), init("b", (8,)), init("fw", (512, 10)), init("fb", (10,)),
             init("mw", (4, 2)), shape]  # fmt: skip
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "two_headed",
        [vi("image", TensorProto.FLOAT, [1, 3, 8, 8]), vi("meta", TensorProto.FLOAT, [1, 4])],
        [vi("logits", TensorProto.FLOAT, [1, 10]), vi("aux", TensorProto.FLOAT, [1, 2])], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _run(path_or_proto, feeds, outputs=None):
    """Run a model (optionally with intermediate tensors as outputs), as a user would."""
    proto = onnx.load(str(path_or_proto)) if not isinstance(path_or_proto, onnx.ModelProto) \
        else path_or_proto  # fmt: skip
    if outputs:
        inferred = onnx.shape_inference.infer_shapes(proto)
        infos = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.output]}
        del proto.graph.output[:]
        proto.graph.output.extend(infos[o] for o in outputs)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def _feeds(batch=1, seed=1):
    rng = np.random.default_rng(seed)
    return {"image": rng.standard_normal((batch, 3, 8, 8)).astype(np.float32),
            "meta": rng.standard_normal((batch, 4)).astype(np.float32)}  # fmt: skip


def _dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_free_the_batch_then_batch_two_equals_two_single_runs(tmp_path):
    src = _two_headed(tmp_path / "m.onnx")
    r = edit_model(EditOptions(model=str(src), output=str(tmp_path / "out"),
                               dims={"image:0": "batch", "meta:0": "batch"}))  # fmt: skip
    assert r["edits"] == ["image:0: 1 -> batch", "meta:0: 1 -> batch"]
    edited = onnx.load(r["model"])
    assert [_dims(i) for i in edited.graph.input] == [["batch", 3, 8, 8], ["batch", 4]]
    assert [_dims(o) for o in edited.graph.output] == [["batch", 10], ["batch", 2]]
    v = r["validation"]
    assert v["max_abs_diff"] <= 1e-6 and v["samples"] == 4
    (batch,) = v["freed"]  # one batch-2 run covers both inputs; measured difference: 0
    assert batch["dim"] == "image:0" and batch["ran_at"] == 2 and batch["max_abs_diff"] <= 1e-5
    # Independently: batch 3 through the edited file equals the original one sample at a time.
    feeds = _feeds(3)
    ours = _run(r["model"], feeds)
    for s in range(3):
        theirs = _run(src, {k: x[s : s + 1] for k, x in feeds.items()})
        for name in ("logits", "aux"):
            assert np.max(np.abs(ours[name][s : s + 1] - theirs[name])) <= 1e-5
    assert json.loads((tmp_path / "out" / "edit.json").read_text())["model"] == r["model"]


def test_freeing_a_batch_the_graph_fixes_is_refused_and_nothing_is_written(tmp_path):
    src = _two_headed(tmp_path / "m.onnx", flatten="Reshape")
    out = tmp_path / "out"
    with pytest.raises(DataError, match=r"image:0 freed.*batch 2"):
        edit_model(EditOptions(model=str(src), output=str(out),
                               dims={"image:0": "batch", "meta:0": "batch"}))  # fmt: skip
    assert not out.exists() and list(tmp_path.iterdir()) == [src]


def test_fix_a_free_dimension(tmp_path):
    src = _two_headed(tmp_path / "m.onnx")
    freed = edit_model(EditOptions(model=str(src), output=str(tmp_path / "a"),
                                   dims={"image:0": "n", "meta:0": "n"}))  # fmt: skip
    r = edit_model(EditOptions(model=freed["model"], output=str(tmp_path / "b"),
                               dims={"image:0": 1, "meta:0": 1}))  # fmt: skip
    edited = onnx.load(r["model"])
    assert _dims(edited.graph.input[0]) == [1, 3, 8, 8]
    assert _dims(edited.graph.output[0]) == [1, 10] and r["validation"]["max_abs_diff"] <= 1e-6


def test_drop_an_output_removes_its_branch_and_its_input(tmp_path):
    src = _two_headed(tmp_path / "m.onnx")
    r = edit_model(EditOptions(model=str(src), output=str(tmp_path / "out"),
                               drop_outputs=["aux"]))  # fmt: skip
    assert r["dropped_inputs"] == ["meta"] and r["inputs"] == ["image"]
    assert r["outputs"] == ["logits"] and r["nodes"] == {"before": 6, "after": 5}
    feeds = _feeds()
    ours = _run(r["model"], {"image": feeds["image"]})
    assert np.max(np.abs(ours["logits"] - _run(src, feeds)["logits"])) <= 1e-6


def test_cut_at_an_intermediate_tensor(tmp_path):
    src = _two_headed(tmp_path / "m.onnx")
    r = edit_model(EditOptions(model=str(src), output=str(tmp_path / "out"),
                               outputs=["relu", "aux"]))  # fmt: skip
    edited = onnx.load(r["model"])
    assert [n.name for n in edited.graph.node] == ["conv", "relu", "aux_head"]
    assert _dims(edited.graph.output[0]) == [1, 8, 8, 8]
    feeds = _feeds()
    ours, theirs = _run(edited, feeds), _run(src, feeds, outputs=["relu", "aux"])
    for name in ("relu", "aux"):
        assert ours[name].shape == theirs[name].shape
        assert np.max(np.abs(ours[name] - theirs[name])) <= 1e-6


def test_rename_inputs_and_outputs(tmp_path):
    src = _two_headed(tmp_path / "m.onnx")
    r = edit_model(EditOptions(model=str(src), output=str(tmp_path / "out"),
                               rename={"image": "pixel_values", "logits": "scores"}))  # fmt: skip
    assert r["inputs"] == ["pixel_values", "meta"] and r["outputs"] == ["scores", "aux"]
    feeds = _feeds()
    ours = _run(r["model"], {"pixel_values": feeds["image"], "meta": feeds["meta"]})
    assert np.max(np.abs(ours["scores"] - _run(src, feeds)["logits"])) <= 1e-6


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"outputs": ["rleu"]}, r"no tensor named 'rleu' \(did you mean relu"),
        ({"drop_outputs": ["logit"]}, r"'logit' is not an output; outputs: logits, aux"),
        ({"dims": {"image:4": 1}}, r"input image has 4 dimensions; no axis 4"),
        ({"dims": {"img:0": 1}}, r"no input 'img'.*inputs: image, meta"),
        ({"dims": {"image": 1}}, r"should be INPUT:AXIS"),
        ({"rename": {"image": "relu"}}, r"already has a tensor of that name"),
        ({"rename": {"conv": "x"}}, r"'conv' is not an input or output"),
        ({}, r"nothing to do"),
        ({"drop_outputs": ["aux"], "dims": {"meta:0": 2}}, r"input meta is gone after the cut"),
    ],
)
def test_a_bad_edit_says_what_is_wrong_and_keeps_the_good_output(tmp_path, edit, message):
    src = _two_headed(tmp_path / "m.onnx")
    out = tmp_path / "out"
    good = edit_model(EditOptions(model=str(src), output=str(out), rename={"aux": "extra"}))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DataError, match=message):
        edit_model(EditOptions(model=str(src), output=str(out), **edit))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert onnx.load(good["model"]).graph.output[1].name == "extra"


def test_cli_edits_and_a_workflow_replays_the_edit_before_quantizing(tmp_path):
    from workflows.options import LoadOptions
    from workflows.workflow import Step, Workflow, run_workflow

    src = _two_headed(tmp_path / "m.onnx")
    r = subprocess.run(
        [sys.executable, "-m", "workflows.cli", "edit", str(src), "-o", str(tmp_path / "cli"),
         "--dim", "image:0=batch", "--rename", "logits=scores",
         "--drop-output", "aux"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "image:0: 1 -> batch" in r.stdout and "logits -> scores" in r.stdout
    assert "freed image:0: runs at 2" in r.stdout
    edited = onnx.load(str(tmp_path / "cli" / "m.edited.onnx"))
    assert [o.name for o in edited.graph.output] == ["scores"]
    assert [i.name for i in edited.graph.input] == ["image"]

    wf = Workflow(
        LoadOptions(path=str(src)),
        [Step("edit", {"dims": {"image:0": "batch", "meta:0": "batch"},
                       "rename": {"image": "pixel_values"}}),
         Step("quantize", {"modes": ["dynamic"]})],
        str(tmp_path / "run"),
    )  # fmt: skip
    edit, quantized = (s["result"] for s in run_workflow(wf)["steps"])
    assert edit["model"].endswith("run/m/edit/m.edited.onnx")
    assert quantized["source"]["path"] == edit["model"]  # the quantize step read the edit
    variant = onnx.load(str(tmp_path / "run" / "m" / "quantize" / "m.edited.int8-dynamic.onnx"))
    assert variant.graph.input[0].name == "pixel_values"
    assert _dims(variant.graph.input[0])[0] == "batch"


def test_an_export_hands_off_the_edited_model():
    from workflows.planner import plan_steps

    steps = [("convert", {}), ("edit", {"dims": {"x:0": 1}}),
             ("export-docker", {"source": "edited"})]  # fmt: skip
    (_, convert, _), (_, edit, out), (_, export, _) = plan_steps("run", {"path": "m.pt2"}, steps)
    assert edit["model"] == convert["output"] == "run/m/convert/m.onnx"
    assert str(out) == "run/m/edit" and edit["dims"] == {"x:0": 1}
    assert export["model"] == {"path": "run/m/edit/m.edited.onnx"} and export["converted"] is None
