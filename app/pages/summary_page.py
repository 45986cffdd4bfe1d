"""Summary: what was produced and its figures; save the workflow; open the report."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QTextBrowser, QVBoxLayout

from app.pages.base import Page
from workflows import present


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
        lines += present.summary_lines(s.results)
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
