"""Summary: a card per artifact (what it is, size, accuracy, p50, where it runs, the command that
runs it), the variants' trade-off chart, and the handoff: open the folder or the report, copy a
Markdown note for a ticket, save the workflow for CI."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.pages.base import Page
from app.widgets.path_label import PathLabel
from app.widgets.tradeoff_chart import TradeoffChart
from workflows import handoff
from workflows.present import size


class ArtifactCard(QFrame):
    """One artifact: title, what it is, figures, where it runs, its path and command."""

    def __init__(self, card: handoff.Card, root: Path) -> None:
        super().__init__()
        self.card = card
        self.setObjectName("card")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        title = QLabel(f"<b>{card.title}</b> — {card.what}")
        title.setWordWrap(True)
        layout.addWidget(title)
        figures = [size(card.size_bytes)] if card.size_bytes else []
        if card.p50_ms is not None:
            figures.append(f"p50 {card.p50_ms * 1000:.3g} µs at batch 1")
        if card.accuracy != handoff.NOT_CHECKED:
            figures.append(card.accuracy)
        self.figures = QLabel(" · ".join(figures))
        self.figures.setWordWrap(True)
        layout.addWidget(self.figures)
        if card.verdict:
            verdict = QLabel(card.verdict.split(". ")[0].rstrip(".") + ".")  # its first sentence
            verdict.setToolTip(card.verdict)
            verdict.setWordWrap(True)
            layout.addWidget(verdict)
        runs = QLabel(f"Runs on: {card.runs_on}")
        runs.setWordWrap(True)
        layout.addWidget(runs)
        self.path = PathLabel()
        self.path.set_path(card.path, card.relative(root))
        layout.addWidget(self.path)
        row = QHBoxLayout()
        self.command = QLineEdit(card.command.replace("\n", " ; "))
        self.command.setReadOnly(True)
        self.command.setCursorPosition(0)
        self.command.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.command.setToolTip(card.command)
        copy = QPushButton("Copy")
        copy.setToolTip("Copy the command")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(card.command))
        row.addWidget(self.command, 1)
        row.addWidget(copy)
        layout.addLayout(row)


class SummaryPage(Page):
    title = "Summary"
    icon = "summary"

    def __init__(self, window) -> None:
        super().__init__(window)
        layout = QVBoxLayout(self)
        self.heading = QLabel()
        layout.addWidget(self.heading)
        self.source = PathLabel()
        layout.addWidget(self.source)
        split = QSplitter(Qt.Orientation.Vertical)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        holder = QWidget()
        self.grid = QGridLayout(holder)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignTop)
        scroll.setWidget(holder)
        split.addWidget(scroll)
        self.chart = TradeoffChart()
        split.addWidget(self.chart)
        split.setSizes([420, 260])
        layout.addWidget(split, 1)
        self.cards: list[ArtifactCard] = []
        row = QHBoxLayout()
        for text, slot, tip in (
            ("Open folder", self.open_folder, "The run folder, with every artifact"),
            ("Open report", self.open_report, "The HTML report (written when needed)"),
            ("Copy handoff note", self.copy_note, "A short Markdown note for a ticket or e-mail"),
            ("Save workflow…", self._ask_save, "Replay these steps headless: dockyard-cli run"),
        ):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            row.addWidget(button)
        row.addStretch(1)
        self.saved = QLabel()
        row.addWidget(self.saved)
        layout.addLayout(row)

    def on_enter(self) -> None:
        s = self.session
        for card in self.cards:
            self.grid.removeWidget(card)
            card.deleteLater()
        self.cards = []
        if not s.model:
            self.heading.setText("Nothing yet: load a model.")
            self.source.set_path(None)
            self.chart.show_points([])
            return
        self.heading.setText(f"<h2>{s.name}</h2>")
        self.source.set_path(s.model.path, prefix="Source: ")
        made = handoff.cards(s.results, s.root)
        for i, card in enumerate(made):
            widget = ArtifactCard(card, s.root)
            self.grid.addWidget(widget, i // 2, i % 2)
            self.cards.append(widget)
        if not made:
            hint = QLabel("Nothing made yet: convert, quantize or export first.")
            self.grid.addWidget(hint, 0, 0)
            self.cards.append(hint)  # type: ignore[arg-type]
        self.chart.show_points(handoff.points(s.results))

    def note(self) -> str:
        s = self.session
        return handoff.handoff_note(s.name, s.model.path if s.model else "", s.results, s.root)

    def copy_note(self) -> None:
        if not self.session.model:
            return
        QGuiApplication.clipboard().setText(self.note())
        self.saved.setText("Handoff note copied (Markdown).")

    def open_folder(self) -> None:
        if self.session.model and self.session.root.is_dir():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.session.root)))

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save workflow", str(Path.home() / "workflow.yaml"), "Workflow (*.yaml *.json)"
        )
        if path:
            self.save_workflow(Path(path))

    def save_workflow(self, path: Path) -> None:
        """Write the steps done so far; `dockyard-cli run PATH` replays them."""
        self.session.workflow().save(path)
        self.saved.setText(f"Saved {path.name}. Replay it headless: dockyard-cli run {path}")
        self.saved.setToolTip(str(path))

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
            self.on_enter()

        self.window_.run_step("report", options, [out], done, "Writing the report")
