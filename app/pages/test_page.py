"""Test: one input through the original and every variant, accuracy, latency and the INT8 verdict."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from app.pages.base import Page, PathPicker


class TestPage(Page):
    title = "Test"

    def __init__(self, window) -> None:
        super().__init__(window)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.input = PathPicker(
            "an image or a .npy sample", filters="Inputs (*.npy *.png *.jpg *.jpeg)"
        )
        run = QPushButton("Run it")
        run.clicked.connect(self.predict)
        row.addWidget(self.input, 1)
        row.addWidget(run)
        layout.addLayout(row)
        self.predictions = QTableWidget(0, 0)
        layout.addWidget(self.predictions, 1)
        bench = QHBoxLayout()
        bench.addWidget(QLabel("Benchmark batch size"))
        self.batch = QSpinBox()
        self.batch.setRange(1, 1024)
        bench.addWidget(self.batch)
        go = QPushButton("Benchmark variants")
        go.clicked.connect(self.benchmark)
        bench.addWidget(go)
        bench.addStretch(1)
        layout.addLayout(bench)
        self.latency = QTableWidget(0, 5)
        self.latency.setHorizontalHeaderLabels(
            ["variant", "p50 ms", "p99 ms", "samples/s", "INT8 ops"]
        )
        self.latency.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.latency, 1)
        self.verdict = QLabel()
        self.verdict.setWordWrap(True)
        layout.addWidget(self.verdict)

    def _models(self) -> list[str]:
        models = [self.session.model.path]
        if "quantize" in self.session.results:
            models.append(self.session.results["quantize"]["output"])
        elif "convert" in self.session.results:
            models.append(self.session.results["convert"]["output"])
        return models

    def predict(self) -> None:
        if not self.session.model or not self.input.value():
            self.window_.show_error("Load a model and choose an input first.")
            return
        labels = (self.session.step_options.get("quantize") or {}).get("labels")
        options = {
            "models": self._models(),
            "input": self.input.value(),
            "labels": labels,
            "top_k": 3,
        }
        if self.session.preprocess:
            options["preprocess"] = self.session.preprocess
        self.window_.run_step("predict", options, [], self.show_predictions, "Running the input")

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

    def benchmark(self) -> None:
        models = self._models()[1:]
        if not models:
            self.window_.show_error(
                "Convert or quantize the model first: the benchmark times ONNX variants."
            )
            return
        from app.settings import threads

        user = {"batch_sizes": [self.batch.value()], "threads": [threads()], "max_seconds": 5.0}
        out = self.session.folder("benchmark.json")
        options = {"models": models, "output": str(out), **user}

        def done(result: dict) -> None:
            self.session.record("benchmark", user, result)
            self.show_benchmark(result)

        self.window_.run_step("benchmark", options, [out], done, "Benchmarking")

    def show_benchmark(self, r: dict) -> None:
        fractions = {v["name"]: v["diagnostics"]["fraction_int8"] for v in r["variants"]}
        self.latency.setRowCount(len(r["configs"]))
        for i, c in enumerate(r["configs"]):
            for j, text in enumerate(
                [
                    c["variant"],
                    f"{c['p50_ms']:.3f}",
                    f"{c['p99_ms']:.3f}",
                    f"{c['throughput_per_s']:,.0f}",
                    f"{fractions[c['variant']]:.0%}",
                ]
            ):
                self.latency.setItem(i, j, QTableWidgetItem(text))
        self.verdict.setText("\n".join(f"{v['variant']}: {v['verdict']}" for v in r["verdicts"]))
