"""The app keeps step workers warm: started after its window has painted, handed to steps,
shown in no way except speed, and gone with the window. The Log button shows what a step's
libraries printed."""

from __future__ import annotations

import gc
import time

import psutil
import pytest

from app.main_window import MainWindow
from app.pages.inspect_page import InspectPage
from app.pages.load_page import LoadPage
from app.session import Session
from workflows import warm


@pytest.fixture
def pool(monkeypatch):
    monkeypatch.delenv(warm.DISABLE_ENV, raising=False)
    p = warm.Pool()
    monkeypatch.setattr(warm, "_POOL", p)
    yield p
    p.shutdown()


def test_workers_start_after_paint_serve_the_sample_and_leave_with_the_window(
    qtbot, tmp_path, pool
):
    gc.unfreeze()
    window = MainWindow(Session(output_root=tmp_path))
    qtbot.addWidget(window)
    assert pool.wanted() == set()  # nothing before the window is on screen
    assert gc.get_freeze_count() == 0
    window.show()
    qtbot.waitUntil(lambda: set(pool.idle()) == {"onnx", "torch"}, timeout=10_000)
    # What start-up made is out of the collector's way (a full collection walked it all).
    assert gc.get_freeze_count() > 10_000
    assert pool.wait_ready(120)
    parked = pool.idle()
    # Then Chromium starts (for the graph view), its files read ahead in the background.
    netron = window.page(InspectPage).netron
    qtbot.waitUntil(lambda: netron._view is not None, timeout=10_000)
    assert not window._prefetch.is_alive()

    with qtbot.waitSignal(window.step_finished, timeout=60_000) as done:
        window.page(LoadPage).open_sample()
        worker = window.worker
    assert done.args == ["inspect", True]
    assert worker.ran_warm  # the .pt2 went to the parked onnx worker: read without torch
    qtbot.waitUntil(lambda: pool.idle().get("onnx") not in (None, parked["onnx"]))

    window.show_log()  # the Log dialog opens on the inspect step's log
    assert window.last_log is not None and window.last_log.parent.is_dir()

    window.close()
    pids = [*parked.values(), *pool.idle().values()]
    assert pool.idle() == {} and pool.wanted() == set()
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
        assert time.monotonic() < deadline, "a warm worker outlived the window"
        time.sleep(0.05)
