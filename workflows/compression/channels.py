"""Structured pruning: remove whole channels and filters from an eager PyTorch module.

torch-pruning's dependency graph (DepGraph) finds every layer that a removed channel touches
(the next convolution's inputs, batch norm, residual additions, concatenations), so the result is
a smaller dense module any runtime runs faster, not a masked copy of the original.
"""

from __future__ import annotations

from typing import Any

from workflows.errors import ConversionError
from workflows.progress import Progress

IMPORTANCE = ("magnitude", "bn_scale", "lamp")


def count(module: Any, args: tuple) -> tuple[int, int]:
    """(multiply-accumulates, parameters) of one forward pass of `module` on `args`."""
    import torch_pruning as tp

    macs, params = tp.utils.count_ops_and_params(module, args)
    return int(macs), int(params)


def output_layers(module: Any, args: tuple) -> list[Any]:
    """The convolutions and linear layers whose channels reach an output directly.

    Their output channels are the model's outputs (class scores, box coordinates), which pruning
    must keep. torch-pruning has no query for this, so it is found the way DepGraph traces: walk
    the autograd graph back from every output until a Conv/Linear layer's own result is met.
    """
    import torch

    produced: dict[Any, Any] = {}
    hooks = []
    for layer in module.modules():
        if isinstance(layer, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Conv3d | torch.nn.Linear):
            hooks.append(
                layer.register_forward_hook(
                    lambda m, _i, out: (
                        produced.__setitem__(out.grad_fn, m)
                        if isinstance(out, torch.Tensor) and out.grad_fn is not None
                        else None
                    )
                )
            )
    try:
        with torch.enable_grad():
            outputs = module(*args)
    finally:
        for h in hooks:
            h.remove()
    found: list[Any] = []
    stack = [t.grad_fn for t in output_tensors(outputs) if t.grad_fn is not None]
    seen: set[Any] = set()
    while stack:
        fn = stack.pop()
        if fn in seen:
            continue
        seen.add(fn)
        if fn in produced:
            if produced[fn] not in found:
                found.append(produced[fn])
            continue
        stack.extend(nxt for nxt, _ in fn.next_functions if nxt is not None)
    return found


def output_tensors(out: Any) -> list[Any]:
    """The tensors in a (nested) tuple/list/dict of outputs, in order."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in output_tensors(v)]
    if isinstance(out, list | tuple):
        return [t for v in out for t in output_tensors(v)]
    return []


def _importance(name: str) -> Any:
    import torch_pruning as tp

    if name == "bn_scale":
        return tp.importance.BNScaleImportance()
    if name == "lamp":
        return tp.importance.LAMPImportance(p=2)
    return tp.importance.GroupMagnitudeImportance(p=2)


def prune(
    module: Any,
    args: tuple,
    ratio: float,
    target_macs_reduction: float | None = None,
    importance: str = "magnitude",
    round_to: int | None = 8,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Prune `module` in place and return what changed.

    With `target_macs_reduction` (0..1: the share of MACs to remove), channels go in up to 20
    even steps towards `ratio` per layer, stopping once that share is removed; otherwise every
    prunable layer loses `ratio` of its channels in one step. Layers that feed an output directly
    keep theirs. `round_to` keeps channel counts multiples of 8 (what SIMD kernels like).
    """
    import torch
    import torch_pruning as tp

    if not 0.0 < ratio < 1.0:
        raise ConversionError(f"pruning ratio must be between 0 and 1 (exclusive), got {ratio}")
    if target_macs_reduction is not None and not 0.0 < target_macs_reduction < 1.0:
        raise ConversionError(
            f"target MACs reduction must be between 0 and 1, got {target_macs_reduction}"
        )
    module.eval()
    macs_before, params_before = count(module, args)
    kept = output_layers(module, args)
    before = {row["layer"]: row for row in _channels(module)}
    steps = 20 if target_macs_reduction is not None else 1
    try:
        pruner = tp.pruner.MetaPruner(
            module,
            args,
            importance=_importance(importance),
            pruning_ratio=ratio,
            iterative_steps=steps,
            ignored_layers=kept,
            round_to=round_to,
        )
    except Exception as exc:  # tracing failed: a construct DepGraph cannot follow
        raise ConversionError(
            f"torch-pruning cannot trace this module's channel dependencies "
            f"({type(exc).__name__}: {exc}); structured pruning needs plain nn.Module layers"
        ) from exc
    macs = macs_before
    done = 0
    for i in range(steps):
        with torch.no_grad():
            pruner.step()
        done = i + 1
        macs, _ = count(module, args)
        if progress is not None:
            progress.update(
                done / steps, f"Pruning channels: {1 - macs / macs_before:.0%} of MACs removed"
            )
        if target_macs_reduction is not None and 1 - macs / macs_before >= target_macs_reduction:
            break
    macs_after, params_after = count(module, args)
    if macs_after >= macs_before:
        raise ConversionError(
            "no channel could be removed: every convolution or linear layer feeds an output "
            "directly or is tied to one"
        )
    return {
        "importance": importance,
        "ratio": ratio,
        "target_macs_reduction": target_macs_reduction,
        "iterations": done,
        "macs_before": macs_before,
        "macs_after": macs_after,
        "macs_reduction": round(1 - macs_after / macs_before, 4),
        "parameters_before": params_before,
        "parameters_after": params_after,
        "kept_layers": [_layer_name(module, m) for m in kept],
        "layers": [
            {"layer": row["layer"], "before": before[row["layer"]]["out"], "after": row["out"]}
            for row in _channels(module)
            if row["layer"] in before
        ],
    }


def _layer_name(module: Any, layer: Any) -> str:
    return next((n for n, m in module.named_modules() if m is layer), type(layer).__name__)


def _channels(module: Any) -> list[dict[str, Any]]:
    """Every convolution and linear layer with its input and output channel counts."""
    import torch

    rows = []
    for name, layer in module.named_modules():
        if isinstance(layer, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Conv3d):
            rows.append({"layer": name, "in": layer.in_channels, "out": layer.out_channels})
        elif isinstance(layer, torch.nn.Linear):
            rows.append({"layer": name, "in": layer.in_features, "out": layer.out_features})
    return rows
