"""Makers of the hostile and broken model files that tests/corpus/models.yaml names.

Each takes the folder to write in (and the entry's `args`) and returns the path to load. A file
whose loading would run code writes `MARKER` in that folder when the code runs.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import numpy as np

from tests.workflows import model_factory as mf

SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "sample"
MARKER = "code_ran.txt"


class RunsCode:
    """A pickle payload that writes a marker file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


# -- generic bytes --------------------------------------------------------------------------
def empty(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"")
    return path


def random_bytes(folder: Path, name: str, size: int = 4096) -> Path:
    path = folder / name
    path.write_bytes(np.random.default_rng(size).bytes(size))
    return path


def zeros(folder: Path, name: str, size: int = 4096) -> Path:
    path = folder / name
    path.write_bytes(bytes(size))
    return path


def text(folder: Path, name: str, content: str = "not a model\n") -> Path:
    path = folder / name
    path.write_text(content)
    return path


def folder_named(folder: Path, name: str) -> Path:
    path = folder / name
    path.mkdir()
    (path / "notes.txt").write_text("hello")
    return path


def valid(folder: Path, kind: str) -> Path:
    """A good model of `kind` (the control entries: the corpus checks these still open)."""
    makers = {
        "onnx": mf.save_onnx,
        "onnx_external": mf.save_onnx_external,
        "torchscript": mf.save_torchscript,
        "pt2": lambda f: SAMPLE / "digits_cnn.pt2",
        "keras": mf.save_keras,
        "h5": lambda f: mf.save_keras(f, ".h5"),
        "savedmodel": mf.save_savedmodel,
        "tflite": mf.save_tflite,
        "skops": mf.save_skops,
        "skops_forest": lambda f: mf.save_skops(f, "forest"),
    }
    return makers[kind](folder)


def truncated(folder: Path, kind: str, keep: float = 0.5) -> Path:
    """A good model of `kind` cut to `keep` of its bytes (a download cut short)."""
    good = valid(folder, kind)
    path = folder / f"truncated{''.join(good.suffixes[-1:])}"
    data = good.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def flipped(folder: Path, kind: str, every: int = 97) -> Path:
    """A good model of `kind` with a byte in every `every` inverted (a damaged copy)."""
    good = valid(folder, kind)
    data = bytearray(good.read_bytes())
    for i in range(64, len(data), every):
        data[i] ^= 0xFF
    path = folder / f"damaged{good.suffix}"
    path.write_bytes(bytes(data))
    return path


def flip_at(folder: Path, kind: str, where: float = 0.5) -> Path:
    """A good model of `kind` with the one byte at `where` (0..1) of it inverted."""
    good = valid(folder, kind)
    data = bytearray(good.read_bytes())
    data[int(where * (len(data) - 1))] ^= 0xFF
    path = folder / f"one_byte{good.suffix}"
    path.write_bytes(bytes(data))
    return path


def mutate(data: bytes, edits: list[tuple[str, float, bytes]]) -> bytes:
    """`data` with each edit applied: (flip | insert | cut | zero, where 0..1, payload)."""
    out = bytearray(data)
    for kind, where, payload in edits:
        at = int(where * max(len(out) - 1, 0))
        if kind == "flip":
            for i, b in enumerate(payload):
                if at + i < len(out):
                    out[at + i] ^= b or 0xFF
        elif kind == "insert":
            out[at:at] = payload
        elif kind == "cut":
            del out[at:]
        else:
            out[at : at + len(payload)] = bytes(len(payload))
    return bytes(out)


def mutated(folder: Path, kind: str, edits: list[list]) -> Path:
    """A good model of `kind` with the fuzzer's `edits` applied (payloads written in hex)."""
    good = valid(folder, kind)
    data = mutate(good.read_bytes(), [(k, w, bytes.fromhex(h)) for k, w, h in edits])
    path = folder / f"mutant{good.suffix}"
    path.write_bytes(data)
    return path


# -- ONNX -----------------------------------------------------------------------------------
def onnx_external_location(folder: Path, location: str) -> Path:
    """An ONNX model whose weights claim to live at `location` (outside its folder, absent…)."""
    import onnx

    (folder / "m").mkdir()
    (folder / "secret.txt").write_text("private")
    model = onnx.load(str(mf.save_onnx(folder)))
    for t in model.graph.initializer:
        if t.name == "fc":
            t.ClearField("raw_data")
            t.ClearField("float_data")
            t.data_location = onnx.TensorProto.EXTERNAL
            t.external_data.add(key="location", value=location)
            t.external_data.add(key="length", value="4096")
    path = folder / "m" / "hostile.onnx"
    onnx.save(model, str(path))
    return path


def onnx_unknown_op(folder: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("FancyActivation", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    path = folder / "custom_op.onnx"
    onnx.save(model, str(path))
    return path


def onnx_edit(folder: Path, edit: str) -> Path:
    """`save_onnx`'s model with one thing made wrong (no checker run: the file is as a hostile
    or buggy exporter would write it)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(mf.save_onnx(folder)))
    g = model.graph
    if edit == "opset_from_the_future":
        model.opset_import[0].version = 99
    elif edit == "no_outputs":
        del g.output[:]
    elif edit == "no_inputs_no_nodes":
        del g.node[:]
        del g.input[:]
    elif edit == "dangling_input":
        g.node[1].input[0] = "nowhere"
    elif edit == "huge_dims":
        g.input[0].type.tensor_type.shape.dim[2].dim_value = 2**62
    elif edit == "negative_dims":
        g.input[0].type.tensor_type.shape.dim[2].dim_value = -5
    elif edit == "cycle":
        g.node[0].input[0] = "y"
        g.input[0].name = "unused"
    elif edit == "ir_version_0":
        model.ir_version = 0
    elif edit == "string_input":
        g.input[0].type.tensor_type.elem_type = onnx.TensorProto.STRING
    elif edit == "duplicate_names":
        g.node[1].output[0] = "c"
    elif edit == "function_recursion":
        f = helper.make_function(
            "local",
            "Loop",
            ["a"],
            ["b"],
            [helper.make_node("Loop", ["a"], ["b"], domain="local")],
            [helper.make_opsetid("", 17)],
        )
        model.functions.append(f)
        g.node[1].op_type, g.node[1].domain = "Loop", "local"
        model.opset_import.append(helper.make_opsetid("local", 1))
    else:
        raise ValueError(edit)
    path = folder / f"{edit}.onnx"
    onnx.save(model, str(path))
    return path


# -- PyTorch --------------------------------------------------------------------------------
def malicious_pth(folder: Path) -> Path:
    import torch

    path = folder / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": RunsCode(folder / MARKER)}, str(path))
    return path


def malicious_pickle_named(folder: Path, name: str) -> Path:
    """A plain pickle payload under a model's name (.pt, .bin, .ckpt …)."""
    import pickle

    path = folder / name
    path.write_bytes(pickle.dumps(RunsCode(folder / MARKER)))
    return path


def state_dict(folder: Path, suffix: str = ".pth") -> Path:
    return mf.save_state_dict(folder, suffix)[0]


def pt2_with(folder: Path, member: str, payload: str = "pickle") -> Path:
    """The sample .pt2 with the archive member ending in `member` replaced by `payload`."""
    import torch

    if payload == "pickle":
        buffer = io.BytesIO()
        torch.save((RunsCode(folder / MARKER),), buffer)
        data = buffer.getvalue()
    elif payload == "garbage":
        data = b"\x00garbage" * 16
    else:
        raise ValueError(payload)
    path = folder / "evil.pt2"
    replaced = False
    with zipfile.ZipFile(SAMPLE / "digits_cnn.pt2") as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename.endswith(member):
                body, replaced = data, True
            dst.writestr(item, body)
    assert replaced, f"no member ends with {member}"
    return path


def pt2_pickled_weight(folder: Path) -> Path:
    """The sample .pt2 with its first weight stored as a pickle (`use_pickle`, which
    torch.export.load unpickles with weights_only=False) that runs code."""
    import torch

    buffer = io.BytesIO()
    torch.save(RunsCode(folder / MARKER), buffer)
    path = folder / "evil_weight.pt2"
    with zipfile.ZipFile(SAMPLE / "digits_cnn.pt2") as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename.endswith("data/weights/weight_0"):
                body = buffer.getvalue()
            elif item.filename.endswith("model_weights_config.json"):
                config = json.loads(body)
                config["config"]["features.0.weight"]["use_pickle"] = True
                body = json.dumps(config).encode()
            dst.writestr(item, body)
    return path


def pt2_plus(folder: Path, extra: str, content: str = "x") -> Path:
    """The sample .pt2 plus one more member named `extra` (zip-slip names, pickles …)."""
    path = folder / "extra.pt2"
    with zipfile.ZipFile(SAMPLE / "digits_cnn.pt2") as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        dst.writestr(extra, content)
    return path


def zip_bomb(folder: Path, name: str, inner: str = "archive/data.pkl") -> Path:
    """A small zip (~250 KB) whose member inflates to 256 MiB of zeros."""
    path = folder / name
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z,
        z.open(inner, "w", force_zip64=True) as member,
    ):
        block = bytes(1 << 20)
        for _ in range(256):
            member.write(block)
    return path


def torchscript_with_payload(folder: Path) -> Path:
    """A TorchScript archive whose constants pickle is replaced by a code-running pickle."""
    import pickle

    good = mf.save_torchscript(folder)
    path = folder / "evil.torchscript.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename.endswith("data.pkl"):
                body = pickle.dumps(RunsCode(folder / MARKER), protocol=2)
            dst.writestr(item, body)
    return path


def eager_source(folder: Path, source: str) -> tuple[Path, Path]:
    """The tiny state_dict with a model file of the given source."""
    weights = state_dict(folder)
    model_file = folder / "model_def.py"
    model_file.write_text(source)
    return weights, model_file


def safetensors_header(folder: Path, length: int, header: bytes | str = b"{}") -> Path:
    """A .safetensors file whose 8-byte header length says `length`."""
    path = folder / "bad.safetensors"
    body = header.encode() if isinstance(header, str) else header
    path.write_bytes(struct.pack("<Q", length) + body)
    return path


def safetensors_lying_offsets(folder: Path) -> Path:
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4000000]}}
    )
    path = folder / "lying.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(16))
    return path


# -- Keras / TensorFlow ---------------------------------------------------------------------
def keras_lambda(folder: Path, suffix: str = ".keras") -> Path:
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda t: t * 2.0)])
    path = folder / f"lambda{suffix}"
    model.save(str(path))
    return path


def keras_config(folder: Path, edit: str) -> Path:
    """A .keras archive whose config.json is edited (unknown class, not JSON, module injection)."""
    good = mf.save_keras(folder)
    path = folder / f"{edit}.keras"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(body)
                if edit == "unknown_class":
                    config["config"]["layers"][1]["class_name"] = "NoSuchLayer"
                elif edit == "module_injection":
                    config["config"]["layers"][1]["module"] = "os"
                    config["config"]["layers"][1]["class_name"] = "system"
                elif edit == "not_json":
                    body = b"{not json"
                    dst.writestr(item, body)
                    continue
                body = json.dumps(config).encode()
            dst.writestr(item, body)
    return path


def savedmodel_edit(folder: Path, edit: str) -> Path:
    path = mf.save_savedmodel(folder)
    if edit == "random_pb":
        (path / "saved_model.pb").write_bytes(np.random.default_rng(0).bytes(2048))
    elif edit == "no_variables":
        import shutil

        shutil.rmtree(path / "variables")
    elif edit == "empty_pb":
        (path / "saved_model.pb").write_bytes(b"")
    else:
        raise ValueError(edit)
    return path


def tflite_identifier(folder: Path, ident: bytes = b"XXXX") -> Path:
    """A good .tflite whose flatbuffer file identifier (bytes 4..8) is wrong."""
    good = mf.save_tflite(folder)
    data = bytearray(good.read_bytes())
    data[4:8] = ident
    path = folder / "wrong_id.tflite"
    path.write_bytes(bytes(data))
    return path


def tflite_dimension(
    folder: Path, value: int = 16_711_681, which: str = "computed", axis: int = 0
) -> Path:
    """A good .tflite whose first computed 4-D tensor (or its input) claims `value` on `axis`,
    rewritten in place in the flatbuffer: the damage atheris found (one byte flipped, 1 ->
    0xFF0001 in a batch; 8 -> 16,724,795 in an input's height)."""
    import struct

    from ai_edge_litert import schema_py_generated as schema

    good = mf.save_tflite(folder)
    data = bytearray(good.read_bytes())
    model = schema.Model.GetRootAs(bytes(data), 0)
    graph = model.Subgraphs(0)
    inputs = set(graph.InputsAsNumpy().tolist())
    for t in range(graph.TensorsLength()):
        tensor = graph.Tensors(t)
        buffer = model.Buffers(tensor.Buffer())
        if (t in inputs) != (which == "input") or tensor.ShapeLength() != 4 or buffer.DataLength():
            continue
        tab = tensor._tab
        start = tab.Vector(tab.Offset(4)) + 4 * axis  # that dimension's int32
        struct.pack_into("<i", data, start, value)
        break
    path = folder / "huge_tensor.tflite"
    path.write_bytes(bytes(data))
    return path


def onnx_node_without_weights(folder: Path) -> Path:
    """An ONNX model whose MatMul lost its weight input (one flipped byte did it: atheris), between
    a graph input and output of known shapes: inspecting it must not crash counting MACs."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x"], ["y"], name="matmul")],
        "no_weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
    )
    path = folder / "no_weights.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def skops_damaged_tree(folder: Path) -> Path:
    """A random forest whose first tree's root points outside the tree (a crafted .skops)."""
    return mf.damage_first_tree(mf.save_skops(folder, "forest"), folder / "crafted.skops")


class Untrusted:
    """A type skops does not know: a .skops file that builds one needs the user's trust."""

    def __init__(self) -> None:
        self.value = 1


def skops_untrusted(folder: Path) -> Path:
    import skops.io as sio

    path = folder / "untrusted.skops"
    sio.dump({"model": Untrusted()}, path)
    return path
