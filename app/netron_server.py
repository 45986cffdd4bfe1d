"""The loopback web server behind the embedded Netron: Netron's own page and scripts, and the one
model being shown (with the files it is made of), to this app's web view and nothing else.

Written here instead of using `netron.start()` (issue #12 item 9). Netron's server is built for a
person who runs it by hand on their own files; in an app that opens files from anywhere it
1. serves every file under the model's folder (subfolders too) to any local process: a model
   opened from ~/Downloads exposes the whole of ~/Downloads for as long as it is shown;
2. answers any `Host` header, so a web page the user visits can reach it through DNS rebinding;
3. writes the file name into its page unescaped: a crafted name injects markup.
This one serves a fixed list of files (the model, and the companions Netron asks for: an ONNX
model's external-data files, a SavedModel's variables), checks the `Host` header the way Jupyter
and webpack's dev server do, escapes what it writes into the page, and closes idle connections.
It has no Qt in it so that tests can reach it without a window.
"""

from __future__ import annotations

import html
import http.server
import logging
import re
import shutil
import threading
import urllib.parse
from functools import cached_property
from pathlib import Path

log = logging.getLogger(__name__)

# The static files Netron's page loads, by extension (the same list as netron's own server).
MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".svg": "image/svg+xml",
}
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
IDLE_TIMEOUT = 30.0  # seconds a connection may sit without sending a request


def netron_folder() -> Path:
    """Where the netron package keeps its page and scripts."""
    import importlib.util

    spec = importlib.util.find_spec("netron")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the netron package is not installed")
    return Path(spec.submodule_search_locations[0])


class ModelFiles:
    """The files one model is made of, by the name Netron asks for them (relative to the model's
    folder, with '/'). Anything else is not served, however it is spelled."""

    def __init__(self, model: Path) -> None:
        self.model = model
        self.name = model.name

    def lookup(self, name: str) -> Path | None:
        """The file to send for a request of `name`, or None when it is not part of the model."""
        if name == self.name:
            return self.model
        return self.companions.get(name)

    @cached_property
    def companions(self) -> dict[str, Path]:
        """Worked out on the first request for one, so that a model that needs none (most) is not
        parsed twice: once by Netron in the page, once here."""
        folder = self.model.parent
        found: dict[str, Path] = {}
        if self.model.suffix.lower() == ".onnx":
            found = {p.relative_to(folder).as_posix(): p for p in _onnx_data_files(self.model)}
        elif self.name in ("saved_model.pb", "saved_model.pbtxt"):
            variables = folder / "variables"
            if variables.is_dir():
                for p in variables.iterdir():
                    if p.name == "variables.index" or p.name.startswith("variables.data-"):
                        found[f"variables/{p.name}"] = p
        return {name: path for name, path in found.items() if path.is_file()}


def _onnx_data_files(model: Path) -> list[Path]:
    """The external-data files an ONNX model names, those inside its own folder only (a location
    such as '../../.ssh/id_rsa' is a hostile model's, not a weight file)."""
    from workflows.formats.onnx_format import onnx_files

    try:
        _, *data = onnx_files(model)
    except Exception as exc:  # Netron shows the model's own error; nothing more to serve
        log.info("Netron: %s lists no readable external data (%s)", model.name, exc)
        return []
    folder = model.parent.resolve()
    return [p for p in data if p.resolve().is_relative_to(folder) and not p.is_symlink()]


def index_page(folder: Path, files: ModelFiles) -> bytes:
    """Netron's index.html with the model announced in its <meta> tags (escaped)."""
    text = (folder / "index.html").read_text(encoding="utf-8")
    version = re.search(r'<meta name="version" content="([^"]*)">', text)
    quote = html.escape
    meta = [
        '<meta name="type" content="Python">',
        f'<meta name="version" content="{quote(version.group(1) if version else "0.0.0")}">',
        f'<meta name="file" content="/data/{quote(urllib.parse.quote(files.name))}">',
        f'<meta name="name" content="{quote(files.name)}">',
        f'<meta name="identifier" content="{quote(files.name)}">',
    ]
    text = re.sub(r'<meta name="version" content="[^"]*">', lambda _: "\n".join(meta), text)
    return text.encode("utf-8")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = IDLE_TIMEOUT  # also bounds a client that sends its request line a byte at a time
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if not self._host_allowed():
            self._send(
                403, b"This server answers only to its own loopback address.\n", "text/plain"
            )
            return
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path.startswith("/data/"):
            target = self.server.files.lookup(path[len("/data/") :])
            if target is None:
                self._send(404, b"Not part of this model.\n", "text/plain")
            else:
                self._send_file(target, "application/octet-stream")
            return
        if path == "/" or path == "/index.html":
            self._send(200, self.server.index, MIME_TYPES[".html"])
            return
        static = self.server.static.get(path.lstrip("/"))
        if static is None:
            self._send(404, b"Not found.\n", "text/plain")
        else:
            self._send_file(static, MIME_TYPES[static.suffix])

    def _host_allowed(self) -> bool:
        """DNS rebinding defence: a page from elsewhere that resolves its own name to 127.0.0.1
        still sends its own name as Host."""
        port = self.server.server_address[1]
        host = (self.headers.get("Host") or "").strip().lower()
        return host in {f"{name}:{port}" for name in LOOPBACK_NAMES}

    def _headers(self, status: int, content_type: str, length: int) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.end_headers()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self._headers(status, content_type, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_file(self, path: Path, content_type: str) -> None:
        try:
            handle = path.open("rb")
        except OSError:
            self._send(404, b"Not found.\n", "text/plain")
            return
        with handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            self._headers(200, content_type, size)
            if self.command != "HEAD":
                shutil.copyfileobj(handle, self.wfile, 1 << 20)

    def log_message(self, format: str, *args) -> None:
        log.debug("netron server: " + format, *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, files: ModelFiles, folder: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files
        self.index = index_page(folder, files)
        # The page's own files, listed once: no path from a request ever reaches the file system.
        self.static = {
            p.relative_to(folder).as_posix(): p
            for p in folder.rglob("*")
            if p.suffix in MIME_TYPES and p.is_file() and p.name != "index.html"
        }


class NetronServer:
    """Serves Netron and one model on 127.0.0.1 (a free port) until `stop()`."""

    def __init__(self, model: str | Path) -> None:
        model = Path(model)
        if not model.is_file():
            raise FileNotFoundError(f"{model}: no such file")
        self._server = _Server(ModelFiles(model), netron_folder())
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.address[1]}/"

    def stop(self) -> None:
        """Stop answering and free the port (idempotent)."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
