"""scikit-learn estimators and pipelines: `.skops` files (loaded safely by skops, which builds
only the types it trusts) and `.pkl`/`.joblib` pickles (which run code while loading: refused
unless the user allows it, as PyTorch pickles are).

The model's signature is what skl2onnx gives its ONNX conversion: one float32 input `X`
[batch, n_features]; a classifier's `label` [batch] and `probabilities` [batch, n_classes], a
regressor's `variable` [batch, n_targets].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workflows.errors import FormatError, UnsafeModelError
from workflows.formats._sniff import head, zip_names
from workflows.model import Model, TensorSpec, path_size

NAME = "sklearn"
FRAMEWORK = "sklearn"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
INPUT = "X"


def match(path: Path) -> bool:
    names = zip_names(path)
    if names is not None:
        return "schema.json" in names and path.suffix.lower() == ".skops"
    # A pickle (protocol 2 and up start with b"\x80") or a joblib file compressed with zlib.
    return path.suffix.lower() in PICKLE_SUFFIXES and head(path, 1) in (b"\x80", b"x")


def why_not(path: Path) -> str:
    return "not a .skops file or a .pkl/.joblib pickle"


def load(path: Path, allow_unsafe: bool = False, **_: Any) -> Model:
    """The estimator, loaded without running code from the file unless `allow_unsafe`."""
    estimator = _read(path, allow_unsafe)
    # Trees are checked whatever the trust: a damaged one would crash the process that runs it.
    check_trees(estimator, path)
    return describe(estimator, path)


def _read(path: Path, allow_unsafe: bool) -> Any:
    if path.suffix.lower() == ".skops":
        import skops.io as sio

        try:
            untrusted = sio.get_untrusted_types(file=str(path))
        except Exception as exc:  # a damaged zip or schema
            raise FormatError(f"{path}: skops cannot read this file ({exc})") from exc
        unchecked = [t for t in untrusted if t not in CHECKED_TYPES]
        if unchecked and not allow_unsafe:
            shown = ", ".join(unchecked[:5]) + (" …" if len(unchecked) > 5 else "")
            raise UnsafeModelError(
                f"{path}: the file builds types skops does not trust by default ({shown}); "
                "refused. If you trust its source, load it with --allow-unsafe."
            )
        try:
            estimator = sio.load(str(path), trusted=untrusted or None)
        except Exception as exc:
            raise FormatError(f"{path}: skops cannot load this file ({exc})") from exc
        return estimator
    if not allow_unsafe:
        raise UnsafeModelError(
            f"{path}: a pickle runs code stored in it while it loads; refused. Save the model "
            "with skops (skops.io.dump(model, 'model.skops')), which Dockyard loads safely, or, "
            "if you trust the file's source, load it with --allow-unsafe."
        )
    import joblib

    try:
        return joblib.load(str(path))
    except ModuleNotFoundError as exc:
        raise FormatError(
            f"{path}: the pickle needs the Python module {exc.name!r}, which Dockyard does not "
            "have; it reads scikit-learn, XGBoost and LightGBM models"
        ) from exc
    except Exception as exc:
        raise FormatError(
            f"{path}: cannot unpickle this file ({type(exc).__name__}: {exc})"
        ) from exc


# Types skops leaves untrusted that Dockyard accepts after checking their content itself.
# sklearn.tree._tree.Tree (every decision tree, forest and boosting model holds them): skops
# rebuilds it from plain arrays but does not trust it, because scikit-learn follows its child
# and feature indices without bounds checks at predict time, so a crafted file could read out
# of bounds (skops/io/_sklearn.py, TreeNode; scikit-learn#34558). check_trees makes those
# checks before the model runs.
CHECKED_TYPES = ("sklearn.tree._tree.Tree",)


def check_trees(estimator: Any, path: Path) -> int:
    """FormatError unless every decision tree in `estimator` is well formed: children after
    their parent and inside the tree (or -1 at leaves, both together), split features inside
    the input, one value row per node. Returns how many trees were checked."""
    from sklearn.tree._tree import Tree

    trees = [t for t in reachable(estimator) if isinstance(t, Tree)]
    for i, tree in enumerate(trees):
        n = int(tree.node_count)
        left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
        feature, nodes = np.asarray(tree.feature), np.arange(n)
        leaf = left == -1
        problems = []
        if not (len(left) == len(right) == len(feature) == n == len(tree.value)):
            problems.append("its arrays disagree on the number of nodes")
        elif not (np.array_equal(leaf, right == -1)):
            problems.append("a node has one child")
        elif not (
            np.all(leaf | ((left > nodes) & (left < n)))
            and np.all(leaf | ((right > nodes) & (right < n)))
        ):
            problems.append("a child index points outside the tree or back up it")
        elif not np.all(leaf | ((feature >= 0) & (feature < int(tree.n_features)))):
            problems.append("a split uses a feature the input does not have")
        if problems:
            raise FormatError(
                f"{path}: decision tree {i} is damaged ({problems[0]}); running it could read "
                "memory outside the model. Re-export the model from scikit-learn."
            )
    return len(trees)


def reachable(value: Any, seen: set[int] | None = None) -> list[Any]:
    """Every object reachable from `value` through attributes, lists, tuples, dicts and object
    arrays (an estimator's sub-estimators and trees)."""
    seen = seen if seen is not None else set()
    if id(value) in seen or isinstance(value, str | bytes | int | float | bool | type(None)):
        return []
    seen.add(id(value))
    found = [value]
    if isinstance(value, dict):
        children = list(value.values())
    elif isinstance(value, list | tuple):
        children = list(value)
    elif isinstance(value, np.ndarray):
        children = list(value.ravel()) if value.dtype == object else []
    else:
        children = list(vars(value).values()) if hasattr(value, "__dict__") else []
        # Cython classes (Tree) have no __dict__; sklearn keeps each tree in an estimator's tree_.
    for child in children:
        found.extend(reachable(child, seen))
    return found


def describe(estimator: Any, path: Path) -> Model:
    """The Model for a fitted scikit-learn estimator (or pipeline)."""
    import sklearn
    from sklearn.base import is_classifier, is_regressor

    features = getattr(estimator, "n_features_in_", None)
    if not hasattr(estimator, "predict") or features is None:
        raise FormatError(
            f"{path}: holds a {type(estimator).__name__}, not a fitted scikit-learn model "
            "(an estimator or pipeline with predict and n_features_in_)"
        )
    if is_classifier(estimator):
        classes = len(estimator.classes_)
        outputs = [TensorSpec("label", ("batch",), _label_dtype(estimator))]
        if hasattr(estimator, "predict_proba"):
            outputs.append(TensorSpec("probabilities", ("batch", classes), "float32"))
        kind = "classifier"
    elif is_regressor(estimator):
        targets = getattr(estimator, "n_outputs_", 1)
        outputs = [TensorSpec("variable", ("batch", int(targets)), "float32")]
        kind = "regressor"
    else:
        raise FormatError(
            f"{path}: a {type(estimator).__name__} is neither a classifier nor a regressor; "
            "Dockyard serves those two kinds"
        )
    return Model(
        format=NAME,
        framework=FRAMEWORK,
        path=path,
        inputs=[TensorSpec(INPUT, ("batch", int(features)), "float32")],
        outputs=outputs,
        size_bytes=path_size(path),
        parameters=_parameters(estimator),
        producer=f"scikit-learn {sklearn.__version__}",
        metadata={"estimator": _describe_steps(estimator), "kind": kind},
        native=estimator,
    )


def _label_dtype(estimator: Any) -> str:
    classes = np.asarray(estimator.classes_)
    return "int64" if classes.dtype.kind in "iub" else "str"


def _describe_steps(estimator: Any) -> str:
    steps = getattr(estimator, "steps", None)
    if steps:
        return " → ".join(type(step).__name__ for _, step in steps)
    return type(estimator).__name__


def _parameters(estimator: Any) -> int | None:
    """Fitted floating-point numbers (arrays ending in "_", as scikit-learn names fitted
    attributes: weights, means, scales; not class labels or iteration counts), plus one per
    tree node."""
    total, seen = 0, False
    parts = [s for _, s in getattr(estimator, "steps", [])] or [estimator]
    for part in parts:
        for name, value in vars(part).items():
            if name.endswith("_") and isinstance(value, np.ndarray) and value.dtype.kind == "f":
                total += int(value.size)
                seen = True
            elif name == "estimators_" and isinstance(value, list | np.ndarray):
                for tree in np.ravel(value):
                    nodes = getattr(getattr(tree, "tree_", None), "node_count", None)
                    if nodes:
                        total += int(nodes)
                        seen = True
    return total if seen else None


def session(model: Model, threads: int | None = None):
    """Run the estimator on numpy feeds: [label, probabilities] or [variable]."""
    estimator = model.native
    names = [o.name for o in model.outputs]

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = np.asarray(feeds[INPUT], dtype=np.float32)
        if "variable" in names:
            return [np.asarray(estimator.predict(x), np.float32).reshape(len(x), -1)]
        found = [np.asarray(estimator.predict(x))]
        if "probabilities" in names:
            found.append(np.asarray(estimator.predict_proba(x), np.float32))
        return found

    return run
