"""Dockyard's PySide6 desktop app. GUI only: every step runs in the Qt-free engine (`workflows`)."""
