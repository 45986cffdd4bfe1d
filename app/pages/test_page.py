"""Test: one input through the original and every variant side by side, the accuracy table, a
benchmark whose latency plot fills in live, and the INT8 verdict in plain words."""

from __future__ import annotations

import base64
from typing import Any

from PySide6.QtCore import QByteArray, Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.pages.base import Page
from app.widgets.latency_plot import LatencyPlot
from app.widgets.path_picker import PathPicker
from app.widgets.tables import show_table, text_table
from app.workers import LatestOnly
from workflows import present


class TestPage(Page):
    title = "Test"
    icon = "test"

    def __init__(self, window) -> None:
        super().__init__(window)
        layout = QVBoxLayout(self)

        one = QGroupBox("One input, every variant")
        one_layout = QVBoxLayout(one)
        row = QHBoxLayout()
        self.input = PathPicker(
            "an image or a .npy sample", filters="Inputs (*.npy *.png *.jpg *.jpeg)"
        )
        run = QPushButton("Run it")
        run.clicked.connect(self.predict)
        row.addWidget(self.input, 1)
        row.addWidget(run)
        one_layout.addLayout(row)
        side = QHBoxLayout()
        self.thumbnail = QLabel("input")
        self.thumbnail.setObjectName("caption")
        self.thumbnail.setFixedSize(96, 96)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumbnail.setToolTip("The input after preprocessing, as the model sees it")
        side.addWidget(self.thumbnail, 0, Qt.AlignmentFlag.AlignTop)
        self.predictions = QTableWidget(0, 0)
        self.predictions.verticalHeader().setVisible(False)
        self.predictions.setMaximumHeight(150)
        side.addWidget(self.predictions, 1)
        one_layout.addLayout(side)
        layout.addWidget(one)

        acc = QGroupBox("Accuracy on the evaluation data (from quantization)")
        acc_layout = QVBoxLayout(acc)
        self.accuracy = text_table([], fit_contents=True)
        self.accuracy.setMaximumHeight(150)
        acc_layout.addWidget(self.accuracy)
        layout.addWidget(acc)

        bench = QGroupBox("Latency")
        bench_layout = QHBoxLayout(bench)
        left = QVBoxLayout()
        controls = QHBoxLayout()
        controls.addWidget(QLabel("Batch size"))
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        controls.addWidget(self.batch)
        go = QPushButton("Benchmark variants")
        go.clicked.connect(self.benchmark)
        controls.addWidget(go)
        controls.addStretch(1)
        left.addLayout(controls)
        self.latency = text_table([], fit_contents=True)
        left.addWidget(self.latency, 1)
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        left.addWidget(self.verdict)
        bench_layout.addLayout(left, 1)
        self.plot = LatencyPlot()
        bench_layout.addWidget(self.plot, 1)
        layout.addWidget(bench, 1)
        self._thumbnails = LatestOnly("preview", self)
        self._thumbnails.succeeded.connect(self._set_thumbnail)
        self._thumbnails.failed.connect(self._no_thumbnail)

    def on_enter(self) -> None:
        self.show_accuracy()
        self.plot.apply_palette()

    def shutdown(self) -> None:
        self._thumbnails.shutdown()

    def _models(self) -> list[str]:
        models = [self.session.model.path]
        if "quantize" in self.session.results:
            models.append(self.session.results["quantize"]["output"])
        elif "convert" in self.session.results:
            models.append(self.session.results["convert"]["output"])
        return models

    # -- one input ----------------------------------------------------------------------------
    def predict(self) -> None:
        if not self.session.model or not self.input.value():
            self.window_.show_error("Load a model and choose an input first.")
            return
        labels = (self.session.step_options.get("quantize") or {}).get("labels")
        options: dict[str, Any] = {
            "models": self._models(),
            "input": self.input.value(),
            "labels": labels,
            "top_k": 3,
        }
        if self.session.preprocess:
            options["preprocess"] = self.session.preprocess
        self._show_input_thumbnail()
        self.window_.run_step("predict", options, [], self.show_predictions, "Running the input")

    def _show_input_thumbnail(self) -> None:
        """The input as the model sees it (the engine's preview step, in a thread)."""
        self.thumbnail.clear()
        self.thumbnail.setText("input")
        if self.session.inspect is None:
            self._thumbnails.cancel()
            return
        options = {
            "data": self.input.value(),
            "inputs": self.session.inspect["model"]["inputs"],
            "preprocess": self.session.preprocess,
            "count": 1,
        }
        self._thumbnails.run(options)

    def _no_thumbnail(self, _message: str, _details: str) -> None:
        self.thumbnail.setText("no preview")

    def _set_thumbnail(self, r: dict) -> None:
        png = r["samples"][0]["thumbnail_png"] if r["samples"] else None
        if not png:
            self.thumbnail.setText("(not an image)")
            return
        pixmap = QPixmap()
        pixmap.loadFromData(QByteArray(base64.b64decode(png)), "PNG")
        if max(pixmap.width(), pixmap.height()) > 96:
            pixmap = pixmap.scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio)
        self.thumbnail.setPixmap(pixmap)

    def show_predictions(self, r: dict) -> None:
        results = r["results"]
        self.predictions.setColumnCount(len(results))
        self.predictions.setHorizontalHeaderLabels([e["model"].rsplit("/", 1)[-1] for e in results])
        rows = max((len(e["output"].get("top_k", [])) for e in results), default=0) or 1
        self.predictions.setRowCount(rows)
        self.predictions.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        for c, e in enumerate(results):
            out = e["output"]
            if "top_k" in out:
                for r_, t in enumerate(out["top_k"]):
                    self.predictions.setItem(
                        r_, c, QTableWidgetItem(f"{t['label']}  {100 * t['probability']:.1f} %")
                    )
            else:
                self.predictions.setItem(
                    0,
                    c,
                    QTableWidgetItem(
                        f"{out['shape']} min {out['min']:.3g} max {out['max']:.3g} mean {out['mean']:.3g}"
                    ),
                )

    # -- accuracy -------------------------------------------------------------------------------
    def show_accuracy(self) -> None:
        q = self.session.results.get("quantize")
        if not q:
            self.accuracy.setRowCount(0)
            return
        show_table(self.accuracy, present.accuracy(q))

    # -- benchmark ------------------------------------------------------------------------------
    def benchmark(self) -> None:
        models = self._models()[1:]
        if not models:
            self.window_.show_error(
                "Convert or quantize the model first: the benchmark times ONNX variants."
            )
            return
        from app.settings import threads

        user = {"batch_sizes": [self.batch.value()], "threads": [threads()], "max_seconds": 5.0}
        options, out = self.session.plan("benchmark", user)

        def done(result: dict) -> None:
            self.session.record("benchmark", user, result)
            self.show_benchmark(result)

        self.plot.clear()
        self.window_.run_step(
            "benchmark", options, [out], done, "Benchmarking", on_data=self.plot.add
        )

    def show_benchmark(self, r: dict) -> None:
        latency = present.benchmark_configs(r)
        show_table(self.latency, latency, ["variant", "p50 ms", "p99 ms", "samples/s", "INT8 ops"])
        self.verdict.setText("\n".join(present.verdicts(r)))
