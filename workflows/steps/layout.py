"""The graph-layout step: where the native graph view draws each node of an ONNX model
(workflows.graph_layout), computed in a worker so the window never waits on it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflows.options import Options, from_dict, option
from workflows.progress import Progress, null_progress


@dataclass
class LayoutOptions(Options):
    """Options of the layout step."""

    model: str = option("", "The ONNX model to lay out")
    depth: int = option(0, "Collapse name scopes this deep into one box each (0: every node)")
    expanded: list[str] = option([], "Scopes to show expanded although collapsed by depth")


def layout_model(opts: LayoutOptions, progress: Progress | None = None) -> dict[str, Any]:
    """The layout of the model's top-level graph, with its node names in graph order."""
    from workflows.formats import onnx_format
    from workflows.graph_layout import layout

    progress = progress or null_progress()
    started = time.perf_counter()
    proto = onnx_format.read_proto(Path(opts.model), load_external_data=False)
    # Unnamed nodes are named as the compare step names them (op and first output).
    nodes = [{"name": n.name or f"{n.op_type}→{n.output[0] if n.output else i}", "op_type": n.op_type,
              "inputs": list(n.input), "outputs": list(n.output), "scopes": module_path(n)}
             for i, n in enumerate(proto.graph.node)]  # fmt: skip
    progress.update(0.3, f"Laying out {len(nodes):,} nodes")
    result = layout(nodes, opts.depth, opts.expanded)
    return {
        "step": "layout",
        "model": opts.model,
        "depth": opts.depth,
        "expanded": list(opts.expanded),
        # Names only, no dict per node: the result crosses to the app's thread in one unpickle
        # (holding the GIL), and 10,000 dicts made that and the next garbage collection longer.
        "names": [n["name"] for n in nodes],
        **result,
        "seconds": round(time.perf_counter() - started, 3),
    }


def module_path(node: Any) -> list[str]:
    """The PyTorch module a node came from, outermost first (["layer1", "layer1.0", "layer1.0.conv1"]),
    from the metadata PyTorch's ONNX exporter writes on each node (its node names, node_conv2d_3,
    have no scopes); [] for other exporters. Read with literal_eval: never code."""
    import ast

    for prop in getattr(node, "metadata_props", ()):
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return []
            if isinstance(scopes, list) and all(isinstance(x, str) for x in scopes):
                return [x for x in scopes[:-1] if x]  # the last: the node itself
    return []


def run(options: LayoutOptions | dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Runner entry point."""
    return layout_model(from_dict(LayoutOptions, options), progress)
