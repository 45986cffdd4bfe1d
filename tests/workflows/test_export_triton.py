"""Triton model repository export (issue #14): config.pbtxt parses as Triton's own ModelConfig
(tritonclient's), its dims and datatypes are the ONNX model's, and the repository's model answers
as the original, alone and in a batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper

from workflows.errors import ExportError
from workflows.exporters.triton import (
    TritonExportOptions,
    config_problems,
    export_triton,
)
from workflows.formats import onnx_format

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")


def _triton_config(folder: Path, name: str):
    """config.pbtxt parsed with Triton's own schema (tritonclient's generated module)."""
    text = (folder / name / "config.pbtxt").read_text()
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _dtype(config_type: int) -> str:
    return model_config_pb2.DataType.Name(config_type)


def _save(path: Path, inputs, outputs, nodes, initializers=()) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def test_dynamic_batch_model(tmp_path, sample_dir):
    out = tmp_path / "repo"
    result = export_triton(
        TritonExportOptions(
            model={"path": str(sample_dir / "digits_cnn.pt2")},
            output=str(out),
            max_queue_delay_us=500,
            instances=2,
        )
    )
    name = result["model_name"]
    assert (out / name / "1" / "model.onnx").is_file()
    config = _triton_config(out, name)
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 8
    [x] = config.input
    [y] = config.output
    assert (x.name, _dtype(x.data_type), list(x.dims)) == ("x", "TYPE_FP32", [1, 8, 8])
    assert (_dtype(y.data_type), list(y.dims)) == ("TYPE_FP32", [10])
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].count == 2
    assert config.version_policy.latest.num_versions == 1
    # The signature the config states is the ONNX model's own.
    served = onnx_format.load(out / name / "1" / "model.onnx")
    assert [s.name for s in served.outputs] == [y.name]
    assert served.inputs[0].shape[1:] == (1, 8, 8) and served.inputs[0].is_dynamic(0)
    check = result["validation"]["repository_model"]
    assert check["max_abs_error"] <= 1e-4 and check["batch"]["max_abs_error"] <= 1e-5
    readme = (out / "README.md").read_text()
    assert '-v "$PWD":/models' in readme and f"/v2/models/{name}/infer" in readme
    assert "only the Python backend" in " ".join(readme.split())


def test_static_batch_model_with_two_datatypes(tmp_path):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])
    k = helper.make_tensor_value_info("offset", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("shifted", TensorProto.FLOAT, [1, 3, 4, 4])
    path = _save(
        tmp_path / "static.onnx",
        [x, k],
        [y],
        [
            helper.make_node("Cast", ["offset"], ["offset_f"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["image", "offset_f"], ["shifted"]),
        ],
    )
    out = tmp_path / "repo"
    result = export_triton(TritonExportOptions(model={"path": str(path)}, output=str(out)))
    config = _triton_config(out, "static")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    got = {t.name: (_dtype(t.data_type), list(t.dims)) for t in config.input}
    assert got == {"image": ("TYPE_FP32", [1, 3, 4, 4]), "offset": ("TYPE_INT64", [1])}
    assert [(t.name, list(t.dims)) for t in config.output] == [("shifted", [1, 3, 4, 4])]
    assert "batch" not in result["validation"]["repository_model"]
    assert "fixed first dimension" in (out / "README.md").read_text()


def test_dynamic_inner_dimensions_are_minus_one(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])
    path = _save(tmp_path / "relu.onnx", [x], [y], [helper.make_node("Relu", ["x"], ["y"])])
    out = tmp_path / "repo"
    export_triton(
        TritonExportOptions(model={"path": str(path)}, output=str(out), dim_values={"h": 5})
    )
    config = _triton_config(out, "relu")
    assert config.max_batch_size == 8
    assert list(config.input[0].dims) == [3, -1, -1] == list(config.output[0].dims)


def test_a_model_whose_rows_are_not_independent_is_refused_batching(tmp_path):
    # y = x - mean over the batch: a batch of two answers differently from each sample alone.
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    path = _save(
        tmp_path / "mixer.onnx",
        [x],
        [y],
        [
            helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=1),
            helper.make_node("Sub", ["x", "m"], ["y"]),
        ],
        [axes],
    )
    with pytest.raises(ExportError, match=r"rows are not independent.*--max-batch-size 0"):
        export_triton(TritonExportOptions(model={"path": str(path)}, output=str(tmp_path / "a")))
    assert not (tmp_path / "a").exists()  # nothing half-written
    out = tmp_path / "b"
    export_triton(TritonExportOptions(model={"path": str(path)}, output=str(out), max_batch_size=0))
    assert _triton_config(out, "mixer").max_batch_size == 0


def test_labels_go_to_the_classification_extension(tmp_path, sample_dir):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"digit {i}" for i in range(10)))
    out = tmp_path / "repo"
    result = export_triton(
        TritonExportOptions(
            model={"path": str(sample_dir / "digits_cnn.pt2")}, output=str(out), labels=str(labels)
        )
    )
    name = result["model_name"]
    assert _triton_config(out, name).output[0].label_filename == "labels.txt"
    assert (out / name / "labels.txt").read_text().splitlines()[3] == "digit 3"
    labels.write_text("cat\ndog\n")
    with pytest.raises(ExportError, match=r"2 labels, but output .* shape \[1, 10\]"):
        export_triton(
            TritonExportOptions(
                model={"path": str(sample_dir / "digits_cnn.pt2")},
                output=str(tmp_path / "again"),
                labels=str(labels),
            )
        )


def test_config_problems_are_what_triton_would_refuse(tmp_path, sample_dir):
    out = tmp_path / "repo"
    result = export_triton(
        TritonExportOptions(model={"path": str(sample_dir / "digits_cnn.pt2")}, output=str(out))
    )
    name = result["model_name"]
    text = (out / name / "config.pbtxt").read_text()
    served = onnx_format.load(out / name / "1" / "model.onnx")
    ins, outs = served.inputs, served.outputs
    assert config_problems(text, ins, outs) == []
    wrong_dims = text.replace("dims: 8\n  dims: 8", "dims: 8\n  dims: 9", 1)
    assert config_problems(wrong_dims, ins, outs) == [
        "input 'x' has dims [1, 8, 9], the model's are [1, 8, 8] (batch dimension left out)"
    ]
    wrong_type = text.replace("TYPE_FP32", "TYPE_INT32", 1)
    assert config_problems(wrong_type, ins, outs) == [
        "input 'x' is TYPE_INT32, the model's is float32"
    ]
    renamed = text.replace('name: "x"', 'name: "input"')
    assert any("'input' is not in the model" in p for p in config_problems(renamed, ins, outs))
    unbatched = text.replace("max_batch_size: 8", "max_batch_size: 0")
    assert "has dims [10], the model's are [-1, 10]" in " ".join(
        config_problems(unbatched, ins, outs)
    )
    [parse_error] = config_problems(text + "bogus_field: 3\n", ins, outs)
    assert parse_error.startswith("config.pbtxt does not parse as a ModelConfig")


def test_the_schema_subset_is_tritons_own():
    """Every message, field and enum value Dockyard's model_config.proto declares is Triton's:
    same names, numbers, types and cardinality (text format matches by name)."""
    from workflows.exporters.protos import model_config_pb2 as ours

    theirs = model_config_pb2

    def compare(mine, upstream, where):
        for field in mine.fields:
            other = upstream.fields_by_name.get(field.name)
            assert other is not None, f"{where}.{field.name} is not Triton's"
            assert (field.number, field.type, field.is_repeated) == (
                other.number,
                other.type,
                other.is_repeated,
            ), f"{where}.{field.name}"
            if field.message_type is not None:
                compare(field.message_type, other.message_type, f"{where}.{field.name}")
            if field.enum_type is not None:
                values = {v.name: v.number for v in other.enum_type.values}
                assert {v.name: v.number for v in field.enum_type.values}.items() <= values.items()

    compare(ours.ModelConfig.DESCRIPTOR, theirs.ModelConfig.DESCRIPTOR, "ModelConfig")


def test_the_cli_writes_and_describes_a_repository(tmp_path, sample_dir, capsys):
    from workflows.cli import main

    out = tmp_path / "repo"
    code = main(["export", "triton", str(sample_dir / "digits_cnn.pt2"), "-o", str(out)])
    said = capsys.readouterr().out
    assert code == 0 and (out / "digits-cnn" / "config.pbtxt").is_file()
    assert "max_batch_size 8, dynamic batching on" in said
    assert "a batch of 2 gives each sample's own answer" in said
    assert np.isfinite(float(said.split("matches the original (max abs error ")[1].split(")")[0]))
