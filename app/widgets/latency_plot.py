"""Latency of every timed run, one line per variant, drawn while the benchmark runs (Qt Charts)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCharts import QChart, QChartView, QLineSeries, QValueAxis
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QApplication

MAX_POINTS = 4000  # per line; beyond that every other point is dropped (the shape stays)


def follow_palette(chart: QChart) -> None:
    """Draw `chart` in the app's light or dark palette (charts do not follow it themselves)."""
    palette = QApplication.palette()
    dark = palette.color(QPalette.ColorRole.Window).lightness() < 128
    chart.setTheme(QChart.ChartTheme.ChartThemeDark if dark else QChart.ChartTheme.ChartThemeLight)
    chart.setBackgroundBrush(palette.base())


class LatencyPlot(QChartView):
    """`add(event)` with the benchmark's live events; `clear()` before a new run."""

    def __init__(self) -> None:
        chart = QChart()
        chart.setTitle("Latency per run (live)")
        chart.legend().setAlignment(Qt.AlignmentFlag.AlignBottom)
        chart.setMargins(chart.margins() * 0)
        super().__init__(chart)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setMinimumHeight(220)
        self.x_axis = QValueAxis()
        self.x_axis.setTitleText("run")
        self.x_axis.setLabelFormat("%d")
        self.y_axis = QValueAxis()
        self.y_axis.setTitleText("ms")
        chart.addAxis(self.x_axis, Qt.AlignmentFlag.AlignBottom)
        chart.addAxis(self.y_axis, Qt.AlignmentFlag.AlignLeft)
        self.series: dict[str, QLineSeries] = {}
        self.values: dict[str, list[float]] = {}
        self.apply_palette()
        self.clear()

    def apply_palette(self) -> None:
        """Follow the app's light or dark palette."""
        follow_palette(self.chart())

    def clear(self) -> None:
        for series in self.series.values():
            self.chart().removeSeries(series)
        self.series, self.values = {}, {}
        self.x_axis.setRange(0, 100)
        self.y_axis.setRange(0, 1)

    def add(self, event: dict[str, Any]) -> None:
        """Append a batch of latencies for one (variant, batch, threads) configuration."""
        name = event["variant"]
        if event.get("batch", 1) != 1:
            name += f" b{event['batch']}"
        series = self.series.get(name)
        if series is None:
            series = QLineSeries()
            series.setName(name)
            self.chart().addSeries(series)
            series.attachAxis(self.x_axis)
            series.attachAxis(self.y_axis)
            self.series[name], self.values[name] = series, []
        values = self.values[name]
        values += event["latencies_ms"]
        step = 1
        while len(values) // step > MAX_POINTS:
            step *= 2
        # Runs on the GUI thread at every event: touch only the points drawn, and select the
        # percentile in linear time (a benchmark of a tiny model can record 100k+ runs).
        series.replace([QPointF(i * step, v) for i, v in enumerate(values[::step])])
        longest = max(len(v) for v in self.values.values())
        self.x_axis.setRange(0, max(100, longest))
        # Scale to the 99th percentile seen so far: one slow outlier must not flatten the lines.
        every = np.concatenate([np.asarray(v) for v in self.values.values()])
        k = min(len(every) - 1, int(0.99 * len(every)))
        top = float(np.partition(every, k)[k])
        self.y_axis.setRange(0, top * 1.15)
        self.y_axis.applyNiceNumbers()

    def series_names(self) -> list[str]:
        return list(self.series)
