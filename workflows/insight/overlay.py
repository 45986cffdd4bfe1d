"""The graph view's overlays (issue 16, item 1): the insight step's per-node figures as one
value per node, a 0-1 "badness" for its colour, and per drawn box (a collapsed block) the worst
of its nodes. Qt-free: the view only paints what this says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# SQNR colours: at or above GOOD_DB a node is green, at or below BAD_DB red. INT8 of a healthy
# CNN keeps 30-50 dB per node (the sample: 42.9-49.1); below 20 dB a layer is a likely culprit.
GOOD_DB = 40.0
BAD_DB = 10.0


@dataclass
class Overlay:
    """Per-node values of one kind: SQNR in dB (higher is better) or time in ms."""

    key: str  # e.g. "sqnr:int8-static", "time:fp32"
    label: str
    unit: str
    higher_is_better: bool
    values: dict[str, float]  # node name -> value
    model: str  # the variant whose graph the node names belong to ("fp32" for errors)

    def badness(self, value: float | None) -> float | None:
        """0 (fine) to 1 (worst) for the node's colour; None where nothing was measured."""
        if value is None:
            return None
        if self.higher_is_better:
            return min(1.0, max(0.0, (GOOD_DB - value) / (GOOD_DB - BAD_DB)))
        top = max(self.values.values(), default=0.0)
        return value / top if top > 0 else 0.0

    def combine(self, values: list[float]) -> float | None:
        """A collapsed block's value: its worst node's SQNR, its nodes' total time."""
        if not values:
            return None
        return min(values) if self.higher_is_better else sum(values)

    def worst(self) -> str | None:
        """The node with the lowest SQNR or the longest time."""
        if not self.values:
            return None
        pick = min if self.higher_is_better else max
        return pick(self.values, key=self.values.__getitem__)

    def failing(self, threshold: float) -> set[str]:
        """Nodes worse than `threshold` (SQNR below it, time above it)."""
        if self.higher_is_better:
            return {n for n, v in self.values.items() if v < threshold}
        return {n for n, v in self.values.items() if v > threshold}


def overlays(insight: dict[str, Any]) -> list[Overlay]:
    """Every overlay an insight result holds: per variant its error on the float graph's nodes
    (INT8 SQNR, or deviation SQNR for FP16), per model its node times on its own graph."""
    out = []
    reference = next((m for m in insight["models"] if m.get("reference")), insight["models"][0])
    for m in insight["models"]:
        errors = m.get("errors")
        if errors:
            kind = "INT8 SQNR" if errors["kind"] == "int8" else "deviation SQNR"
            values = {r["node"]: float(r["sqnr_db"]) for r in errors["nodes"]
                      if r["sqnr_db"] is not None}  # fmt: skip
            out.append(Overlay(f"sqnr:{m['name']}", f"{kind} — {m['name']}", "dB", True, values,
                               reference["name"]))  # fmt: skip
        times = {
            r["node"]: float(r["ms"]) for r in m["times"]["nodes"] if not r.get("inserted_by_ort")
        }
        out.append(Overlay(f"time:{m['name']}", f"time per node — {m['name']}", "ms", False,
                           times, m["name"]))  # fmt: skip
    return out


def box_values(overlay: Overlay, boxes: dict[str, list],
               names: list[str]) -> list[float | None]:  # fmt: skip
    """Per drawn box (graph_layout's boxes; `names`: the nodes in graph order) its value."""
    return [overlay.combine([overlay.values[names[i]] for i in members
                             if names[i] in overlay.values]) for members in boxes["members"]]  # fmt: skip
