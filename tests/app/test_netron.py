"""The embedded Netron: it draws real models, with its four traps handled (no consent dialog, no
"please update" after 180 days, CJK brackets drawn, nothing leaves loopback)."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from app.netron_view import (
    NetronView,
    bracket_font,
    bracket_font_css,
    needs_bracket_font,
    netron_file,
)
from workflows.synthetic import save_chain_model

TIMEOUT = 60_000


@pytest.fixture
def netron(qtbot):
    view = NetronView()
    view.resize(900, 600)
    qtbot.addWidget(view)
    view.show()
    yield view
    view.release()


def js(qtbot, view: NetronView, script: str):
    """Evaluate `script` in the page and return its (JSON-decoded) value."""
    box: list = []
    view.run_js(f"JSON.stringify({script})", box.append)
    qtbot.waitUntil(lambda: bool(box), timeout=10_000)
    return json.loads(box[0])


def test_draws_the_sample_with_no_dialog_and_a_current_build_date(qtbot, netron, sample_dir):
    with qtbot.waitSignal(netron.graph_ready, timeout=TIMEOUT) as drawn:
        netron.show_model(sample_dir / "digits_cnn.pt2")
    # conv, relu, conv, relu, pool, flatten, linear, relu, linear + input + output
    assert drawn.args[0] == 11
    page = js(
        qtbot,
        netron,
        "{body: document.body.className, message: document.getElementById('message-text')"
        ".innerText, built: window.__view__._host._environment.date.getTime(),"
        " cookie: document.cookie}",
    )
    assert "message" not in page["body"].split() and page["message"] == ""
    assert page["cookie"].startswith("consent=")
    # Netron 9.3.3 was built on 2026-10-23 (its index.html); it must read "today" whatever the date.
    packaged = urllib.request.urlopen(netron.url, timeout=5).read().decode()
    assert re.search(r'name="date" content="2026-10-23', packaged)
    built = datetime.fromtimestamp(page["built"] / 1000, UTC)
    assert abs(datetime.now(UTC) - built) < timedelta(days=1)


def test_only_its_own_server_is_reachable(qtbot, netron, tmp_path, monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr(
        "PySide6.QtGui.QDesktopServices.openUrl", lambda url: opened.append(url.toString())
    )
    path = save_chain_model(tmp_path / "chain.onnx", nodes=3)
    with qtbot.waitSignal(netron.graph_ready, timeout=TIMEOUT):
        netron.show_model(path)
    netron.run_js("fetch('https://example.com/beacon').catch(() => 0)", lambda _: None)
    netron.run_js("new WebSocket('wss://example.net/socket')", lambda _: None)
    netron.run_js("fetch('http://127.0.0.1:9/other-service').catch(() => 0)", lambda _: None)
    expected = {("example.com", None), ("example.net", None), ("127.0.0.1", 9)}

    def blocked() -> set[tuple[str | None, int | None]]:
        return {
            (urllib.parse.urlsplit(u).hostname, urllib.parse.urlsplit(u).port)
            for u in netron.blocked_urls
        }

    # Wait for these three themselves: Netron's own analytics request is blocked too, and may
    # arrive first (waiting for "three hosts" raced with the loopback fetch).
    qtbot.waitUntil(lambda: expected <= blocked())
    assert ("127.0.0.1", int(netron.url.rsplit(":", 1)[1].strip("/"))) not in blocked()
    # A link Netron opens in place (its docs, "Report") goes to the browser; the graph stays.
    netron.run_js("window.location = 'https://github.com/lutzroeder/netron'", lambda _: None)
    qtbot.waitUntil(lambda: opened == ["https://github.com/lutzroeder/netron"])
    qtbot.wait(300)
    assert js(qtbot, netron, "document.querySelectorAll('#canvas g.node').length") == netron.drawn


def test_the_bracket_font_maps_cjk_brackets_and_is_cached(tmp_path):
    from fontTools.ttLib import TTFont

    made = bracket_font(tmp_path / "f.ttf")
    cmap = TTFont(io.BytesIO(made)).getBestCmap()
    assert cmap[0x3008] == cmap[0x27E8] and cmap[0x3009] == cmap[0x27E9]
    assert (tmp_path / "f.ttf").read_bytes() == made == bracket_font(tmp_path / "f.ttf")
    data = re.search(r"base64,([A-Za-z0-9+/=]+)", bracket_font_css(made)).group(1)
    assert base64.b64decode(data) == made


def test_cjk_shape_brackets_have_a_glyph(qtbot, netron, tmp_path):
    if not needs_bracket_font():
        pytest.skip("this machine has a CJK font: Chromium draws 〈 〉 with it")
    path = save_chain_model(tmp_path / "chain.onnx", nodes=3)
    with qtbot.waitSignal(netron.graph_ready, timeout=TIMEOUT):
        netron.show_model(path)
    # The chain's initializers are drawn as "w〈16×16〉": the page holds the font for them.
    text = js(qtbot, netron, "document.getElementById('canvas').textContent")
    assert "\u3008" in text
    deadline = time.monotonic() + 10
    loaded = "[...document.fonts].some(f => f.family.includes('PingFang') && f.status == 'loaded')"
    while not js(qtbot, netron, loaded):
        assert time.monotonic() < deadline, "the bracket font never loaded"
        qtbot.wait(100)


def test_savedmodel_folder_opens_its_graph_file(tmp_path):
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert netron_file(tmp_path) == tmp_path / "saved_model.pb"
    assert netron_file(tmp_path / "m.onnx") == tmp_path / "m.onnx"


def test_a_missing_file_is_reported_not_raised(qtbot, netron, tmp_path):
    with qtbot.waitSignal(netron.failed, timeout=5000) as failed:
        netron.show_model(tmp_path / "gone.onnx")
    assert "gone.onnx" in failed.args[0]


def test_the_files_read_ahead_are_qt_webengines_own():
    from app.netron_view import web_engine_files

    files = web_engine_files()
    names = [f.name for f in files]
    assert "icudtl.dat" in names and "qtwebengine_resources.pak" in names
    assert "WebEngineCore" in names[0] and files[0].stat().st_size > 50 << 20  # the library first
    assert not [f for f in files if "locales" in f.parts]  # not 50 translations of its UI
