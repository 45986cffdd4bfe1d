"""Summary: what was produced and its figures; save the workflow; open the report."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QTextBrowser, QVBoxLayout

from app.pages.base import Page


class SummaryPage(Page):
    title = "Summary"
    icon = "summary"

    def __init__(self, window) -> None:
        super().__init__(window)
        layout = QVBoxLayout(self)
        self.text = QTextBrowser()
        layout.addWidget(self.text, 1)
        row = QHBoxLayout()
        save = QPushButton("Save workflow…")
        save.clicked.connect(self._ask_save)
        report = QPushButton("Open report")
        report.clicked.connect(self.open_report)
        row.addWidget(save)
        row.addWidget(report)
        row.addStretch(1)
        layout.addLayout(row)

    def on_enter(self) -> None:
        s = self.session
        if not s.model:
            self.text.setMarkdown("Nothing yet: load a model.")
            return
        lines = [f"# {s.name}", f"Source: `{s.model.path}`", ""]
        r = s.results
        if "convert" in r:
            lines.append(
                f"- **ONNX**: `{r['convert']['output']}` ({r['convert']['size_bytes'] / 1024:.1f} KB)"
            )
        if "validate" in r:
            w = r["validate"]["worst"]
            lines.append(
                f"- **Validation**: {'pass' if r['validate']['passed'] else 'FAIL'}, "
                f"max abs error {w.get('max_abs_error', 0):.2g}"
            )
        for v in r.get("quantize", {}).get("variants", []):
            top1 = v["accuracy"].get("top1")
            lines.append(
                f"- **{v['name']}**: {v['size_bytes'] / 1024:.1f} KB ({v['size_ratio']:.2f}x smaller)"
                + (f", top-1 {100 * top1:.2f} %" if top1 is not None else "")
            )
        if "benchmark" in r:
            b = r["benchmark"]
            first = b["configs"][0]
            same = [
                c
                for c in b["configs"]
                if (c["batch"], c["threads"]) == (first["batch"], first["threads"])
            ]
            times = ", ".join(f"{c['variant']} {c['p50_ms']:.3g} ms" for c in same)
            lines.append(f"- **Latency** (p50, batch {first['batch']}): {times}")
            lines += [
                f"  - {v['variant']} (batch {v['batch']}): {v['verdict']}"
                for v in b["verdicts"]
                if (v["batch"], v["threads"]) == (first["batch"], first["threads"])
            ]
        for step in ("export-docker", "export-torchserve", "export-tflite"):
            if step in r:
                lines.append(f"- **{step.removeprefix('export-')}**: `{r[step]['output']}`")
        lines += [
            "",
            "Save the workflow to replay these steps headless (CI): `dockyard-cli run WORKFLOW`.",
        ]
        self.text.setMarkdown("\n".join(lines))

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save workflow", str(Path.home() / "workflow.yaml"), "Workflow (*.yaml *.json)"
        )
        if path:
            self.save_workflow(Path(path))

    def save_workflow(self, path: Path) -> None:
        """Write the steps done so far; `dockyard-cli run PATH` replays them."""
        self.session.workflow().save(path)
        self.text.append(f"\nSaved {path}. Replay it headless with: dockyard-cli run {path}")

    def open_report(self) -> None:
        options, out = self.session.plan("report", {})
        if not options["inputs"]:
            self.window_.show_error(
                "Quantize (and benchmark) first: the report shows their figures."
            )
            return

        def done(result: dict) -> None:
            self.session.record("report", {}, result)
            QDesktopServices.openUrl(QUrl.fromLocalFile(result["html"]))

        self.window_.run_step("report", options, [out], done, "Writing the report")
