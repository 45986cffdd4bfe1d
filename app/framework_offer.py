"""The installed app's offer to prepare PyTorch or TensorFlow (workflows.frameworks).

The core bundle has neither. When a model that needs one is opened, or a step fails for want of
one, the user is asked once per framework and session: prepare it now (a download, with
progress and Cancel like any step), use an existing Python 3.11 environment that has it, or not
now. From a Python installation the frameworks are installed packages and nothing is offered.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from workflows import frameworks

PATH_KEY = "frameworks/path"  # QSettings: the existing environment's site-packages


def apply_saved_path() -> None:
    """At start-up: the environment chosen earlier ("Use an existing environment") is used by
    every step process, unless DOCKYARD_FRAMEWORK_PATH is set already."""
    saved = QSettings().value(PATH_KEY, "", type=str)
    if saved and not os.environ.get(frameworks.PATH_ENV):
        os.environ[frameworks.PATH_ENV] = saved


class FrameworkOffer:
    """Asks, prepares and retries; `window` is the MainWindow (run_step, show_error)."""

    def __init__(self, window: Any) -> None:
        self.window = window
        self.asked: set[str] = set()  # once per framework and session, unless a step needs it

    @staticmethod
    def available(family: str) -> bool:
        """The framework can be imported by step processes (prepared, configured, installed)."""
        return frameworks.available(family)

    def check_model(self, format_name: str) -> None:
        """After a model loaded: offer its framework if it is missing (once)."""
        from workflows.warm import FORMAT_FAMILY

        family = FORMAT_FAMILY.get(format_name)
        if family is None or family in self.asked or self.available(family):
            return
        self.offer(family, "Converting, validating and testing this model need it.")

    def offer(
        self, family: str, reason: str, then: Callable[[], None] | None = None
    ) -> QMessageBox:
        """Ask to prepare `family`'s framework; `then` runs once it is available."""
        self.asked.add(family)
        framework = frameworks.FRAMEWORKS[family]
        box = QMessageBox(
            QMessageBox.Icon.Question,
            f"Prepare {framework.title}?",
            f"<b>{framework.title}</b> is not part of the app; Dockyard prepares it once, the "
            f"first time a model needs it. {reason}",
            parent=self.window,
        )
        box.setInformativeText(
            f"{framework.size_text()[0].upper()}{framework.size_text()[1:]}; a minute or two on a "
            "fast connection. "
            "It is kept for later sessions. Or use a Python 3.11 environment that has it."
        )
        prepare = box.addButton(f"Prepare {framework.title.split(' (')[0]}",
                                QMessageBox.ButtonRole.AcceptRole)  # fmt: skip
        existing = box.addButton("Use an existing environment…", QMessageBox.ButtonRole.ActionRole)
        box.addButton("Not now", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(prepare)

        def answered(button: Any) -> None:
            if button is prepare:
                self.prepare(family, then)
            elif button is existing:
                self.use_existing(family, then)

        box.buttonClicked.connect(answered)
        box.open()
        return box

    def prepare(self, family: str, then: Callable[[], None] | None = None) -> None:
        """Run the frameworks step (progress in the status bar, Cancel works)."""
        title = frameworks.FRAMEWORKS[family].title
        self.window.run_step(
            "frameworks", {"install": family}, [],
            lambda result: then() if then else None, f"Preparing {title}",
        )  # fmt: skip

    def use_existing(self, family: str, then: Callable[[], None] | None = None) -> None:
        """Ask for an existing environment's site-packages that has the framework."""
        parent: QWidget = self.window
        folder = QFileDialog.getExistingDirectory(
            parent, "The site-packages folder of a Python 3.11 environment with the framework"
        )
        if folder:
            self.choose_existing(family, folder, then)

    def choose_existing(
        self, family: str, folder: str, then: Callable[[], None] | None = None
    ) -> bool:
        """Use `folder` (checked: it has the framework's package) from now on."""
        module = frameworks.FRAMEWORKS[family].modules[0]
        if not (Path(folder) / module).is_dir():
            self.window.show_error(
                f"{folder} has no {module} package. Choose the environment's site-packages "
                f'folder (python -c "import {module}, os; print(os.path.dirname('
                f'os.path.dirname({module}.__file__)))" prints it).'
            )
            return False
        paths = [p for p in os.environ.get(frameworks.PATH_ENV, "").split(os.pathsep) if p]
        joined = os.pathsep.join(dict.fromkeys([*paths, folder]))
        os.environ[frameworks.PATH_ENV] = joined
        QSettings().setValue(PATH_KEY, joined)
        from workflows import warm

        pool = warm.pool()  # parked workers started with the old environment: start new ones
        wanted = pool.wanted()
        pool.release()
        if wanted:
            self.window.want_workers(*wanted)
        if then:
            then()
        return True
