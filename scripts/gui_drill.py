"""The desktop app driven through one wizard step, for the kill drills (scripts/drills.py).

    python scripts/gui_drill.py --root OUTPUT_ROOT --model MODEL STEP

Opens the real window (offscreen unless QT_QPA_PLATFORM says otherwise), loads MODEL the way a
drop does (the inspect step, Netron's view included), then clicks STEP's button: `convert`
(convert, then validate) or `export-docker` / `export-torchserve` / `export-tflite`. Its outputs
go where the wizard puts them (OUTPUT_ROOT/<model name>/…). Exits 0 when the step succeeded,
1 when it failed; the drills SIGKILL it, or the step process it started, on the way.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

STEPS = ("convert", "export-docker", "export-torchserve", "export-tflite")
LAST = {"convert": "validate"}  # the step whose end ends the drive; else STEP itself


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, type=Path, help="the wizard's output root")
    parser.add_argument("--model", required=True)
    parser.add_argument("step", choices=STEPS)
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from app.netron_view import prepare_environment
    from app.pages.convert_page import ConvertPage
    from app.pages.export_page import ExportPage
    from app.pages.load_page import LoadPage
    from app.session import Session

    prepare_environment()
    app = QApplication(sys.argv[:1])
    # The drill's settings stay in the drill: no recent-files list of the user's is touched.
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(args.root.parent / "settings")
    )
    window = MainWindow(Session(output_root=args.root))
    window.show()
    last = LAST.get(args.step, args.step)
    outcome: list[int] = []

    def click_step() -> None:
        if args.step == "convert":
            window.page(ConvertPage).convert()
            return
        export = window.page(ExportPage)
        for key, box in export.targets.items():
            box.setChecked(args.step == f"export-{key}")
        export.export()

    def finished(step: str, ok: bool) -> None:
        if not ok:
            print(f"{step} failed: {window.last_error}", file=sys.stderr)
            outcome.append(1)
            app.quit()
        elif step == "inspect":
            QTimer.singleShot(0, click_step)
        elif step == last:
            outcome.append(0)
            app.quit()

    window.step_finished.connect(finished)
    QTimer.singleShot(0, lambda: window.page(LoadPage).load(args.model))
    app.exec()
    return outcome[0] if outcome else 1


if __name__ == "__main__":
    sys.exit(main())
