"""The installed app's GUI walked through every step with the sample .pt2, from a core bundle
without PyTorch: run by the bundle itself (scripts/build_installer.py --with-pytorch),

    dockyard --dockyard-python scripts/frozen_gui_walk.py

so that the window, its pages and its step workers are the bundle's (this file imports `app`
from the bundle, not from a checkout). It opens the sample, expects the one-time offer to
prepare PyTorch, accepts it, then converts, validates, quantizes, predicts, cancels a benchmark
midway (its process tree must go, without an error), benchmarks and
exports the Docker context and the TorchServe archive from the pages, as a user clicks through
them (both exports run their smoke tests: the exported server, and a real TorchServe whose
workers are this bundle's Python mode). Prints one JSON line: the offer's text, every step
with its outcome and seconds, the exports' smoke tests, and any error shown.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app.main_window import MainWindow
from app.netron_view import prepare_environment
from app.pages.convert_page import ConvertPage
from app.pages.export_page import ExportPage
from app.pages.load_page import LoadPage
from app.pages.test_page import TestPage
from app.session import Session
from workflows.resources import resource


def wait(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


class Walk:
    """Drives the window; records what each step did."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.steps: list[dict[str, object]] = []
        self.errors: list[str] = []
        self.offers: list[dict[str, str]] = []
        self.cancelled: dict[str, object] = {}
        self._seen: dict[str, int] = {}
        self._started = time.perf_counter()
        window.step_finished.connect(self._finished)
        shown = window.show_error
        window.show_error = lambda message, *a, **k: (self.errors.append(message), shown(message, *a, **k))  # type: ignore[method-assign]  # fmt: skip

    def _finished(self, step: str, ok: bool) -> None:
        now = time.perf_counter()
        self.steps.append({"step": step, "ok": ok, "seconds": round(now - self._started, 2)})
        self._started = now

    def until(self, step: str, timeout_s: float = 900) -> bool:
        """Wait for the next run of `step` to finish; True when it succeeded."""
        seen = self._seen.get(step, 0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = [s for s in self.steps if s["step"] == step]
            if len(done) > seen:
                self._seen[step] = len(done)
                return bool(done[-1]["ok"])
            wait(100)
        raise SystemExit(json.dumps({"timeout": step, **self.facts()}))

    def cancelled_midway(self, start: Callable[[], None], step: str) -> dict[str, object]:
        """Start `step`, press Cancel once it reports progress: the step's processes (a fresh
        one, or the warm worker it took, and what it started) must be gone, with no error."""
        import psutil

        from workflows import warm

        def kids() -> set[int]:
            return {p.pid for p in psutil.Process().children(recursive=True)}

        kids0, idle0 = kids(), set(warm.pool().idle().values())
        start()
        deadline = time.monotonic() + 60
        while self.window.progress.value() <= 0 and time.monotonic() < deadline:
            wait(20)
        idle1 = set(warm.pool().idle().values())
        steps = ((kids() - kids0) | (idle0 - idle1)) - idle1
        started = time.perf_counter()
        self.window.cancel_button.click()
        ok = self.until(step)
        seconds = time.perf_counter() - started
        wait(2000)
        left = []
        for pid in steps:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.NoSuchProcess:
                pass
        return {"step": step, "ended_ok": ok, "seconds": round(seconds, 2),
                "processes": len(steps), "left": left}  # fmt: skip

    def offer_box(self, timeout_s: float = 60) -> QMessageBox | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            boxes = [b for b in self.window.findChildren(QMessageBox) if b.isVisible()]
            if boxes:
                return boxes[0]
            wait(100)
        return None

    def facts(self) -> dict[str, object]:
        results = self.window.session.results
        smoke = {k: (results.get(k) or {}).get("smoke_test") for k in EXPORTS}
        return {"offers": self.offers, "steps": self.steps, "errors": self.errors, "smoke": smoke,
                "cancelled": self.cancelled}  # fmt: skip


EXPORTS = ("export-docker", "export-torchserve")


def main() -> None:
    prepare_environment()
    app = QApplication.instance() or QApplication(sys.argv)
    app.setOrganizationName("Dockyard-walk")
    with tempfile.TemporaryDirectory() as tmp:
        window = MainWindow(Session(output_root=Path(tmp)))
        window.show()
        walk = Walk(window)
        window.page(LoadPage).open_sample()
        walk.until("inspect")
        box = walk.offer_box()
        if box is None:
            raise SystemExit(json.dumps({"no_offer": True, **walk.facts()}))
        walk.offers.append({"title": box.windowTitle(), "text": box.text(),
                            "details": box.informativeText()})  # fmt: skip
        prepare = next(b for b in box.buttons() if b.text().startswith("Prepare"))
        prepare.click()
        if walk.until("frameworks", timeout_s=1800):
            window.go_to(2)
            convert = window.page(ConvertPage)
            convert.convert()
            walk.until("validate")
            convert.quantize()
            walk.until("quantize")
            test = window.page(TestPage)
            one = Path(tmp) / "one.npy"
            np.save(one, np.load(resource("sample", "digits_test.npz"))["x"][0])
            test.input.edit.setText(str(one))
            window.go_to(3)
            test.predict()
            walk.until("predict")
            walk.cancelled = walk.cancelled_midway(test.benchmark, "benchmark")
            test.benchmark()  # and again, to the end
            walk.until("benchmark")
            window.go_to(4)
            export = window.page(ExportPage)
            for key, target in export.targets.items():
                target.setChecked(f"export-{key}" in EXPORTS)
            export.export()
            for step in EXPORTS:
                walk.until(step)
            later = [b for b in window.findChildren(QMessageBox) if b.isVisible() and b is not box]
            walk.offers += [{"title": b.windowTitle(), "text": b.text()} for b in later]
        window.close()
        print(json.dumps(walk.facts()))


if __name__ == "__main__":
    main()
