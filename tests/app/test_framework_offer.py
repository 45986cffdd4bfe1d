"""The installed app's offer to prepare PyTorch (app/framework_offer.py), as a user of the core
bundle meets it: opening a .pt2 without PyTorch asks once, with the size; "use an existing
environment" checks the folder; a step failing for want of PyTorch offers it, and after
"Prepare" the step runs again."""

from __future__ import annotations

import os

import pytest
from PySide6.QtWidgets import QMessageBox

from app.main_window import MainWindow
from app.pages.load_page import LoadPage
from app.session import Session
from workflows import frameworks


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings")
    )
    monkeypatch.delenv(frameworks.PATH_ENV, raising=False)
    w = MainWindow(Session(output_root=tmp_path / "runs"))
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def offers(window) -> list[QMessageBox]:
    return [b for b in window.findChildren(QMessageBox) if b.isVisible()]


def test_opening_a_pt2_without_pytorch_offers_it_once(qtbot, window, tmp_path, monkeypatch):
    monkeypatch.setattr(window.framework_offer, "available", lambda family: False)
    with qtbot.waitSignal(window.step_finished, timeout=60_000):
        window.page(LoadPage).open_sample()  # the .pt2 is inspected without torch
    qtbot.waitUntil(lambda: len(offers(window)) == 1)
    box = offers(window)[0]
    assert "PyTorch 2.13.0" in box.text() and "MB download" in box.informativeText()
    assert {b.text() for b in box.buttons()} == {
        "Prepare PyTorch 2.13.0", "Use an existing environment…", "Not now"}  # fmt: skip
    next(b for b in box.buttons() if b.text() == "Not now").click()
    qtbot.waitUntil(lambda: not offers(window))
    window.framework_offer.check_model("exported_program")  # once per session
    assert not offers(window)

    # An existing environment: a folder without torch is refused, one with it is used.
    empty = tmp_path / "empty"
    empty.mkdir()
    shown = []
    monkeypatch.setattr(window, "show_error", lambda message, details="": shown.append(message))
    assert not window.framework_offer.choose_existing("torch", str(empty))
    assert "has no torch package" in shown[0]
    site = tmp_path / "site-packages"
    (site / "torch").mkdir(parents=True)
    assert window.framework_offer.choose_existing("torch", str(site))
    assert os.environ[frameworks.PATH_ENV] == str(site)
    from PySide6.QtCore import QSettings

    assert QSettings().value("frameworks/path") == str(site)


def test_a_step_needing_pytorch_offers_it_and_runs_again_after(
    qtbot, window, tmp_path, monkeypatch
):
    marker = tmp_path / "prepared"
    monkeypatch.setattr(window.framework_offer, "available", lambda family: marker.exists())
    prepared = []

    def prepare(family, then=None):  # stands in for the download (tests/workflows/test_frameworks)
        prepared.append(family)
        marker.touch()
        then()

    monkeypatch.setattr(window.framework_offer, "prepare", prepare)
    results = []
    step = "tests.workflows.runner_steps:needs_torch"
    with qtbot.waitSignal(window.step_finished, timeout=60_000) as failed:
        window.run_step(step, {"marker": str(marker)}, [], results.append, "Converting")
    assert failed.args == [step, False]
    assert "needs a framework" in window.status.text()
    qtbot.waitUntil(lambda: len(offers(window)) == 1)
    box = offers(window)[0]
    assert "The step “Converting” needs it." in box.text()
    with qtbot.waitSignal(window.step_finished, timeout=60_000) as retried:
        next(b for b in box.buttons() if b.text().startswith("Prepare")).click()
    assert retried.args == [step, True] and prepared == ["torch"]
    assert results == [{"ran": True}]
