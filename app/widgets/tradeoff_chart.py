"""The variants' trade-off: top-1 accuracy (with the gate's 95 % interval) against p50 latency,
or against size when nothing was timed; each point labelled with its name and size (Qt Charts)."""

from __future__ import annotations

from PySide6.QtCharts import QChart, QChartView, QLineSeries, QScatterSeries, QValueAxis
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QPainter

from app.widgets.latency_plot import follow_palette
from workflows.handoff import Point, pareto
from workflows.present import size


class TradeoffChart(QChartView):
    """`show_points(points)`; an empty list shows what to do to get a chart."""

    def __init__(self, compact: bool = False) -> None:
        chart = QChart()
        # At the right: one line per variant, so long names ("pruned+int8-static") stay whole.
        # Compact (half a page wide): a short title and names without sizes (the table beside
        # the chart has them).
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignRight)
        self.compact = compact
        super().__init__(chart)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumHeight(240)
        self.x_axis = QValueAxis()
        self.y_axis = QValueAxis()
        self.y_axis.setTitleText("top-1 %")
        self.y_axis.setLabelFormat("%.1f")
        chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)
        self.points: list[Point] = []
        self.best: list[str] = []  # the Pareto-best variants' names (★ in the legend)

    def show_points(self, points: list[Point]) -> None:
        chart = self.chart()
        chart.removeAllSeries()
        follow_palette(chart)  # the theme may have changed since the last time
        measured = [p for p in points if p.top1 is not None]
        self.points = measured
        if not measured:
            chart.setTitle("Quantize (and benchmark) the model to compare its variants here")
            return
        timed = all(p.p50_ms is not None for p in measured)
        x_of = (lambda p: p.p50_ms * 1000) if timed else (lambda p: p.size_bytes / 1024)
        latency = "p50, µs at batch 1" if self.compact else "p50 latency, µs at batch 1"
        self.x_axis.setTitleText(latency if timed else "size, KB")
        self.x_axis.setLabelFormat("%.3g")
        against = "latency" if timed else "size"
        chart.setTitle(
            f"Variants: top-1 against {against}; ★ Pareto-best"
            if self.compact
            else f"Variants: accuracy against {against} (upper left is better)"
            "; ★ Pareto-best (nothing beats it on accuracy, latency and size)"
        )
        chart.setToolTip("Upper left is better; ★ Pareto-best: nothing beats it on accuracy, "
                         "latency and size")  # fmt: skip
        float_top1 = next((p.top1 for p in measured if p.ci_points is None), None)
        self.best = pareto(measured)
        ys: list[float] = []
        for p in measured:
            x, y = x_of(p), p.top1 * 100
            dot = QScatterSeries()
            star = " ★" if p.name in self.best and len(measured) > 1 else ""
            dot.setName(
                f"{p.name}{star}" if self.compact else f"{p.name} · {size(p.size_bytes)}{star}"
            )
            dot.setMarkerSize(12 if p.passed is not False else 9)
            dot.append(QPointF(x, y))
            chart.addSeries(dot)
            dot.attachAxis(self.x_axis)
            dot.attachAxis(self.y_axis)
            ys.append(y)
            if p.ci_points is not None and float_top1 is not None:
                # The gate bounds the drop from float; as accuracy: float - drop.
                lo, hi = float_top1 * 100 - p.ci_points[1], float_top1 * 100 - p.ci_points[0]
                bar = QLineSeries()
                bar.append(QPointF(x, lo))
                bar.append(QPointF(x, hi))
                bar.setColor(dot.color())
                chart.addSeries(bar)
                bar.attachAxis(self.x_axis)
                bar.attachAxis(self.y_axis)
                chart.legend().markers(bar)[0].setVisible(False)
                ys += [lo, hi]
        xs = [x_of(p) for p in measured]
        pad_x = max(xs) * 0.15 or 1.0
        self.x_axis.setRange(max(0.0, min(xs) - pad_x), max(xs) + pad_x)
        pad_y = max(0.5, (max(ys) - min(ys)) * 0.2)
        self.y_axis.setRange(max(0.0, min(ys) - pad_y), min(100.0, max(ys) + pad_y))
