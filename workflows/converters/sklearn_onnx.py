"""scikit-learn estimators and pipelines -> ONNX with skl2onnx (ONNX-ML operators for trees,
linear models, scalers, ...). Classifiers give `label` and `probabilities` as plain tensors
(skl2onnx's ZipMap, a list of dicts, turned off)."""

from __future__ import annotations

from pathlib import Path

from workflows.errors import ConversionError, first_line
from workflows.model import Model
from workflows.progress import Progress


def to_onnx(model: Model, output: Path, opset: int, progress: Progress) -> None:
    """Write the estimator as ONNX at `output`."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    estimator = model.native
    features = model.inputs[0].shape[1]
    progress.update(0.1, f"Converting {model.metadata.get('estimator', 'the model')} (skl2onnx)")
    classifier = model.metadata.get("kind") == "classifier"
    try:
        proto = convert_sklearn(
            estimator,
            initial_types=[(model.inputs[0].name, FloatTensorType([None, features]))],
            target_opset={"": opset, "ai.onnx.ml": 3},
            options={"zipmap": False} if classifier else None,
        )
    except Exception as exc:  # skl2onnx raises MissingShapeCalculator, RuntimeError, ...
        raise ConversionError(
            f"{model.path}: skl2onnx could not convert the "
            f"{model.metadata.get('estimator', 'model')}: {first_line(exc)}. skl2onnx converts "
            "scikit-learn's own estimators; XGBoost and LightGBM models need onnxmltools' "
            "converters registered with it."
        ) from exc
    output.write_bytes(proto.SerializeToString())
    progress.update(1.0, "Converted")
