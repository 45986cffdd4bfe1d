"""The Log dialog: what the last step's libraries printed (TensorFlow, torch, converters), which
the app keeps out of sight in a log file per step (`workflows.logs`)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

MAX_CHARS = 200_000  # the tail of a long log; the file itself has everything


def read_tail(path: Path | None) -> str:
    """The end of the log at `path`, or a sentence saying why there is none."""
    if path is None:
        return "No step has run yet."
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"{path}: no output (the step printed nothing)."
    if not text.strip():
        return "The step's libraries printed nothing."
    return text[-MAX_CHARS:]


class LogDialog(QDialog):
    """Shows one step's log, read-only, with a button to open the log folder."""

    def __init__(self, path: Path | None, step: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Log — {step}" if step else "Log")
        self.resize(900, 520)
        self.text = QPlainTextEdit(read_tail(path))
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        where = QLabel(str(path) if path else "")
        where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        if path is not None:
            folder = QPushButton("Open log folder")
            folder.clicked.connect(
                lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent)))
            )
            buttons.addButton(folder, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addWidget(where)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
