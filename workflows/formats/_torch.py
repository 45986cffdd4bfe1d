"""Helpers shared by the PyTorch formats. torch is imported inside each function."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workflows.errors import FormatError, MissingInputError, UnsafeModelError
from workflows.model import Dim, TensorSpec

UNSAFE_HINT = (
    "If you trust where this file comes from, load it with --allow-unsafe "
    "(in the app: 'Trust this file and run its code')."
)


def torch_dtype_name(dtype: Any) -> str:
    """numpy-style dtype name of a torch dtype ("float32", "int64", ...)."""
    return str(dtype).removeprefix("torch.")


def flatten_outputs(out: Any) -> list[np.ndarray]:
    """Tensors in a (nested) tuple/list/dict of outputs, as numpy arrays, in order."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out.detach().cpu().numpy()]
    if isinstance(out, dict):
        return [a for k in out for a in flatten_outputs(out[k])]
    if isinstance(out, list | tuple):
        return [a for o in out for a in flatten_outputs(o)]
    return [np.asarray(out)]


def output_specs(outputs: Sequence[np.ndarray], dynamic_batch: bool) -> list[TensorSpec]:
    """Specs for outputs observed on a sample run (batch axis made symbolic when dynamic)."""
    specs = []
    for i, arr in enumerate(outputs):
        shape: tuple[Dim, ...] = tuple(arr.shape)
        if dynamic_batch and shape:
            shape = ("batch", *shape[1:])
        specs.append(
            TensorSpec("output" if len(outputs) == 1 else f"output_{i}", shape, arr.dtype.name)
        )
    return specs


def probe_outputs(
    module: Any, inputs: Sequence[TensorSpec], dynamic_batch: bool
) -> list[TensorSpec]:
    """Output specs found by running the module once on zeros (batch 2); [] if shapes are unknown."""
    import torch

    from workflows.inputs import concrete_shape

    if not inputs or any(s.shape is None for s in inputs):
        return []
    args = [torch.zeros(concrete_shape(s, 2), dtype=getattr(torch, s.dtype)) for s in inputs]
    try:
        with torch.inference_mode():
            outputs = flatten_outputs(module(*args))
    except Exception:  # the real error surfaces, with context, when the user converts or runs it
        return []
    return output_specs(outputs, dynamic_batch)


def input_specs_from_options(
    names: Sequence[str],
    path: Path,
    input_shapes: dict[str, Sequence[int]] | None,
    input_dtypes: dict[str, str] | None = None,
    dynamic_batch: bool = True,
) -> list[TensorSpec]:
    """Input specs from the user's --input-shape options (formats that do not record shapes)."""
    input_shapes = dict(input_shapes or {})
    input_dtypes = input_dtypes or {}
    if len(names) == 1 and len(input_shapes) == 1 and names[0] not in input_shapes:
        input_shapes = {names[0]: next(iter(input_shapes.values()))}
    specs = []
    for name in names:
        shape = input_shapes.get(name)
        dims: tuple[Dim, ...] | None = None
        if shape is not None:
            dims = tuple(int(d) for d in shape)
            if dynamic_batch and dims:
                dims = ("batch", *dims[1:])
        specs.append(TensorSpec(name, dims, input_dtypes.get(name, "float32")))
    return specs


def require_shapes(specs: Sequence[TensorSpec], path: Path, what: str) -> None:
    """MissingInputError unless every input has a shape."""
    missing = [s.name for s in specs if s.shape is None]
    if missing:
        example = ",".join(f"{n}=1x3x224x224" for n in missing)
        raise MissingInputError(
            f"{path}: {what} files do not record input shapes; give them with "
            f"--input-shape {example} (the first dimension is the batch)."
        )


def torch_load_safely(path: Path, allow_unsafe: bool = False) -> Any:
    """torch.load with weights_only=True; a file needing real unpickling is refused with a reason."""
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=not allow_unsafe)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        detail = ""
        for line in text.splitlines():
            if "Unsupported global" in line or "GLOBAL" in line:
                detail = f" ({line.strip().rstrip('.')})"
                break
        raise UnsafeModelError(
            f"{path}: loading this file would execute Python code stored in its pickle{detail}. "
            "Dockyard loads PyTorch files with weights_only=True and refused it. A state_dict "
            "(torch.save(model.state_dict(), ...)) or safetensors file loads safely. " + UNSAFE_HINT
        ) from exc
    except RuntimeError as exc:
        raise FormatError(f"{path}: not a readable PyTorch file: {exc}") from exc
    except Exception as exc:
        # Whatever else torch.load's readers raise on damaged or foreign bytes (EOFError,
        # ValueError, KeyError, safetensors' SafetensorError, which torch.load now dispatches
        # to): the file's fault, reported as such rather than as a crash.
        raise FormatError(
            f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc})"
        ) from exc


def import_module_from_file(py_file: Path) -> Any:
    """Import a user's model definition file (its code runs: the user chose it explicitly)."""
    py_file = Path(py_file).resolve()
    if not py_file.is_file():
        raise MissingInputError(f"{py_file}: model definition file not found")
    name = f"dockyard_user_model_{abs(hash(str(py_file)))}"
    spec = importlib.util.spec_from_file_location(name, py_file)
    if spec is None or spec.loader is None:
        raise FormatError(f"{py_file}: cannot import as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    sys.path.insert(0, str(py_file.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise FormatError(
            f"{py_file}: importing the model file failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        sys.path.remove(str(py_file.parent))
    return module


def module_classes(module: Any) -> list[type]:
    """torch.nn.Module subclasses defined in `module` itself."""
    import torch

    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, torch.nn.Module)
        and obj.__module__ == module.__name__
    ]


def forward_input_names(module: Any) -> list[str]:
    """Names of forward()'s positional tensor arguments."""
    params = inspect.signature(module.forward).parameters.values()
    return [
        p.name
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]


def torch_session(
    module: Any, names: Sequence[str]
) -> Callable[[dict[str, np.ndarray]], list[np.ndarray]]:
    """A callable running a torch module on numpy feeds (by input name) in inference mode."""
    import torch

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]
        with torch.inference_mode():
            return flatten_outputs(module(*args))

    return run
