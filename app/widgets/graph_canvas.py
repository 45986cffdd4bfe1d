"""The native graph view (issue 16): draws a `workflows.graph_layout` layout, coloured by an
overlay, with a minimap strip on the right.

One widget paints everything from arrays, with no item per node: a 10,000-node graph costs
nothing until it is on screen, and each paint draws only the boxes and edges in view (far out,
boxes without text and no edges; the minimap is drawn once per layout or overlay). Pan with a
drag or the wheel, zoom with Ctrl+wheel or +/-; click a box to select it, double-click a
collapsed block to open it (`block_opened`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QWidget

from workflows.graph_layout import polyline

MINIMAP_WIDTH = 56
MIN_SCALE, MAX_SCALE = 0.02, 3.0
TEXT_SCALE = 0.45  # below this zoom boxes are drawn without labels
EDGE_LIMIT = 6000  # more edges in view than this: edges are left out of the frame

GOOD = QColor("#16a34a")
BAD = QColor("#dc2626")
PLAIN = QColor("#e2e8f0")
GROUP = QColor("#c7d2fe")
DIMMED = QColor("#f1f5f9")


def badness_colour(level: float | None) -> QColor | None:
    """Green (0) through amber to red (1)."""
    if level is None:
        return None
    mid = QColor("#f59e0b")
    a, b, t = (GOOD, mid, level * 2) if level < 0.5 else (mid, BAD, level * 2 - 1)
    return QColor(
        int(a.red() + (b.red() - a.red()) * t),
        int(a.green() + (b.green() - a.green()) * t),
        int(a.blue() + (b.blue() - a.blue()) * t),
    )


class GraphCanvas(QWidget):
    """See module doc. `set_layout`, then optionally `set_colours`; `jump_to(box)` centres."""

    selected = Signal(int)  # box index
    block_opened = Signal(str)  # the collapsed block's scope

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(320, 240)
        self.labels: list[str] = []
        self.groups: list[str | None] = []
        self.names: list[str] = []  # the graph's nodes, in graph order
        self.members: list[list[int]] = []  # per box, its nodes
        self._node_box: dict[str, int] = {}
        self.edges: dict[str, list] = {"offsets": [0], "points": []}
        self._xy = np.zeros((0, 4))  # left, top, right, bottom per box
        self.centres = np.zeros((0, 2))
        self._is_group = np.zeros(0, bool)
        self._edge_bounds = np.zeros((0, 4))
        self._paths: dict[int, QPainterPath] = {}
        self.colours: list[QColor | None] = []
        self.values: list[str] = []  # the text under each label (the overlay's value)
        self.highlight: set[int] = set()  # boxes past the threshold (the rest dimmed)
        self.current = -1
        self.scale = 1.0
        self.origin = QPointF(0, 0)  # world point at the widget's top-left
        self.size_world = (1.0, 1.0)
        self._minimap: QImage | None = None
        self._drag: QPointF | None = None
        self.paint_ms: list[float] = []  # for benchmarks: how long each paint took

    # Data -------------------------------------------------------------------------------
    def set_layout(self, result: dict[str, Any]) -> None:
        """Show a layout (the layout step's result); the view starts at the graph's top."""
        boxes, edges = result["boxes"], result["edges"]
        self.labels = boxes["label"]
        self.groups = boxes["group"]
        self.names = result.get("names", [])
        self.members = boxes["members"]
        self._node_box = dict(zip(self.names, result.get("node_box", []), strict=False))
        self.edges = edges
        self.size_world = (float(result["width"]), float(result["height"]))
        x, y = np.asarray(boxes["x"], float), np.asarray(boxes["y"], float)
        w, h = np.asarray(boxes["w"], float) / 2, np.asarray(boxes["h"], float) / 2
        self._xy = np.stack([x - w, y - h, x + w, y + h], axis=1).reshape(-1, 4)
        self.centres = np.stack([x, y], axis=1).reshape(-1, 2)
        points = np.asarray(edges["points"], float)
        starts = np.asarray(edges["offsets"][:-1], dtype=np.intp)
        if len(starts):
            px, py = points[0::2], points[1::2]
            s = starts // 2
            self._edge_bounds = np.stack([np.minimum.reduceat(px, s), np.minimum.reduceat(py, s),
                                          np.maximum.reduceat(px, s),
                                          np.maximum.reduceat(py, s)], axis=1)  # fmt: skip
        else:
            self._edge_bounds = np.zeros((0, 4))
        self._is_group = np.array([g is not None for g in self.groups], bool)
        self._paths = {}  # each built when first drawn
        count = len(self.labels)
        self.colours = [None] * count
        self.values = [""] * count
        self.highlight = set()
        self.current = -1
        self.scale = 1.0
        self.origin = QPointF(0, 0)
        if self.size_world[0] * self.scale > self._view_width():  # wide: fit the width
            self.scale = max(MIN_SCALE, self._view_width() / self.size_world[0])
        else:  # narrow: centred
            self.origin = QPointF((self.size_world[0] - self._view_width() / self.scale) / 2, 0)
        self._minimap = None
        self.update()

    def box_of(self, node: str) -> int:
        """The box a node is drawn in (-1: not in this graph)."""
        return self._node_box.get(node, -1)

    @property
    def count(self) -> int:
        """Boxes drawn."""
        return len(self._xy)

    def set_colours(self, colours: list[QColor | None], values: list[str],
                    highlight: set[int] | None = None) -> None:  # fmt: skip
        """Per box: its colour (None: plain), the value written under its label, and which
        boxes stand out (None: all)."""
        self.colours, self.values = colours, values
        self.highlight = set(range(self.count)) if highlight is None else highlight
        self._minimap = None
        self.update()

    def jump_to(self, box: int) -> None:
        """Centre the view on a box and select it."""
        if not 0 <= box < self.count:
            return
        self.current = box
        self.scale = max(self.scale, 0.8)
        x, y = self.centres[box]
        self.origin = QPointF(x - self._view_width() / 2 / self.scale,
                              y - self.height() / 2 / self.scale)  # fmt: skip
        self.selected.emit(box)
        self.update()

    def visible_world(self) -> QRectF:
        """The part of the graph in view, in layout coordinates."""
        return QRectF(self.origin.x(), self.origin.y(), self._view_width() / self.scale,
                      self.height() / self.scale)  # fmt: skip

    # Painting ---------------------------------------------------------------------------
    def _view_width(self) -> int:
        return max(1, self.width() - MINIMAP_WIDTH)

    def _in_view(self, bounds: np.ndarray) -> np.ndarray:
        r = self.visible_world()
        if not len(bounds):
            return np.zeros(0, dtype=int)
        hit = ((bounds[:, 2] >= r.left()) & (bounds[:, 0] <= r.right())
               & (bounds[:, 3] >= r.top()) & (bounds[:, 1] <= r.bottom()))  # fmt: skip
        return np.flatnonzero(hit)

    def paintEvent(self, _event: Any) -> None:
        import time

        started = time.perf_counter()
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("white"))
        if not self.count:
            p.setPen(QColor("#64748b"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No graph")
            p.end()
            return
        p.save()
        p.setClipRect(0, 0, self._view_width(), self.height())
        p.scale(self.scale, self.scale)
        p.translate(-self.origin)
        self._draw_edges(p)
        self._draw_boxes(p)
        p.restore()
        self._draw_minimap(p)
        p.end()
        self.paint_ms.append((time.perf_counter() - started) * 1000)

    def _draw_edges(self, p: QPainter) -> None:
        shown = self._in_view(self._edge_bounds)
        if len(shown) > EDGE_LIMIT or self.scale < TEXT_SCALE / 4:
            return
        p.setPen(QPen(QColor("#94a3b8"), 1.2 / max(self.scale, 0.3)))
        p.setRenderHint(QPainter.RenderHint.Antialiasing, self.scale >= TEXT_SCALE)
        for i in shown:
            path = self._paths.get(i)
            if path is None:  # made when first in view, then kept
                pts = polyline(self.edges, int(i))
                path = self._paths[i] = QPainterPath(QPointF(pts[0], pts[1]))
                for k in range(2, len(pts), 2):
                    path.lineTo(pts[k], pts[k + 1])
            p.drawPath(path)

    def _fill(self, i: int) -> QColor:
        colour = self.colours[i] if i < len(self.colours) else None
        if colour is None:
            colour = GROUP if self.groups[i] else PLAIN
        if self.highlight and i not in self.highlight:
            return DIMMED
        return colour

    def _draw_boxes(self, p: QPainter) -> None:
        shown = self._in_view(self._xy)
        detailed = self.scale >= TEXT_SCALE
        p.setRenderHint(QPainter.RenderHint.Antialiasing, detailed)
        border = QPen(QColor("#475569"), 1.0 / self.scale)
        if not detailed:  # far out: plain rectangles, one colour at a time
            p.setPen(Qt.PenStyle.NoPen)
            by_colour: dict[int, list[QRectF]] = {}
            for i in shown:
                left, top, right, bottom = self._xy[i]
                by_colour.setdefault(self._fill(i).rgba(), []).append(
                    QRectF(left, top, right - left, bottom - top)
                )
            for rgba, rects in by_colour.items():
                p.setBrush(QColor.fromRgba(rgba))
                p.drawRects(rects)
        else:
            font = QFont(self.font())
            font.setPointSizeF(8.5)
            p.setFont(font)
            for i in shown:
                left, top, right, bottom = self._xy[i]
                rect = QRectF(left, top, right - left, bottom - top)
                p.setPen(border)
                p.setBrush(self._fill(i))
                p.drawRoundedRect(rect, 4, 4)
                p.setPen(QColor("#0f172a"))
                text = self.labels[i]
                if self.values and self.values[i]:
                    text += f"\n{self.values[i]}"
                p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
        if 0 <= self.current < self.count:
            left, top, right, bottom = self._xy[self.current]
            p.setPen(QPen(QColor("#2563eb"), 3.0 / self.scale))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRect(QRectF(left, top, right - left, bottom - top).adjusted(-3, -3, 3, 3))

    def _draw_minimap(self, p: QPainter) -> None:
        """The whole graph squeezed into a strip (overlay colours kept), and where the view is."""
        strip = QRectF(self._view_width(), 0, MINIMAP_WIDTH, self.height())
        if self._minimap is None or self._minimap.height() != self.height():
            self._minimap = self._render_minimap(int(strip.width()), max(1, self.height()))
        p.drawImage(strip.topLeft(), self._minimap)
        p.setClipRect(strip)  # the view's outline never spills onto the graph
        sx = strip.width() / self.size_world[0]
        sy = strip.height() / self.size_world[1]
        r = self.visible_world()
        p.setPen(QPen(QColor("#2563eb"), 1.5))
        p.setBrush(QColor(37, 99, 235, 40))
        p.drawRect(QRectF(strip.left() + r.left() * sx, r.top() * sy,
                          max(3.0, r.width() * sx), max(3.0, r.height() * sy)))  # fmt: skip

    def _box_rgba(self) -> tuple[np.ndarray, np.ndarray]:
        """Each box's fill as 0xAARRGGBB (as `_fill` gives it), and which boxes are coloured."""
        n = self.count
        coloured = np.zeros(n, bool)
        rgba = np.where(self._is_group, np.uint32(GROUP.rgba()), np.uint32(PLAIN.rgba()))
        for i, c in enumerate(self.colours[:n]):
            if c is not None:
                rgba[i], coloured[i] = c.rgba(), True
        if self.highlight and len(self.highlight) < n:
            dim = np.ones(n, bool)
            dim[list(self.highlight)] = False
            rgba[dim], coloured[dim] = QColor("#e2e8f0").rgba(), False
        return rgba, coloured

    def _render_minimap(self, width: int, height: int) -> QImage:
        """Every box rasterised with numpy (QPainter took 60 ms for 10,000 boxes, a stall):
        each at least a pixel, coloured boxes written last so a red node is never hidden."""
        sx, sy = width / self.size_world[0], height / self.size_world[1]
        image = np.full((height, width), 0xFFF8FAFC, np.uint32)  # Format_ARGB32's own layout
        if self.count:
            x0 = np.clip((self._xy[:, 0] * sx).astype(int), 0, width - 1)
            y0 = np.clip((self._xy[:, 1] * sy).astype(int), 0, height - 1)
            x1 = np.clip(np.maximum(x0 + 1, np.ceil(self._xy[:, 2] * sx).astype(int)), 1, width)
            y1 = np.clip(np.maximum(y0 + 1, np.ceil(self._xy[:, 3] * sy).astype(int)), 1, height)
            rgba, coloured = self._box_rgba()
            order = np.argsort(coloured, kind="stable")  # plain first, coloured on top
            w, h = (x1 - x0)[order], (y1 - y0)[order]
            areas = w * h
            box = np.repeat(order, areas)
            k = np.arange(int(areas.sum())) - np.repeat(np.cumsum(areas) - areas, areas)
            bw = np.repeat(w, areas)
            image[y0[box] + k // bw, x0[box] + k % bw] = rgba[box]
        qimage = QImage(image.data, width, height, width * 4, QImage.Format.Format_ARGB32)
        return qimage.copy()  # owns its pixels (the array goes away)

    # Interaction ------------------------------------------------------------------------
    def box_at(self, pos: QPointF) -> int:
        """The box under a widget position, or -1."""
        x = self.origin.x() + pos.x() / self.scale
        y = self.origin.y() + pos.y() / self.scale
        if not len(self._xy):
            return -1
        hit = np.flatnonzero((self._xy[:, 0] <= x) & (self._xy[:, 2] >= x)
                             & (self._xy[:, 1] <= y) & (self._xy[:, 3] >= y))  # fmt: skip
        return int(hit[0]) if len(hit) else -1

    def _centre_from_minimap(self, pos: QPointF) -> None:
        y = pos.y() / max(1, self.height()) * self.size_world[1]
        self.origin = QPointF(self.origin.x(), y - self.height() / 2 / self.scale)
        self.update()

    def mousePressEvent(self, event: Any) -> None:
        pos = event.position()
        if pos.x() >= self._view_width():
            self._centre_from_minimap(pos)
            self._drag = None
            return
        self._drag = pos
        box = self.box_at(pos)
        if box >= 0:
            self.current = box
            self.selected.emit(box)
            self.update()

    def mouseMoveEvent(self, event: Any) -> None:
        pos = event.position()
        if self._drag is None:
            if event.buttons() and pos.x() >= self._view_width():
                self._centre_from_minimap(pos)
            return
        delta = (pos - self._drag) / self.scale
        self.origin -= delta
        self._drag = pos
        self.update()

    def mouseReleaseEvent(self, _event: Any) -> None:
        self._drag = None

    def mouseDoubleClickEvent(self, event: Any) -> None:
        box = self.box_at(event.position())
        if box >= 0 and self.groups[box]:
            self.block_opened.emit(self.groups[box])

    def zoom(self, factor: float, at: QPointF | None = None) -> None:
        """Zoom by `factor` keeping the world point under `at` (default: the centre) in place."""
        at = at or QPointF(self._view_width() / 2, self.height() / 2)
        world = self.origin + at / self.scale
        self.scale = min(MAX_SCALE, max(MIN_SCALE, self.scale * factor))
        self.origin = world - at / self.scale
        self.update()

    def wheelEvent(self, event: Any) -> None:
        steps = event.angleDelta().y() / 120
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom(1.2**steps, event.position())
        else:
            self.origin -= QPointF(0, steps * 120 / self.scale)
            self.update()

    def keyPressEvent(self, event: Any) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.zoom(1.25)
        elif key == Qt.Key.Key_Minus:
            self.zoom(0.8)
        else:
            super().keyPressEvent(event)
