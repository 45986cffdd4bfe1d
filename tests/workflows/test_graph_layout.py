"""The native graph view's layout (issue 16, item 3): layered, edges routed through the layers
they cross, repeated blocks collapsed by name scope, a 10,000-node graph laid out whole."""

from __future__ import annotations

import itertools
import subprocess
import sys

import onnx
import pytest

from workflows.graph_layout import empty, layout, polyline, scope, structural_blocks
from workflows.steps.layout import LayoutOptions, layout_model, module_path
from workflows.synthetic import branching_model


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    path = tmp_path_factory.mktemp("layout") / "branching.onnx"
    onnx.save(branching_model(10_000), str(path))
    return path


def _nodes(path):
    proto = onnx.load(str(path), load_external_data=False)
    return [{"name": n.name, "op_type": n.op_type, "inputs": list(n.input),
             "outputs": list(n.output)} for n in proto.graph.node]  # fmt: skip


def test_scope_levels():
    assert scope("/model.22/cv2/conv/Conv", 1) == "model.22"
    assert scope("/model.22/cv2/conv/Conv", 2) == "model.22/cv2"
    assert scope("stage1/block3/conv1", 3) is None  # the last part is the node's own name
    assert scope("node_conv2d", 1) is None


def _boxes(result):
    """The layout's columns as one dict per box (easier to assert on)."""
    cols = result["boxes"]
    return [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]


def test_every_node_and_edge_of_a_10k_graph_is_laid_out_in_layers(big):
    nodes = _nodes(big)
    result = layout(nodes)
    boxes = _boxes(result)
    assert len(nodes) >= 10_000 and len(boxes) == len(nodes)
    assert result["node_box"] == list(range(len(nodes)))
    producer = {t: i for i, n in enumerate(nodes) for t in n["outputs"]}
    links = {(producer[t], j) for j, n in enumerate(nodes) for t in n["inputs"] if t in producer}
    edges = result["edges"]
    assert set(zip(edges["source"], edges["target"], strict=True)) == links  # not a chain
    assert len(links) > len(nodes) * 1.2
    for i, (a, b) in enumerate(zip(edges["source"], edges["target"], strict=True)):
        points = polyline(edges, i)
        assert boxes[b]["y"] > boxes[a]["y"]  # data flows down, layer by layer
        assert points[:2] == [boxes[a]["x"], boxes[a]["y"]]
        assert points[-2:] == [boxes[b]["x"], boxes[b]["y"]]
        ys = points[1::2]
        assert ys == sorted(ys)  # bends only through the layers in between
    # No two boxes of a layer overlap.
    layers: dict[float, list[dict]] = {}
    for box in boxes:
        layers.setdefault(box["y"], []).append(box)
    for row in layers.values():
        row.sort(key=lambda b: b["x"])
        for left, right in itertools.pairwise(row):
            assert left["x"] + left["w"] / 2 <= right["x"] - right["w"] / 2
    assert all(0 <= b["x"] <= result["width"] and 0 <= b["y"] <= result["height"] for b in boxes)


def test_repeated_blocks_collapse_and_one_expands(big):
    nodes = _nodes(big)
    blocks = layout(nodes, depth=2)
    groups = [b for b in _boxes(blocks) if b["group"]]
    assert len(blocks["node_box"]) == len(nodes)
    assert len(blocks["boxes"]["label"]) == len(groups) > 600  # every op is in a block
    assert groups[0]["label"] == "stage1/block1 · 6 ops"  # a residual block
    assert groups[1]["label"] == "stage1/block2 · 11 ops"  # an inception-style block
    assert sorted(i for g in groups for i in g["members"]) == list(range(len(nodes)))
    assert all(i in blocks["boxes"]["members"][box] for i, box in enumerate(blocks["node_box"]))
    opened = layout(nodes, depth=2, expanded=["stage1/block2"])
    labels = opened["boxes"]["label"]
    assert "stage1/block2 · 11 ops" not in labels
    # Its own sub-blocks (branch2: 3 ops, branch3: 2), branch1's one Conv, its 5 merge ops.
    assert {"stage1/block2/branch2 · 3 ops", "stage1/block2/branch3 · 2 ops"} <= set(labels)
    assert len(labels) == len(blocks["boxes"]["label"]) - 1 + 8
    assert empty()["boxes"]["label"] == [] and empty()["edges"]["offsets"] == [0]


def test_the_step_reads_the_file_and_never_imports_matplotlib(big):
    result = layout_model(LayoutOptions(model=str(big), depth=1))
    assert result["names"][0] == "stage1/block1/conv1" and result["boxes"]["op"][0] == "group"
    assert len(result["boxes"]["label"]) == len({scope(n, 1) for n in result["names"]})
    code = ("import sys; from workflows.steps.layout import run; from workflows.progress import "
            f"Progress; run({{'model': {str(big)!r}}}, Progress()); "
            "print('matplotlib' in sys.modules, 'igraph' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stderr


def test_a_graph_without_name_scopes_collapses_into_its_blocks(big):
    """Names like Conv_12 say nothing: blocks come from the structure. Each residual block
    (6 ops from the Conv after one fan-out to the Relu that fans out next) is one box, the
    inception-style ones are two (branches to their merge; the gate after it)."""
    nodes = _nodes(big)[:1_200]
    scoped = [scope(n["name"], 2) for n in nodes]
    anonymous = [{**n, "name": f"{n['op_type']}_{i}"} for i, n in enumerate(nodes)]
    blocks = structural_blocks(anonymous)
    assert all(b is not None for b in blocks[:-1])  # the last node: a block of its own
    members: dict[str, list[int]] = {}
    for i, b in enumerate(blocks):
        members.setdefault(b, []).append(i)
    residual = {s for s in scoped if s and int(s.split("block")[-1]) % 2}  # block1, block3 …
    for name in residual - {scoped[-1]}:
        group = [i for i, s in enumerate(scoped) if s == name]
        assert len(group) == 6 and len({blocks[i] for i in group}) == 1
        assert members[blocks[group[0]]] == group  # exactly the block, nothing more
    inception = {s for s in scoped if s and not int(s.split("block")[-1]) % 2} - {scoped[-1]}
    for name in inception:
        group = [i for i, s in enumerate(scoped) if s == name]
        assert [len(members[b]) for b in dict.fromkeys(blocks[i] for i in group)] == [8, 3]

    laid = layout(anonymous, depth=1)
    assert len(laid["boxes"]["label"]) == len(set(blocks)) < len(nodes) / 4
    assert laid["boxes"]["label"][0] == "block0 · 6 ops"
    opened = layout(anonymous, depth=1, expanded=["block0"])
    assert opened["boxes"]["label"][:7] == ["Conv", "Relu", "Conv", "Sigmoid", "Add", "Relu",
                                            "block1 · 8 ops"]  # fmt: skip
    # A plain chain has no blocks: every node stays a box.
    chain = [{"name": f"Relu_{i}", "op_type": "Relu", "inputs": [f"t{i}"], "outputs": [f"t{i + 1}"]}
             for i in range(50)]  # fmt: skip
    assert structural_blocks(chain) == [None] * 50
    assert len(layout(chain, depth=1)["boxes"]["label"]) == 50


def test_pytorch_module_paths_group_the_converted_sample(tmp_path, sample_dir):
    """PyTorch's exporter names nodes node_conv2d_1 and records each node's module in its
    metadata; the conversion keeps that (and drops the stack traces, which carry local paths)."""
    from workflows.formats import load_model
    from workflows.steps.convert import convert_model

    path = tmp_path / "digits.onnx"
    convert_model(load_model(sample_dir / "digits_cnn.pt2"), path)
    proto = onnx.load(str(path))
    keys = {p.key for n in proto.graph.node for p in n.metadata_props}
    assert keys == {"pkg.torch.onnx.name_scopes"}
    assert module_path(proto.graph.node[0]) == ["features", "features.0"]
    result = layout_model(LayoutOptions(model=str(path), depth=1))
    assert result["boxes"]["label"] == ["features · 5 ops", "classifier · 4 ops"]
    assert result["names"][0] == "node_conv2d"
    deeper = layout_model(LayoutOptions(model=str(path), depth=1, expanded=["features"]))
    assert deeper["boxes"]["label"] == ["Conv", "Relu", "Conv", "Relu", "MaxPool",
                                        "classifier · 4 ops"]  # fmt: skip
    # The metadata is read as a literal, never run.
    node = onnx.helper.make_node("Relu", ["a"], ["b"], name="r")
    node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value="__import__('os').getcwd()")
    assert module_path(node) == []
