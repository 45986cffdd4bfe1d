"""The fallback search: when static INT8 fails the accuracy gate, find the cheapest variant that
does not, the way Olive and Intel Neural Compressor tune.

1. **Knobs first** (every compute layer stays INT8): per-channel weights, 7-bit weights
   (reduce_range; tried first on x86 CPUs without VNNI, where u8s8 kernels can saturate), Entropy
   and Percentile calibration, int8 activations, only the compute ops (Conv/MatMul/Gemm) INT8
   with element-wise ops in float, and only then the first and last compute layers in float.
2. **Then nodes, one culprit at a time**: from the best knob setting, the worst-quantized tensor
   (ORT's `qdq_loss_debug`, re-measured on the current variant each round) has its nodes kept in
   float, two culprits a round after the fourth.
3. **The choice**: of the tries that do not fail, the one with the most INT8 (then the smallest
   drop). A try with no INT8 compute op left never counts as passing: when the model has
   quantizable compute ops and nothing else passes, the search **fails** ("INT8 cannot meet the
   gate on this model") and keeps the best partial variant (smallest drop) for the report.

Dynamic INT8 gets the knobs only (there is no QDQ graph to rank nodes by): convolutions left in
float (matrix products only), then per-channel weights.

Every try is recorded: its knobs, nodes in float, INT8 fraction, size, batch-1 p50 and gate.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workflows.errors import DockyardError
from workflows.progress import Progress

# A variant's quantizer settings: method, per_channel, activation_type, weight_type,
# reduce_range, compute_ops_only, dynamic_ops, and exclude (the nodes kept in float).
Settings = dict[str, Any]


def knob_tries(
    base: Settings, u8s8_risk: bool, first_last: list[str]
) -> list[tuple[str, Settings]]:
    """(description, settings) of each knob to try, cheapest first, skipping what `base` has."""
    tries: list[tuple[str, Settings]] = []
    if not base["per_channel"]:
        tries.append(("per-channel weights", {"per_channel": True}))
    if not base.get("reduce_range"):
        reduce = ("7-bit weights (reduce_range)", {"reduce_range": True})
        if u8s8_risk:
            tries.insert(0, reduce)
        else:
            tries.append(reduce)
    for method in ("entropy", "percentile"):
        if base["method"] != method:
            tries.append((f"{method} calibration", {"method": method}))
    if base["activation_type"] != "int8":
        tries.append(("int8 activations", {"activation_type": "int8"}))
    if not base.get("compute_ops_only"):
        tries.append(("only compute ops INT8 (element-wise in float)", {"compute_ops_only": True}))
    if first_last:
        tries.append(("first and last compute layers in float", {"exclude": first_last}))
    return [(label, {**base, **change}) for label, change in tries]


def dynamic_knob_tries(base: Settings) -> list[tuple[str, Settings]]:
    """Knobs for dynamic INT8 (no calibration, no QDQ to rank nodes by): convolutions left in
    float (ConvInteger is slow and lossy), then per-channel weights."""
    tries: list[tuple[str, Settings]] = []
    if base.get("dynamic_ops") != "matmul":
        tries.append(("convolutions in float (matrix products only)", {"dynamic_ops": "matmul"}))
    if not base["per_channel"]:
        change = {"per_channel": True, "dynamic_ops": "matmul"} if tries else {"per_channel": True}
        tries.append(("per-channel weights", change))
    return [(label, {**base, **change}) for label, change in tries]


def first_and_last_compute_nodes(model_path: Path) -> list[str]:
    """The first and last Conv/Gemm/MatMul-like nodes of the graph (in its order)."""
    import onnx

    from workflows.quantization.int8_diagnostics import COMPUTE_OPS

    proto = onnx.load(str(model_path), load_external_data=False)
    compute = [n.name for n in proto.graph.node if n.op_type in COMPUTE_OPS and n.name]
    return list(dict.fromkeys([compute[0], compute[-1]])) if compute else []


def _passes(t: dict[str, Any]) -> bool:
    return t["gate"]["decision"] != "fail" and (t["int8_fraction"] or 0) > 0


class Search:
    """Runs the tries. `make(settings, path)` writes a variant, `measure(path)` gives its accuracy
    figures (with "gate"), `cost(path)` its size and p50, `rank(path)` its culprits."""

    def __init__(
        self,
        make: Callable[[Settings, Path], None],
        measure: Callable[[Path], dict[str, Any]],
        cost: Callable[[Path], dict[str, Any]],
        rank: Callable[[Path], list[Any]],
        int8_fraction: Callable[[Path], float],
        workdir: Path,
        max_rounds: int,
        progress: Progress,
    ) -> None:
        self.make, self.measure, self.cost, self.rank = make, measure, cost, rank
        self.int8_fraction = int8_fraction
        self.workdir, self.max_rounds, self.progress = workdir, max_rounds, progress
        self.tries: list[dict[str, Any]] = []
        self.paths: list[Path] = []
        self.culprits: list[dict[str, Any]] = []
        workdir.mkdir(parents=True, exist_ok=True)

    def attempt(
        self, label: str, settings: Settings, made: tuple[Path, dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Make and measure one try (or record `made`: a variant and figures already at hand)."""
        path = self.workdir / f"try-{len(self.tries)}.onnx"
        t: dict[str, Any] = {
            "try": len(self.tries),
            "what": label,
            "knobs": {k: v for k, v in settings.items() if k != "exclude"},
            "excluded_nodes": list(settings.get("exclude", [])),
        }
        self.tries.append(t)
        self.paths.append(path)
        if made is None:
            try:
                self.make(settings, path)
                # ORT's quantizer can also write a model ORT cannot load (per-channel weights on
                # an opset-11 graph give DequantizeLinear an `axis` it does not have there).
                figures = self.measure(path)
            except DockyardError as exc:  # the quantizer failed on this try: record it, go on
                t.update(int8_fraction=None, size_bytes=None, p50_ms=None, figures=None,
                         gate={"decision": "fail", "passed": False, "error": str(exc)})  # fmt: skip
                return t
        else:
            shutil.copyfile(made[0], path)
            figures = made[1]
        t.update(int8_fraction=self.int8_fraction(path), **self.cost(path))
        t.update(gate=figures["gate"], figures=figures)
        return t

    def run(
        self,
        naive: tuple[Path, dict[str, Any]],
        base: Settings,
        knobs: list[tuple[str, Settings]],
    ) -> dict[str, Any]:
        """Search from the `naive` variant (made with `base`; its gate failed) and its figures;
        the chosen try, its file and the outcome."""
        first = self.attempt("as asked", base, naive)
        steps = len(knobs) + self.max_rounds
        for i, (label, settings) in enumerate(knobs):
            self.progress.update(0.5 + 0.4 * i / steps, f"Fallback: trying {label}")
            if _passes(self.attempt(label, settings)):
                return self._choose()
        # Nodes in float, from the knob setting that came closest (all layers still INT8).
        start = min(
            (t for t in self.tries if not t["excluded_nodes"] and t["figures"] is not None),
            key=lambda t: _loss(t["gate"]),
            default=first,
        )
        settings = {**base, **start["knobs"], "exclude": []}
        current = self.paths[start["try"]]
        for r in range(self.max_rounds):
            self.progress.update(
                0.5 + 0.4 * (len(knobs) + r) / steps, f"Fallback round {r + 1}: ranking tensors"
            )
            excluded = settings["exclude"]
            fresh = [c for c in self.rank(current) if not set(c.nodes) <= set(excluded)]
            if not fresh:
                break
            for c in fresh[: 1 if r < 4 else 2]:
                excluded = excluded + [n for n in c.nodes if n not in excluded]
                self.culprits.append(
                    {
                        "tensor": c.tensor,
                        "kind": c.kind,
                        "sqnr_db": round(c.sqnr_db, 2),
                        "nodes": c.nodes,
                        "round": r + 1,
                    }
                )
            settings = {**settings, "exclude": excluded}
            t = self.attempt(f"{len(excluded)} node(s) in float", settings)
            current = self.paths[-1]
            if _passes(t):
                break
        return self._choose()

    def _choose(self) -> dict[str, Any]:
        passing = [t for t in self.tries if _passes(t)]
        if passing:
            best = max(passing, key=lambda t: (t["int8_fraction"], -_loss(t["gate"])))
            outcome = "passed" if best["gate"]["decision"] == "pass" else "inconclusive"
        else:
            made = [t for t in self.tries if t["figures"] is not None]
            partial = [t for t in made if (t["int8_fraction"] or 0) > 0] or made
            best = min(partial, key=lambda t: (_loss(t["gate"]), -t["int8_fraction"]))
            outcome = "failed"
        return {"chosen": best, "path": self.paths[best["try"]], "outcome": outcome}


def _loss(gate: dict[str, Any]) -> float:
    """A try's accuracy loss, comparable across tries: drop points or -SQNR."""
    if gate.get("metric") == "sqnr_db":
        return -float(gate["sqnr_db"])
    return float(gate.get("drop_points") or 0.0)
