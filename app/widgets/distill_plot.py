"""Distillation as it runs: the training loss and the judged figure (top-1 %, agreement % or SQNR
dB) against the step, drawn from the prune step's live events (Qt Charts)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCharts import QChart, QChartView, QLineSeries, QScatterSeries, QValueAxis
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QPainter

from app.widgets.latency_plot import follow_palette


class DistillPlot(QChartView):
    """`add(event)` with each judged point of the distillation; `clear()` before a new run."""

    def __init__(self) -> None:
        chart = QChart()
        chart.setTitle("Distillation (live)")
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        chart.setMargins(chart.margins() * 0)
        super().__init__(chart)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumHeight(180)
        self.steps_axis = QValueAxis()
        self.steps_axis.setTitleText("step")
        self.steps_axis.setLabelFormat("%d")
        self.loss_axis = QValueAxis()
        self.loss_axis.setTitleText("loss")
        self.figure_axis = QValueAxis()
        self.figure_axis.setTitleText("top-1 %")
        chart.addAxis(self.steps_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.loss_axis, Qt.AlignmentFlag.AlignLeft)
        chart.addAxis(self.figure_axis, Qt.AlignmentFlag.AlignRight)
        self.loss = QLineSeries()
        self.loss.setName("distillation loss")
        self.figure = QLineSeries()
        self.figure.setName("held-out figure")
        self.passed = QScatterSeries()
        self.passed.setName("gate passed")
        self.passed.setMarkerSize(10)
        for series, axis in ((self.loss, self.loss_axis), (self.figure, self.figure_axis),
                             (self.passed, self.figure_axis)):  # fmt: skip
            chart.addSeries(series)
            series.attachAxis(self.steps_axis)
            series.attachAxis(axis)
        self.points: list[dict[str, Any]] = []
        follow_palette(chart)
        self.clear()

    def apply_palette(self) -> None:
        follow_palette(self.chart())

    def clear(self) -> None:
        self.points = []
        for series in (self.loss, self.figure, self.passed):
            series.clear()
        self.steps_axis.setRange(0, 100)
        self.loss_axis.setRange(0, 1)
        self.figure_axis.setRange(0, 100)

    def add(self, event: dict[str, Any]) -> None:
        """One judged point: {"kind": "distill", "step", "loss", "figure", "decision", "steps"}."""
        if event.get("kind") != "distill":
            return
        self.points.append(event)
        self.steps_axis.setRange(0, max(event.get("steps") or 1, 1))
        if event.get("loss") is not None:
            self.loss.append(QPointF(event["step"], event["loss"]))
            top = max(p["loss"] for p in self.points if p.get("loss") is not None)
            self.loss_axis.setRange(0, top * 1.1 or 1)
        self.figure.append(QPointF(event["step"], event["figure"]))
        if event.get("decision") == "pass":
            self.passed.append(QPointF(event["step"], event["figure"]))
        figures = [p["figure"] for p in self.points]
        low, high = min(figures), max(figures)
        self.figure_axis.setRange(max(0.0, low - 5), high + 2 if high > 90 else high * 1.1 + 1)

    def set_figure_title(self, title: str) -> None:
        """Name the judged figure ("top-1 %", "top-1 agreement %", "mean SQNR dB")."""
        self.figure_axis.setTitleText(title)
        self.figure.setName(f"held-out {title}")
