"""User settings (QSettings) and the dialog that edits them: output folder, threads, theme."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QSpinBox,
    QStyleFactory,
    QWidget,
)

from app.widgets.path_picker import PathPicker

THEMES = ("System", "Light", "Dark")


def output_root() -> Path:
    return Path(QSettings().value("output_root", str(Path.home() / "Dockyard"), type=str))


def threads() -> int:
    """ONNX Runtime threads for benchmarks and tests (0: all cores)."""
    return int(QSettings().value("threads", 0, type=int))


def apply_theme(name: str | None = None) -> None:
    """Fusion with a light or dark palette; "System" follows the platform's colour scheme."""
    app = QApplication.instance()
    if app is None:
        return
    name = name or QSettings().value("theme", "System", type=str)
    app.setStyle(QStyleFactory.create("Fusion"))
    dark = name == "Dark" or (
        name == "System" and QGuiApplication.styleHints().colorScheme() == Qt.ColorScheme.Dark
    )
    palette = QPalette()
    if dark:
        colors = {
            QPalette.ColorRole.Window: "#1f2329",
            QPalette.ColorRole.WindowText: "#e6e9ef",
            QPalette.ColorRole.Base: "#2a2f37",  # lighter than the window: fields and check boxes show
            QPalette.ColorRole.AlternateBase: "#262b33",
            QPalette.ColorRole.Text: "#e6e9ef",
            QPalette.ColorRole.Button: "#2b3038",
            QPalette.ColorRole.ButtonText: "#e6e9ef",
            QPalette.ColorRole.Highlight: "#3d7bd9",
            QPalette.ColorRole.HighlightedText: "#ffffff",
            QPalette.ColorRole.Mid: "#5b6576",
            # Fusion draws check box and frame outlines from these: visible on dark grey.
            QPalette.ColorRole.Dark: "#8a93a3",
            QPalette.ColorRole.Shadow: "#0b0d10",
            QPalette.ColorRole.Light: "#3a404a",
            QPalette.ColorRole.Midlight: "#323842",
            QPalette.ColorRole.PlaceholderText: "#8a93a3",
            QPalette.ColorRole.ToolTipBase: "#262b33",
            QPalette.ColorRole.ToolTipText: "#e6e9ef",
        }
        for role, color in colors.items():
            palette.setColor(role, color)
        for role in (
            QPalette.ColorRole.ButtonText,
            QPalette.ColorRole.Text,
            QPalette.ColorRole.WindowText,
        ):
            palette.setColor(QPalette.ColorGroup.Disabled, role, "#6b7280")
    app.setPalette(palette)
    # Widgets the stylesheet touches keep their old palette until re-polished: re-apply it.
    sheet = app.styleSheet()
    app.setStyleSheet("")
    app.setStyleSheet(sheet)


class SettingsDialog(QDialog):
    """Edit the output folder, thread count and theme; saved when accepted."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        form = QFormLayout(self)
        self.output = PathPicker("where runs and exports go", folder=True)
        self.output.edit.setText(str(output_root()))
        self.threads = QSpinBox()
        self.threads.setRange(0, 256)
        self.threads.setSpecialValueText("all cores")
        self.threads.setValue(threads())
        self.theme = QComboBox()
        self.theme.addItems(THEMES)
        self.theme.setCurrentText(QSettings().value("theme", "System", type=str))
        form.addRow("Output folder", self.output)
        form.addRow("Threads", self.threads)
        form.addRow("Theme", self.theme)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def accept(self) -> None:
        settings = QSettings()
        settings.setValue("output_root", self.output.value() or str(Path.home() / "Dockyard"))
        settings.setValue("threads", self.threads.value())
        settings.setValue("theme", self.theme.currentText())
        apply_theme(self.theme.currentText())
        super().accept()
