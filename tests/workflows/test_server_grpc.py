"""The exported server's gRPC API, called with the clients its users have: `tritonclient.grpc`
(Open Inference Protocol v2) and `tensorflow-serving-api`'s PredictionService stubs. Both are
test-only clients installed with --no-deps (tests/clients.txt)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tritonclient_grpc
from google.protobuf import descriptor_pb2
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from workflows.errors import ExportError
from workflows.exporters.docker import DockerExportOptions, export_docker, exported_server
from workflows.exporters.model_versions import model_folder

from .served import Server

API_KEY = "grpc-key-42"
OUT = "linear_1"  # the sample's output, as torch.export names it
METADATA = [("authorization", f"Bearer {API_KEY}")]
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "resources" / "templates" / "docker"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, sample_dir):
    out = tmp_path_factory.mktemp("grpc") / "digits"
    export_docker(
        DockerExportOptions(model={"path": str(sample_dir / "digits_cnn.pt2")}, output=str(out))
    )
    return out


@pytest.fixture(scope="module")
def server(exported):
    s = Server(exported, API_KEY=API_KEY, MAX_BODY_BYTES=str(64 * 1024), MAX_BATCH="16")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def digits(sample_dir, exported):
    x = np.load(sample_dir / "digits_test.npz")["x"][:12].astype(np.float32)
    sess = ort.InferenceSession(
        str(model_folder(exported) / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return x, sess.run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def triton(server):
    client = tritonclient_grpc.InferenceServerClient(server.grpc_target)
    yield client
    client.close()


def _headers() -> dict[str, str]:
    return dict(METADATA)


def test_every_oip_method_with_tritonclient(triton, digits):
    x, want = digits
    assert triton.is_server_live()  # no key needed, as /v2/health/live
    assert triton.is_server_ready()
    assert triton.is_model_ready("digits-cnn", headers=_headers())
    assert not triton.is_model_ready("digits-cnn", "7", headers=_headers())
    meta = triton.get_server_metadata(headers=_headers(), as_json=True)
    assert meta["name"] == "dockyard-onnxruntime"
    assert "binary_tensor_data" in meta["extensions"]
    meta = triton.get_model_metadata("digits-cnn", headers=_headers(), as_json=True)
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": ["-1", "1", "8", "8"]}]
    assert meta["outputs"][0]["shape"] == ["-1", "10"]
    assert meta["platform"] == "onnxruntime_onnx"

    for rows in (1, 5, 12):  # raw_input_contents, as tritonclient sends
        tensor = tritonclient_grpc.InferInput("x", [rows, 1, 8, 8], "FP32")
        tensor.set_data_from_numpy(x[:rows])
        result = triton.infer(
            "digits-cnn",
            [tensor],
            outputs=[tritonclient_grpc.InferRequestedOutput(OUT)],
            request_id=f"r{rows}",
            headers=_headers(),
        )
        got = result.as_numpy(OUT)
        assert got.shape == (rows, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got, want[:rows], rtol=0, atol=1e-5)
        assert result.get_response().id == f"r{rows}"


def test_the_standard_health_service_answers_without_a_key(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in (
            "",
            "inference.GRPCInferenceService",
            "tensorflow.serving.PredictionService",
        ):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as caught:
            stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_typed_contents_give_the_raw_answer(server, digits):
    x, want = digits
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        request = service_pb2.ModelInferRequest(model_name="digits-cnn")
        tensor = request.inputs.add(name="x", datatype="FP32", shape=[3, 1, 8, 8])
        tensor.contents.fp32_contents.extend(x[:3].ravel().tolist())
        response = stub.ModelInfer(request, metadata=METADATA)
    out = response.outputs[0]
    assert out.name == OUT and out.datatype == "FP32" and list(out.shape) == [3, 10]
    got = np.frombuffer(response.raw_output_contents[0], "<f4").reshape(3, 10)
    np.testing.assert_allclose(got, want[:3], rtol=0, atol=1e-5)


def _oip_error(server: Server, request, metadata=METADATA) -> tuple[grpc.StatusCode, str]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.ModelInfer(request, metadata=metadata)
    return caught.value.code(), caught.value.details()


def _request(shape=(1, 1, 8, 8), datatype="FP32", name="x", raw=None, model="digits-cnn"):
    request = service_pb2.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=datatype, shape=list(shape))
    size = int(np.prod(shape)) * 4
    request.raw_input_contents.append(raw if raw is not None else bytes(size))
    return request


@pytest.mark.parametrize(
    ("request_kwargs", "metadata", "code", "says"),
    [
        ({}, [], "UNAUTHENTICATED", "API key"),
        ({}, [("authorization", "Bearer wrong")], "UNAUTHENTICATED", "API key"),
        ({"shape": (1, 1, 8, 9)}, METADATA, "INVALID_ARGUMENT", "shape"),
        ({"datatype": "FP64"}, METADATA, "INVALID_ARGUMENT", "datatype FP64"),
        ({"name": "y"}, METADATA, "INVALID_ARGUMENT", "unknown input 'y'"),
        ({"raw": b"\x00" * 7}, METADATA, "INVALID_ARGUMENT", "needs 256 bytes"),
        ({"shape": (17, 1, 8, 8)}, METADATA, "INVALID_ARGUMENT", "MAX_BATCH"),
        ({"model": "other"}, METADATA, "NOT_FOUND", "'other' is not served"),
    ],
)
def test_bad_oip_requests_get_a_client_error(server, request_kwargs, metadata, code, says):
    got, details = _oip_error(server, _request(**request_kwargs), metadata)
    assert got.name == code and says in details


def test_other_bad_oip_requests(server):
    two_raw = _request()
    two_raw.raw_input_contents.append(b"")
    code, details = _oip_error(server, two_raw)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "every input" in details
    typed_fp16 = service_pb2.ModelInferRequest(model_name="digits-cnn")
    typed_fp16.inputs.add(name="x", datatype="FP16", shape=[1, 1, 8, 8])
    code, details = _oip_error(server, typed_fp16)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "FP32" in details
    short = service_pb2.ModelInferRequest(model_name="digits-cnn")
    short.inputs.add(name="x", datatype="FP32", shape=[1, 1, 8, 8]).contents.fp32_contents.extend(
        [1.0] * 5
    )
    code, details = _oip_error(server, short)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "needs 64 values" in details
    unknown_output = _request()
    unknown_output.outputs.add(name="nope")
    code, details = _oip_error(server, unknown_output)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "nope" in details
    # Over MAX_BODY_BYTES (64 KiB): grpc's own message-size limit refuses it.
    code, _ = _oip_error(server, _request(raw=bytes(80 * 1024)))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_tritonclient_sees_errors_as_exceptions(triton):
    with pytest.raises(InferenceServerException) as caught:
        triton.get_model_metadata("digits-cnn")  # no key
    assert caught.value.status() == "StatusCode.UNAUTHENTICATED"


def test_concurrent_grpc_and_rest_clients_get_their_own_rows(server, digits):
    x, want = digits

    def one(i: int) -> float:
        rows = 1 + i % 4
        start = i % 8
        chunk = x[start : start + rows]
        if i % 2:
            status, body = server.call(
                "POST",
                "/v2/models/digits-cnn/infer",
                {
                    "inputs": [
                        {
                            "name": "x",
                            "shape": list(chunk.shape),
                            "datatype": "FP32",
                            "data": chunk.ravel().tolist(),
                        }
                    ]
                },
                headers={"Authorization": f"Bearer {API_KEY}"},
            )
            assert status == 200
            got = np.asarray(body["outputs"][0]["data"], np.float32).reshape(rows, 10)
        else:
            client = tritonclient_grpc.InferenceServerClient(server.grpc_target)
            tensor = tritonclient_grpc.InferInput("x", list(chunk.shape), "FP32")
            tensor.set_data_from_numpy(chunk)
            got = client.infer("digits-cnn", [tensor], headers=_headers()).as_numpy(OUT)
            client.close()
        return float(np.abs(got - want[start : start + rows]).max())

    with ThreadPoolExecutor(32) as pool:
        worst = max(pool.map(one, range(64)))
    assert worst <= 1e-5


def test_metrics_count_grpc_calls_by_method_and_status(server, triton):
    triton.is_server_live()
    with pytest.raises(InferenceServerException):
        triton.get_model_metadata("digits-cnn")
    _, text = server.call("GET", "/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
    live = '/inference.GRPCInferenceService/ServerLive",status="OK"'
    refused = '/inference.GRPCInferenceService/ModelMetadata",status="UNAUTHENTICATED"'
    assert live in text and refused in text


def test_a_taken_grpc_port_stops_start_up_with_its_name(exported):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with (
            pytest.raises(ExportError) as caught,
            exported_server(exported, {"GRPC_PORT": str(port)}, timeout=60),
        ):
            pass
    said = str(caught.value)
    assert f"127.0.0.1:{port}" in said and "GRPC_PORT=0" in said


# --- TF Serving's PredictionService -------------------------------------------------------------


@pytest.fixture(scope="module")
def tf_serving(server):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc_target)
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def test_tf_serving_predict_unchanged_client_code(tf_serving, digits):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    x, want = digits
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits-cnn"
    request.model_spec.signature_name = "serving_default"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(x[:4]))  # tensor_content
    response = tf_serving.Predict(request, 10.0, metadata=METADATA)
    got = tf.make_ndarray(response.outputs[OUT])
    assert got.shape == (4, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, want[:4], rtol=0, atol=1e-5)
    assert response.model_spec.name == "digits-cnn"
    assert response.model_spec.version.value == 1

    typed = predict_pb2.PredictRequest()  # float_val instead of tensor_content
    typed.model_spec.name = "digits-cnn"
    typed.inputs["x"].dtype = tf.float32.as_datatype_enum
    for d in (2, 1, 8, 8):
        typed.inputs["x"].tensor_shape.dim.add(size=d)
    typed.inputs["x"].float_val.extend(x[:2].ravel().tolist())
    typed.output_filter.append(OUT)
    got = tf.make_ndarray(tf_serving.Predict(typed, 10.0, metadata=METADATA).outputs[OUT])
    np.testing.assert_allclose(got, want[:2], rtol=0, atol=1e-5)


def test_tf_serving_get_model_metadata(tf_serving):
    from tensorflow_serving.apis import get_model_metadata_pb2

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "digits-cnn"
    request.metadata_field.append("signature_def")
    response = tf_serving.GetModelMetadata(request, 10.0, metadata=METADATA)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    sig = signatures.signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert [d.size for d in sig.inputs["x"].tensor_shape.dim] == [-1, 1, 8, 8]
    assert sig.inputs["x"].dtype == 1  # DT_FLOAT
    assert [d.size for d in sig.outputs[OUT].tensor_shape.dim] == [-1, 10]


def test_bad_tf_serving_requests_get_a_client_error(tf_serving):
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

    def predict(metadata=METADATA, **changes):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = changes.get("name", "digits-cnn")
        request.model_spec.signature_name = changes.get("signature", "")
        array = changes.get("array", np.zeros((1, 1, 8, 8), np.float32))
        request.inputs[changes.get("input", "x")].CopyFrom(tf.make_tensor_proto(array))
        with pytest.raises(grpc.RpcError) as caught:
            tf_serving.Predict(request, 10.0, metadata=metadata)
        return caught.value.code().name, caught.value.details()

    assert predict(metadata=[])[0] == "UNAUTHENTICATED"
    assert predict(name="other")[0] == "NOT_FOUND"
    code, says = predict(signature="classify")
    assert code == "INVALID_ARGUMENT" and "serving_default" in says
    code, says = predict(array=np.zeros((1, 1, 8, 8), np.float64))
    assert code == "INVALID_ARGUMENT" and "DT_DOUBLE" in says and "DT_FLOAT" in says
    code, says = predict(array=np.zeros((1, 8, 8), np.float32))
    assert code == "INVALID_ARGUMENT" and "shape" in says
    code, says = predict(input="images")
    assert code == "INVALID_ARGUMENT" and "unknown input 'images'" in says

    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "digits-cnn"
    with pytest.raises(grpc.RpcError) as caught:
        tf_serving.GetModelMetadata(request, 10.0, metadata=METADATA)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "signature_def" in caught.value.details()


def test_the_exports_client_checks_every_protocol_and_catches_a_wrong_answer(server, exported):
    def client(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "client.py", "--url", server.base, "--grpc", server.grpc_target,
             "--api-key", API_KEY, *args],
            cwd=exported, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    r = client()
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["rest", "rest-binary", "grpc", "tf-serving"]
    assert all("max abs diff" in line for line in lines)
    expected = json.loads((exported / "sample_response.json").read_text())
    expected["outputs"][0]["data"][0] += 0.01
    wrong = exported.parent / "wrong_response.json"
    wrong.write_text(json.dumps(expected))
    r = client("--protocol", "grpc", "--expected", str(wrong))
    assert r.returncode == 1 and "FAILED" in r.stdout
    r = client("--protocol", "tf-serving", "--api-key", "wrong")
    assert r.returncode != 0 and "UNAUTHENTICATED" in r.stderr


# --- the hand-written .proto files against the clients' own definitions -------------------------


def _our_descriptors() -> descriptor_pb2.FileDescriptorSet:
    """The server's .proto files compiled by protoc into a descriptor set (a separate pool: the
    same message names as the clients' would clash in this process's default pool)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        code = f"""
import grpc_tools, sys
from workflows.exporters.model_versions import model_folder
from pathlib import Path
from grpc_tools import protoc
root = Path({str(TEMPLATE)!r})
include = Path(grpc_tools.__file__).parent / "_proto"
files = sorted(p.relative_to(root).as_posix() for p in (root / "server" / "protos").glob("*.proto"))
sys.exit(protoc.main(["protoc", f"-I{{root}}", f"-I{{include}}", "--include_imports",
                      "--descriptor_set_out={out}", *files]))
"""
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _messages(files) -> dict[str, descriptor_pb2.DescriptorProto]:
    found = {}

    def walk(prefix: str, messages) -> None:
        for m in messages:
            found[f"{prefix}.{m.name}"] = m
            walk(f"{prefix}.{m.name}", m.nested_type)

    for f in files:
        walk(f.package, f.message_type)
    return found


def _upstream_files() -> list[descriptor_pb2.FileDescriptorProto]:
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        model_pb2,
        predict_pb2,
        prediction_service_pb2,
    )

    modules = [
        service_pb2,
        tensor_pb2,
        types_pb2,
        meta_graph_pb2,
        model_pb2,
        predict_pb2,
        get_model_metadata_pb2,
        prediction_service_pb2,
    ]
    seen: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(file_descriptor) -> None:
        if file_descriptor.name in seen:
            return
        proto = descriptor_pb2.FileDescriptorProto()
        file_descriptor.CopyToProto(proto)
        seen[file_descriptor.name] = proto
        for dependency in file_descriptor.dependencies:
            add(dependency)

    for module in modules:
        add(module.DESCRIPTOR)
    return list(seen.values())


def test_our_protos_agree_with_the_clients_field_by_field():
    ours = _our_descriptors().file
    upstream = _upstream_files()
    theirs = _messages(upstream)
    checked = 0
    for full_name, message in _messages(ours).items():
        if full_name.startswith("google.protobuf"):
            continue
        assert full_name in theirs, f"{full_name} is not a message of the upstream protocol"
        their_fields = {f.name: f for f in theirs[full_name].field}
        for field in message.field:
            their = their_fields.get(field.name)
            assert their is not None, f"{full_name}.{field.name} is not upstream"
            assert (field.number, field.type, field.label, field.type_name) == (
                their.number,
                their.type,
                their.label,
                their.type_name,
            ), f"{full_name}.{field.name} differs from upstream"
            checked += 1
    assert checked >= 60
    their_enum = next(
        e
        for f in upstream
        for e in f.enum_type
        if (f.package, e.name) == ("tensorflow", "DataType")
    )
    our_enum = next(e for f in ours for e in f.enum_type if e.name == "DataType")
    their_values = {v.name: v.number for v in their_enum.value}
    assert {v.name: v.number for v in our_enum.value}.items() <= their_values.items()
    # Every method we serve exists upstream with the same request and response types.
    their_methods = {
        f"{f.package}.{s.name}/{m.name}": (m.input_type, m.output_type)
        for f in upstream
        for s in f.service
        for m in s.method
    }
    for f in ours:
        for s in f.service:
            for m in s.method:
                key = f"{f.package}.{s.name}/{m.name}"
                assert their_methods.get(key) == (m.input_type, m.output_type), key


def test_generated_modules_are_up_to_date():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_protos.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
