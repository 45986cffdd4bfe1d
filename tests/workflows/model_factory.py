"""Tiny models made in code, saved in every format Dockyard reads (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TORCH_MODULE_SOURCE = """
import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))
"""


def torch_module(folder: Path):
    """Write the TinyNet source to folder/tiny_net.py and return (module instance, source path)."""
    import importlib.util

    import torch

    src = folder / "tiny_net.py"
    src.write_text(TORCH_MODULE_SOURCE)
    spec = importlib.util.spec_from_file_location("tiny_net_fixture", src)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    return mod.TinyNet().eval(), src


def save_torchscript(folder: Path) -> Path:
    import torch

    module, _ = torch_module(folder)
    path = folder / "tiny.torchscript.pt"
    torch.jit.save(torch.jit.trace(module, torch.randn(2, 3, 8, 8)), str(path))
    return path


def save_exported_program(folder: Path) -> Path:
    import torch

    module, _ = torch_module(folder)
    batch = torch.export.Dim("batch")
    program = torch.export.export(
        module, (torch.randn(2, 3, 8, 8),), dynamic_shapes={"x": {0: batch}}
    )
    path = folder / "tiny.pt2"
    torch.export.save(program, str(path))
    return path


def save_state_dict(folder: Path, suffix: str = ".pth") -> tuple[Path, Path]:
    import torch

    module, src = torch_module(folder)
    path = folder / f"tiny_weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(module.state_dict(), str(path))
    else:
        torch.save(module.state_dict(), str(path))
    return path, src


def keras_model():
    import keras

    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((8, 8, 3), name="image"),
            # Non-zero biases: a converter may fold a zero bias away and change the weight count.
            keras.layers.Conv2D(
                4, 3, padding="same", activation="relu", bias_initializer="random_normal"
            ),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5, bias_initializer="random_normal"),
        ]
    )


def save_keras(folder: Path, suffix: str = ".keras") -> Path:
    path = folder / f"tiny{suffix}"
    keras_model().save(str(path))
    return path


def save_savedmodel(folder: Path) -> Path:
    path = folder / "tiny_savedmodel"
    keras_model().export(str(path), verbose=False)
    return path


def save_tflite(folder: Path) -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model())
    path = folder / "tiny.tflite"
    path.write_bytes(converter.convert())
    return path


def save_onnx(folder: Path) -> Path:
    """A small ONNX graph made with onnx.helper (Conv -> Relu -> Gemm), dynamic batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    fc = numpy_helper.from_array(rng.standard_normal((4 * 8 * 8, 5)).astype(np.float32), "fc")
    shape = numpy_helper.from_array(np.array([-1, 256], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Reshape", ["r", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 5])],
        [w, b, fc, shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = folder / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def save_onnx_external(folder: Path, location: str = "tiny_weights.bin") -> Path:
    """`save_onnx`'s graph with its large weights (fc) in an external-data file `location`."""
    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model = onnx.load(str(save_onnx(folder)))
    # Small tensors stay inline: ONNX Runtime cannot infer Reshape's shape from external data.
    convert_model_to_external_data(model, location=location, size_threshold=1024)
    path = folder / "tiny_external.onnx"
    onnx.save(model, str(path))
    return path


def digits_split():
    """scikit-learn's digits, flattened and scaled to 0..1: (x_train, y_train, x_test, y_test)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    return train_test_split(x, d.target.astype(np.int64), test_size=0.3, random_state=0)


def save_outlier_mlp(folder: Path, outlier: float = 1e4) -> Path:
    """A digits MLP (sklearn-trained, two hidden layers) whose second hidden layer has one extra
    unit that is always `outlier` and feeds nothing. Float accuracy is unchanged; per-tensor INT8 of
    that activation wipes out its other 32 channels."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.neural_network import MLPClassifier

    x_train, _, y_train, _ = digits_split()
    clf = MLPClassifier(hidden_layer_sizes=(32, 32), max_iter=600, random_state=0)
    clf.fit(x_train, y_train)
    w1, w2, w3 = clf.coefs_
    b1, b2, b3 = clf.intercepts_
    w2 = np.concatenate([w2, np.zeros((32, 1))], axis=1)
    b2 = np.concatenate([b2, [outlier]])
    w3 = np.concatenate([w3, np.zeros((1, 10))], axis=0)
    arrays = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3, "b3": b3}
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], name="hidden1_gemm"),
        helper.make_node("Relu", ["h1"], ["h1r"], name="hidden1_relu"),
        helper.make_node("Gemm", ["h1r", "w2", "b2"], ["h2"], name="hidden2_gemm"),
        helper.make_node("Relu", ["h2"], ["h2r"], name="hidden2_relu"),
        helper.make_node("Gemm", ["h2r", "w3", "b3"], ["logits"], name="output_gemm"),
    ]
    graph = helper.make_graph(
        nodes,
        "outlier_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    path = folder / "outlier_mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def save_digit_images(folder: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """Digits ([N,1,8,8] in 0..1) as 8x8 grayscale PNGs in one subfolder per class."""
    from PIL import Image

    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        cls = folder / str(int(label))
        cls.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.round(img[0] * 255).astype(np.uint8), mode="L").save(
            cls / f"{i:04d}.png"
        )
    return folder


def save_unquantizable_linear(folder: Path, outlier: float = 1e4) -> Path:
    """A digits logistic regression (one Gemm) reading a 65th input that is always `outlier`, with
    a weight of 1 for class 0 and the bias that cancels it. Float is exact; INT8 of the input
    either rounds the pixels to 0 (min-max) or clips the 65th input and drowns class 0 (entropy,
    percentile), so only a float Gemm (0 % INT8) keeps the accuracy: the data has that column."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.linear_model import LogisticRegression

    x_train, _, y_train, _ = digits_split()
    clf = LogisticRegression(max_iter=2000).fit(x_train, y_train)
    w = np.concatenate([clf.coef_.T, np.eye(1, 10)], axis=0)  # [65, 10]
    b = clf.intercept_ - outlier * np.eye(1, 10)[0]
    inits = [
        numpy_helper.from_array(w.astype(np.float32), "w"),
        numpy_helper.from_array(b.astype(np.float32), "b"),
    ]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["logits"], name="linear")],
        "unquantizable_linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 65])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    path = folder / "unquantizable_linear.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def with_outlier_column(x: np.ndarray, outlier: float = 1e4) -> np.ndarray:
    """Digits features [N, 64] plus the constant 65th column save_unquantizable_linear reads."""
    return np.concatenate([x, np.full((len(x), 1), outlier, x.dtype)], axis=1)


def save_tf1_savedmodel(folder: Path) -> Path:
    """A TF1-style SavedModel (tf.compat.v1 graph, variables, SignatureDef; no object graph) with
    two MetaGraphs, "serve" and "train", as Estimator-era exports have: TF2's loader refuses it
    without tags, so it goes through the v1 loader. A dense softmax classifier: x [N, 8] -> probs."""
    import tensorflow as tf

    path = folder / "tf1_savedmodel"
    rng = np.random.default_rng(0)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8], name="x")
        w = tf.compat.v1.get_variable("w", initializer=rng.normal(size=(8, 16)).astype(np.float32))
        b = tf.compat.v1.get_variable("b", initializer=np.zeros(16, np.float32))
        w2 = tf.compat.v1.get_variable(
            "w2", initializer=rng.normal(size=(16, 4)).astype(np.float32)
        )
        hidden = tf.nn.relu(tf.matmul(x, w) + b)
        probs = tf.nn.softmax(tf.matmul(hidden, w2), name="probs")
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(str(path))
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"probs": probs})
            builder.add_meta_graph_and_variables(
                sess, ["serve"], signature_def_map={"serving_default": signature}
            )
            builder.add_meta_graph(["train"])
            builder.save()
    return path


def save_skops(folder: Path, kind: str = "pipeline") -> Path:
    """A scikit-learn model fitted on scikit-learn's bundled digits, saved with skops: a scaler +
    logistic regression pipeline, or a small random forest (which holds decision trees)."""
    import skops.io as sio
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    if kind == "forest":
        model = RandomForestClassifier(n_estimators=4, max_depth=5, random_state=0)
    else:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    path = folder / f"digits_{kind}.skops"
    sio.dump(model.fit(x.astype(np.float32), y), path)
    return path


def damage_first_tree(path: Path, target: Path) -> Path:
    """A copy of a .skops file whose first decision tree's root points to child 1,000,000 (a
    crafted file: scikit-learn would follow it out of bounds at predict time)."""
    import io
    import zipfile

    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as out:
        done = False
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith(".npy") and not done:
                array = np.load(io.BytesIO(data), allow_pickle=False)
                if array.dtype.names and "left_child" in array.dtype.names:
                    array = array.copy()
                    array["left_child"][0] = 10**6
                    buffer = io.BytesIO()
                    np.save(buffer, array, allow_pickle=False)
                    data, done = buffer.getvalue(), True
            out.writestr(item, data)
    return target
