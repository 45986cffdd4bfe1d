"""Where each node of a graph is drawn, for the native graph view (issue 16, item 3).

A layered (Sugiyama) layout from igraph (C code: 10,000 nodes in ~0.25 s on one core), with
edges bent through the layers they cross. Repeated blocks collapse: nodes are grouped by the
name scopes exporters write (`/model.22/cv2/conv/Conv`, `stage1/block3/conv1`), or by the
module path PyTorch's exporter records in each node's metadata (its node names have no
scopes), or, in a graph with neither, by its structure (see `structural_blocks`); at a chosen
depth every group is drawn as one node ("stage1/block3 · 10 ops") unless it was expanded.
The layout is plain arrays (JSON-able): the view draws it, Qt-free code makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NODE_HEIGHT = 28.0
CHAR_WIDTH = 7.0  # the view's label font, on average
MIN_WIDTH = 56.0
H_SPACING = 24.0  # between neighbours in a layer
V_SPACING = 36.0  # between layers


def scope(name: str, depth: int) -> str | None:
    """The first `depth` levels of a node's name scope; None when it has fewer levels."""
    parts = [p for p in name.split("/") if p][:-1]
    return "/".join(parts[:depth]) if len(parts) >= depth > 0 else None


def structural_blocks(nodes: list[dict[str, Any]]) -> list[str | None]:
    """Per node (in graph order, {"inputs", "outputs"}) its block, "block7", for graphs whose
    names say nothing: a block ends at each node that fans out and through which everything
    flows (every edge that crosses the point just after it in graph order starts at it) - the
    point where a residual or inception block starts, so each such block, its merge and what
    follows it up to the next such point become one box. Nodes outside any block of two or
    more: None. Written here because no graph library finds blocks in this sense."""
    producer = {t: i for i, n in enumerate(nodes) for t in n["outputs"]}
    ending: list[set[int]] = [set() for _ in nodes]  # per node, the earlier nodes feeding it
    for j, n in enumerate(nodes):
        ending[j] = {producer[t] for t in n["inputs"] if producer.get(t, j) < j}
    leaving = [0] * len(nodes)
    for sources in ending:
        for i in sources:
            leaving[i] += 1
    open_from: dict[int, int] = {}  # source -> its edges crossing the point after this node
    cuts: set[int] = set()
    for j in range(len(nodes)):
        for i in ending[j]:
            open_from[i] -= 1
            if not open_from[i]:
                del open_from[i]
        if leaving[j]:
            open_from[j] = leaving[j]
        if leaving[j] >= 2 and len(open_from) == 1:  # only j's edges cross: everything flows
            cuts.add(j)
    if len(cuts) < 2:
        return [None] * len(nodes)
    blocks: list[str] = []
    k = 0
    for j in range(len(nodes)):
        blocks.append(f"block{k}")
        k += j in cuts  # a block ends with the node the next one flows from
    sizes: dict[str, int] = {}
    for b in blocks:
        sizes[b] = sizes.get(b, 0) + 1
    return [b if sizes[b] > 1 else None for b in blocks]


def scope_paths(nodes: list[dict[str, Any]]) -> list[str]:
    """Per node, the name whose `/` levels the view groups by: the node's own name when the
    exporter scoped names (most do); else its module path from the node's "scopes" (PyTorch's
    exporter: `pkg.torch.onnx.name_scopes`) before its name; else its structural block."""
    scoped = sum("/" in n["name"].strip("/") for n in nodes)
    if scoped * 2 >= len(nodes):
        return [n["name"] for n in nodes]
    leaf = [n["name"].replace("/", "_") for n in nodes]
    if any(n.get("scopes") for n in nodes):
        return ["/".join([*n.get("scopes", []), name]) for n, name in zip(nodes, leaf, strict=True)]
    blocks = structural_blocks(nodes)
    return [f"{b}/{name}" if b else name for b, name in zip(blocks, leaf, strict=True)]


@dataclass
class _Unit:
    """One drawn box: a node, or a collapsed group of nodes."""

    label: str
    op: str
    members: list[int]  # node indices (one for a plain node)
    group: str | None = None


def _units(
    nodes: list[dict[str, Any]], depth: int, expanded: set[str]
) -> tuple[list[_Unit], list[int]]:
    """The boxes to draw and, per node, the box it is in."""
    units: list[_Unit] = []
    where: list[int] = []
    groups: dict[str, int] = {}
    paths = scope_paths(nodes) if depth else []
    for i, n in enumerate(nodes):
        g = scope(paths[i], depth) if depth else None
        while g is not None and g in expanded:  # an expanded group shows its next level
            deeper = scope(paths[i], g.count("/") + 2)
            g = deeper if deeper != g else None
        if g is None:
            where.append(len(units))
            units.append(_Unit(n["op_type"], n["op_type"], [i]))
            continue
        if g not in groups:
            groups[g] = len(units)
            units.append(_Unit(g, "group", [], group=g))
        units[groups[g]].members.append(i)
        where.append(groups[g])
    for u in units:  # a group of one is just that node
        if u.group is not None and len(u.members) == 1:
            u.label = u.op = nodes[u.members[0]]["op_type"]
            u.group = None
    return units, where


def layout(nodes: list[dict[str, Any]], depth: int = 0, expanded: list[str] | None = None,
           maxiter: int = 10) -> dict[str, Any]:  # fmt: skip
    """Boxes and edge polylines for `nodes` ({"name", "op_type", "inputs", "outputs"}, optional
    "scopes", in graph order). `depth` > 0 collapses scopes (`scope_paths`) that deep, except
    those in `expanded`.

    Columns, not a dict per box, so that 10,000 boxes cross a process boundary and become
    arrays in a few milliseconds: {"boxes": {"label", "op", "group", "members", "x", "y", "w",
    "h"} (one list each; x, y: the box's centre), "node_box": box index of each node, "edges":
    {"source", "target" (box indices), "offsets", "points"} (edge i's polyline is
    points[offsets[i]:offsets[i + 1]], x0, y0, x1, y1, …), "width", "height"}."""
    ig = import_igraph()
    units, where = _units(nodes, depth, set(expanded or []))
    producer = {t: where[i] for i, n in enumerate(nodes) for t in n["outputs"]}
    pairs = sorted({(producer[t], where[j]) for j, n in enumerate(nodes) for t in n["inputs"]
                    if t in producer and producer[t] != where[j]})  # fmt: skip
    g = ig.Graph(n=len(units), edges=pairs, directed=True)
    widths = [max(MIN_WIDTH, CHAR_WIDTH * len(_text(u)) + 16) for u in units]
    step_x = max(widths, default=MIN_WIDTH) + H_SPACING
    step_y = NODE_HEIGHT + V_SPACING
    placed = g.layout_sugiyama(maxiter=maxiter)
    coords = placed.coords
    left = min((p[0] for p in coords), default=0.0) * step_x - step_x
    top = min((p[1] for p in coords), default=0.0) * step_y - step_y
    xs = [p[0] * step_x - left for p in coords]
    ys = [p[1] * step_y - top for p in coords]
    # Each edge bends through the layers it crosses (igraph's routing: control points per edge).
    offsets, points = [0], []
    for (a, b), bends in zip(pairs, placed.edge_routing, strict=True):
        points += [xs[a], ys[a]]
        for x, y in bends:
            points += [x * step_x - left, y * step_y - top]
        points += [xs[b], ys[b]]
        offsets.append(len(points))
    boxes = {
        "label": [_text(u) for u in units],
        "op": [u.op for u in units],
        "group": [u.group for u in units],
        "members": [u.members for u in units],
        "x": xs,
        "y": ys,
        "w": widths,
        "h": [NODE_HEIGHT] * len(units),
    }
    edges = {"source": [a for a, _ in pairs], "target": [b for _, b in pairs],
             "offsets": offsets, "points": points}  # fmt: skip
    return {"boxes": boxes, "node_box": where, "edges": edges,
            "width": max(xs, default=0.0) + step_x, "height": max(ys, default=0.0) + step_y}  # fmt: skip


def empty() -> dict[str, Any]:
    """A layout with nothing in it (what the view shows for a file it cannot draw)."""
    return layout([])


def polyline(edges: dict[str, list], i: int) -> list[float]:
    """Edge i's points: x0, y0, x1, y1, …"""
    return edges["points"][edges["offsets"][i] : edges["offsets"][i + 1]]


def import_igraph() -> Any:
    """igraph, imported without its matplotlib drawing backend: igraph imports matplotlib.pyplot
    as soon as it is installed (1.8 s on 2 cores against 0.09 s without), and a layout never
    draws. Blocking the import leaves igraph its own fallback (a stub for plotting)."""
    import sys

    if "igraph" in sys.modules:
        return sys.modules["igraph"]
    blocked = "matplotlib" not in sys.modules
    if blocked:
        sys.modules["matplotlib"] = None  # type: ignore[assignment]
    try:
        import igraph
    finally:
        if blocked:
            del sys.modules["matplotlib"]
    return igraph


def _text(u: _Unit) -> str:
    return f"{u.label} · {len(u.members)} ops" if u.group is not None else u.label
