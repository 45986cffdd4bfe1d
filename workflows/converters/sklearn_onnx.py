"""scikit-learn estimators and pipelines -> ONNX with skl2onnx (ONNX-ML operators for trees,
linear models, scalers, ...), XGBoost and LightGBM models (their scikit-learn API, alone or in a
pipeline) through onnxmltools' converters registered with skl2onnx. Classifiers give `label` and
`probabilities` as plain tensors (skl2onnx's ZipMap, a list of dicts, turned off)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    register_boosting(estimator)
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
            "scikit-learn's own estimators, and XGBoost and LightGBM models through their "
            "scikit-learn API (XGBClassifier, LGBMRegressor, ...)."
        ) from exc
    output.write_bytes(proto.SerializeToString())
    progress.update(1.0, "Converted")


# The scikit-learn API classes of the boosting libraries: (module, class, skl2onnx alias, shape
# calculator kind). onnxmltools holds their converters; skl2onnx must be told about them.
BOOSTING = (
    ("xgboost", "XGBClassifier", "XGBoostXGBClassifier", "classifier"),
    ("xgboost", "XGBRegressor", "XGBoostXGBRegressor", "regressor"),
    ("lightgbm", "LGBMClassifier", "LightGbmLGBMClassifier", "classifier"),
    ("lightgbm", "LGBMRegressor", "LightGbmLGBMRegressor", "regressor"),
)


def register_boosting(estimator: Any) -> None:
    """Register onnxmltools' converters for the XGBoost/LightGBM classes found anywhere in
    `estimator` (alone, a pipeline step, inside a meta-estimator). Their libraries are imported
    only then: the estimator, unpickled, already imported them."""
    import importlib

    from workflows.formats.sklearn_format import reachable

    libraries = {type(part).__module__.split(".")[0] for part in reachable(estimator)}
    wanted = [entry for entry in BOOSTING if entry[0] in libraries]
    if not wanted:
        return

    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    converters = {}
    if any(lib == "xgboost" for lib, *_ in wanted):
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        converters["xgboost"] = convert_xgboost
    if any(lib == "lightgbm" for lib, *_ in wanted):
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        converters["lightgbm"] = convert_lightgbm
    for library, name, alias, kind in wanted:
        cls = getattr(importlib.import_module(library), name)
        if kind == "classifier":
            update_registered_converter(
                cls, alias, calculate_linear_classifier_output_shapes, converters[library],
                options={"nocl": [True, False], "zipmap": [True, False, "columns"]},
            )  # fmt: skip
        else:
            update_registered_converter(
                cls, alias, calculate_linear_regressor_output_shapes, converters[library]
            )
