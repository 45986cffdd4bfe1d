"""Netron, the graph viewer ML engineers already know, embedded: `app.netron_server` serves the
`netron` pip package's page and the model on 127.0.0.1 and a QWebEngineView shows it.

Netron is built for a public web page, so four things are handled here (docs/dependencies.md):
1. Chromium's sandbox cannot start as root (containers, CI): `prepare_environment()` adds
   `--no-sandbox` then, and only then.
2. A full-page cookie-consent dialog hides the graph: a script sets Netron's consent cookie before
   Netron's code runs. Nothing is reported anywhere: every request that is not to loopback is
   blocked (Netron's analytics, its ipinfo.io lookup), in keeping with "no network at run time".
3. Netron refuses to draw when its build is more than 180 days old (9.3.3 stops around 2027-04-21);
   this copy is pinned on purpose, so the build date it reads is set to today.
4. Shapes are written 〈1×28×28〉 with CJK angle brackets, boxes on machines without a CJK font: a
   tiny font made from matplotlib's DejaVu Sans ⟨ ⟩ glyphs is added for those two characters only.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import sys
import threading
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QLabel, QPushButton, QStackedLayout, QVBoxLayout, QWidget

from app.netron_server import NetronServer

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def prepare_environment() -> None:
    """Call before the QApplication exists: Qt WebEngine's needs at start-up."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "")
        if "--no-sandbox" not in flags:
            os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = f"{flags} --no-sandbox".strip()
    # Lets the web view be created lazily (keeps cold start fast) after the QApplication.
    QCoreApplication.setAttribute(Qt.ApplicationAttribute.AA_ShareOpenGLContexts)


def netron_file(model_path: str | Path) -> Path:
    """The file Netron should open for a model: a SavedModel folder is read from its .pb."""
    path = Path(model_path)
    if path.is_dir():
        for name in ("saved_model.pb", "saved_model.pbtxt"):
            if (path / name).exists():
                return path / name
    return path


def needs_bracket_font() -> bool:
    """True on Linux machines with no CJK font (Windows and macOS always have one)."""
    from PySide6.QtGui import QFontDatabase

    return sys.platform.startswith("linux") and not QFontDatabase.families(
        QFontDatabase.WritingSystem.SimplifiedChinese
    )


def bracket_font(cache: Path) -> bytes:
    """A TrueType font mapping U+3008/U+3009 to the ⟨ ⟩ glyphs (U+27E8/9) of DejaVu Sans.

    Made once with fontTools from the DejaVu Sans that matplotlib ships (~0.3 s), then read from
    `cache`, so no font file is vendored here.
    """
    import importlib.util

    if cache.is_file():
        return cache.read_bytes()
    from fontTools import subset
    from fontTools.ttLib import TTFont

    logging.getLogger("fontTools").setLevel(logging.ERROR)
    spec = importlib.util.find_spec("matplotlib")  # its folder, without importing matplotlib
    assert spec is not None and spec.submodule_search_locations
    mpl = Path(spec.submodule_search_locations[0])
    font = TTFont(mpl / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf")
    options = subset.Options()
    options.name_IDs = ["*"]  # keeps the copyright and licence notices with the glyphs
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[0x27E8, 0x27E9])
    subsetter.subset(font)
    for table in font["cmap"].tables:
        if table.isUnicode():
            table.cmap[0x3008] = table.cmap[0x27E8]
            table.cmap[0x3009] = table.cmap[0x27E9]
    buffer = io.BytesIO()
    font.save(buffer)
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(f".{cache.name}.{os.getpid()}")
    partial.write_bytes(buffer.getvalue())
    partial.replace(cache)
    return buffer.getvalue()


def bracket_font_css(font: bytes) -> str:
    """An @font-face rule that draws 〈 〉 with `font`, under the name 'PingFang SC'.

    Every font list in Netron's CSS ends with 'PingFang SC' (a macOS font), so the rule takes that
    name, for these two code points only; it is only added where that font does not exist.
    """
    data = base64.b64encode(font).decode("ascii")
    return (
        "@font-face { font-family: 'PingFang SC'; unicode-range: U+3008-3009;"
        f" src: url(data:font/ttf;base64,{data}) format('truetype'); }}"
    )


def _font_css() -> str:
    if not needs_bracket_font():
        return ""
    from PySide6.QtCore import QStandardPaths

    cache = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.CacheLocation)
    try:
        return bracket_font_css(bracket_font(Path(cache) / "netron-brackets.ttf"))
    except Exception as exc:  # cosmetic only: never stop the viewer for it
        log.warning("Netron: no fallback font for 〈 〉 (%s); they may show as boxes", exc)
        return ""


def page_script(font_css: str) -> str:
    """Runs in each Netron page at DOMContentLoaded, before Netron's modules (loaded on `load`)."""
    return f"""
(() => {{
  const now = new Date();
  const meta = document.querySelector('meta[name="date"]');
  if (meta) {{ meta.content = now.toISOString().slice(0, 19).replace('T', ' '); }}
  document.cookie = 'consent=' + now.getTime() + ';path=/;max-age=31536000';
  const css = {font_css!r};
  if (css) {{
    const style = document.createElement('style');
    style.textContent = css;
    document.head.appendChild(style);
  }}
}})();
"""


def web_engine_files() -> list[Path]:
    """Qt WebEngine's large files in PySide6's folder: its libraries, Chromium's resources and
    ICU data (Linux, Windows and macOS layouts alike)."""
    import PySide6

    root = Path(PySide6.__file__).parent
    found = [p for p in root.rglob("*WebEngine*") if p.is_file()]
    found += [p for p in root.rglob("*.pak") if "locales" not in p.parts]
    found += list(root.rglob("icudtl.dat"))
    return sorted(set(found), key=lambda p: -p.stat().st_size)


def prefetch_web_engine() -> threading.Thread:
    """Read Qt WebEngine's files once, in a background thread (reads release the GIL), so that
    Chromium's start on the GUI thread later finds them in the OS's file cache instead of on
    disk: cold, its import took 0.34 s and its profile 0.44 s on a 2-core AVX2-only EPYC, warm
    0.05 s and 0.09 s. Nothing is kept in memory but the OS's cache."""

    def read_all() -> None:
        for path in web_engine_files():
            try:
                with open(path, "rb") as f:
                    while f.read(4 << 20):
                        pass
            except OSError:
                continue  # a file we cannot read is read (or not) when Qt needs it

    thread = threading.Thread(target=read_all, name="dockyard-prefetch-webengine", daemon=True)
    thread.start()
    return thread


class NetronView(QWidget):
    """Shows one model in Netron. `show_model(path)`; `graph_ready` when its graph is drawn."""

    graph_ready = Signal(int)  # number of drawn nodes
    failed = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._server: NetronServer | None = None
        self._view = None
        self.blocked_urls: list[str] = []  # requests refused (not to loopback), for the curious
        self._poll = QTimer(self, interval=200)
        self._poll.timeout.connect(self._check_drawn)
        self._polls = 0
        self.drawn = 0  # nodes drawn in the current graph (0 until it is drawn)
        self.message = QLabel()
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setWordWrap(True)
        self.browser_button = QPushButton("Open in web browser")
        self.browser_button.setVisible(False)
        self.browser_button.clicked.connect(self.open_in_browser)
        note = QWidget()
        note_layout = QVBoxLayout(note)
        note_layout.addStretch(1)
        note_layout.addWidget(self.message)
        note_layout.addWidget(self.browser_button, 0, Qt.AlignmentFlag.AlignHCenter)
        note_layout.addStretch(1)
        self._stack = QStackedLayout(self)
        self._stack.addWidget(note)

    @property
    def _address(self) -> tuple[str, int] | None:
        return self._server.address if self._server else None

    @property
    def url(self) -> str | None:
        return self._server.url if self._server else None

    def show_model(self, model_path: str | Path) -> None:
        """Serve the model on loopback and show it (replaces whatever was shown)."""
        self.stop()
        self.drawn = 0
        path = netron_file(model_path)
        self._stack.setCurrentIndex(0)
        self.message.setText(f"Opening {path.name} in Netron …")
        try:
            self._server = NetronServer(path)
        except OSError as exc:
            self._show_problem(f"Netron could not serve {path}: {exc}")
            return
        view = self._web_view()
        if view is None:
            self._show_problem(
                "The graph view needs Qt WebEngine, which is not available here. "
                "The tables beside it list every node; or open the graph in your browser."
            )
            return
        view.setUrl(QUrl(self.url))
        self._stack.setCurrentWidget(view)

    def show_text(self, text: str) -> None:
        """Show `text` where the graph would be (a file Netron cannot draw: not a failure)."""
        self.stop()
        self.drawn = 0
        self._stack.setCurrentIndex(0)
        self.message.setText(text)
        self.browser_button.setVisible(False)

    def prepare(self) -> None:
        """Start Chromium now (the window is idle), not when the first model is shown: its
        start stalls the event loop, which would otherwise land in a step. In two event-loop
        turns: Qt WebEngine's import, then the web view (Chromium's profile, the one part that
        cannot be split). Measured warm on a 2-core AVX2-only EPYC: 45-59 ms, then 90-114 ms."""
        if self._view is not None:
            return
        import importlib

        try:
            for module in ("PySide6.QtWebEngineCore", "PySide6.QtWebEngineWidgets"):
                importlib.import_module(module)
        except ImportError:
            return
        QTimer.singleShot(0, self, self._web_view)

    def open_in_browser(self) -> None:
        if self.url:
            QDesktopServices.openUrl(QUrl(self.url))

    def run_js(self, script: str, callback) -> None:
        """Evaluate JavaScript in the page (tests and diagnostics)."""
        if self._view is not None:
            self._view.page().runJavaScript(script, 0, callback)

    def stop(self) -> None:
        """Stop serving (the page stays until the next model)."""
        self._poll.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def release(self) -> None:
        """Stop serving and free the web view (its page must go before its profile)."""
        self.stop()
        if self._view is not None:
            import shiboken6

            view, self._view = self._view, None
            if shiboken6.isValid(view):
                shiboken6.delete(view)

    # -- internals ------------------------------------------------------------------------
    def _show_problem(self, text: str) -> None:
        self._poll.stop()
        self._stack.setCurrentIndex(0)
        self.message.setText(text)
        self.browser_button.setVisible(self._address is not None)
        self.failed.emit(text)

    def _web_view(self):
        """The web view, made on first use (Chromium starts then, not at app start)."""
        if self._view is not None:
            return self._view
        try:
            from PySide6.QtWebEngineCore import (
                QWebEnginePage,
                QWebEngineProfile,
                QWebEngineScript,
                QWebEngineUrlRequestInterceptor,
            )
            from PySide6.QtWebEngineWidgets import QWebEngineView
        except ImportError as exc:
            log.warning("Qt WebEngine unavailable: %s", exc)
            return None

        owner = self

        class LoopbackOnly(QWebEngineUrlRequestInterceptor):
            """Only this view's own Netron server may be reached (not the network, nor any
            other local service)."""

            def interceptRequest(self, info) -> None:
                if not owner.allowed(info.requestUrl()):
                    info.block(True)
                    owner.blocked_urls.append(info.requestUrl().toString())

        class NetronPage(QWebEnginePage):
            """Netron opens its documentation and bug-report links in place: send them to the
            user's browser instead, so the graph is not replaced by an error page."""

            def acceptNavigationRequest(self, url, kind, is_main_frame: bool) -> bool:
                if owner.allowed(url):
                    return True
                if is_main_frame and url.scheme() in ("http", "https"):
                    QDesktopServices.openUrl(url)
                owner.blocked_urls.append(url.toString())
                return False

            def createWindow(self, kind):
                return None

        # Made before the profile so that it (and its page) is deleted first, as Qt requires.
        view = QWebEngineView(self)
        # Off the record: no cookies, cache or history written to the user's disk.
        profile = QWebEngineProfile(self)
        self._interceptor = LoopbackOnly(profile)
        profile.setUrlRequestInterceptor(self._interceptor)
        script = QWebEngineScript()
        script.setName("dockyard-netron")
        script.setInjectionPoint(QWebEngineScript.InjectionPoint.DocumentReady)
        script.setWorldId(QWebEngineScript.ScriptWorldId.ApplicationWorld)
        script.setSourceCode(page_script(_font_css()))
        profile.scripts().insert(script)
        view.setPage(NetronPage(profile, view))
        view.setContextMenuPolicy(Qt.ContextMenuPolicy.NoContextMenu)
        view.page().renderProcessTerminated.connect(
            lambda *_: self._show_problem("The graph view stopped unexpectedly. Reopen the model.")
        )
        view.page().loadingChanged.connect(self._loading_changed)
        self._stack.addWidget(view)
        self._view = view
        QCoreApplication.instance().aboutToQuit.connect(self.release)
        return view

    def allowed(self, url: QUrl) -> bool:
        """data:/blob: and the like, or this view's own server on loopback."""
        if url.scheme() not in ("http", "https", "ws", "wss"):
            return True
        return (
            self._address is not None and url.host() in LOOPBACK and url.port() == self._address[1]
        )

    def _loading_changed(self, info) -> None:
        """A page load ended: if it is the current server's, count drawn nodes until some are."""
        from PySide6.QtWebEngineCore import QWebEngineLoadingInfo

        if self._address is None or info.url().port() != self._address[1]:
            return  # a previous model's page, superseded
        status = info.status()
        if status == QWebEngineLoadingInfo.LoadStatus.LoadSucceededStatus:
            self._polls = 0
            self._poll.start()
        elif status == QWebEngineLoadingInfo.LoadStatus.LoadFailedStatus:
            self._show_problem(f"Netron's page did not load ({info.errorString()}).")

    def _check_drawn(self) -> None:
        self._polls += 1
        if self._polls > 600:  # two minutes: Netron shows its own progress and messages
            self._poll.stop()
            return
        port = self._address[1] if self._address else -1
        # The port check: an answer from a previous model's page is not this graph.
        self.run_js(
            f"(() => {{ if (location.port !== '{port}') return -1;"
            " const c = document.getElementById('canvas');"
            " return c ? c.querySelectorAll('g.node').length : -1; })()",
            self._on_count,
        )

    def _on_count(self, count) -> None:
        if isinstance(count, (int, float)) and count > 0 and self._poll.isActive():
            self._poll.stop()
            self.drawn = int(count)
            self.graph_ready.emit(self.drawn)
