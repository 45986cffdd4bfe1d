"""The loopback server behind the embedded Netron (issue #12 item 9): only the model's own files,
only to its own Host, nothing from a file name written into the page unescaped."""

from __future__ import annotations

import http.client
import os
from html.parser import HTMLParser
from pathlib import Path

import onnx
import pytest

from app.netron_server import NetronServer
from workflows.synthetic import save_chain_model


def get(server: NetronServer, path: str, host: str | None = None) -> tuple[int, bytes]:
    """GET `path` with a raw request line (no client-side normalisation of '..')."""
    conn = http.client.HTTPConnection("127.0.0.1", server.address[1], timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True)
        conn.putheader("Host", f"127.0.0.1:{server.address[1]}" if host is None else host)
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


class Metas(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.metas: dict[str, str] = {}
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "meta" and "name" in attrs:
            self.metas[attrs["name"]] = attrs["content"]
        self.scripts += tag == "script"


@pytest.fixture
def serve():
    servers: list[NetronServer] = []

    def start(path: Path) -> NetronServer:
        servers.append(NetronServer(path))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def test_serves_the_model_and_netron_but_not_the_files_beside_it(tmp_path, serve):
    model = save_chain_model(tmp_path / "m.onnx", nodes=2)
    (tmp_path / "thesis.txt").write_text("private")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("private")
    server = serve(model)
    status, body = get(server, "/data/m.onnx")
    assert (status, body) == (200, model.read_bytes())
    assert get(server, "/index.html")[0] == 200 and get(server, "/")[0] == 200
    assert get(server, "/browser.js")[0] == 200
    for path in (
        "/data/thesis.txt",
        "/data/sub/notes.txt",
        "/data/../m.onnx",
        "/data/%2e%2e/" + tmp_path.name + "/thesis.txt",
        "/data/" + str(tmp_path / "thesis.txt"),
        "/../../../etc/passwd",
        "/%2e%2e/%2e%2e/__init__.py",
        "/server.py",  # netron's own Python source: not part of its page
    ):
        status, body = get(server, path)
        assert status == 404 and b"private" not in body, path


def test_answers_only_to_its_own_loopback_host(tmp_path, serve):
    server = serve(save_chain_model(tmp_path / "m.onnx", nodes=2))
    port = server.address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert get(server, "/data/m.onnx", host)[0] == 200, host
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", ""):
        status, body = get(server, "/data/m.onnx", host)
        assert status == 403 and b"loopback" in body, host


def test_a_crafted_file_name_is_escaped_in_the_page(tmp_path, serve):
    name = 'x"><script>alert(1)<\\script><meta name="file" content="etc&amp;.onnx'
    model = tmp_path / name
    save_chain_model(model, nodes=2)
    server = serve(model)
    status, page = get(server, "/")
    assert status == 200
    parsed = Metas()
    parsed.feed(page.decode())
    packaged = Metas()
    packaged.feed(_netron_index().read_text())
    assert parsed.scripts == packaged.scripts  # no script added by the name
    assert parsed.metas["name"] == parsed.metas["identifier"] == name  # read back exactly
    assert parsed.metas["version"] == packaged.metas["version"]
    assert parsed.metas["type"] == "Python"
    # The file's URL (what Netron fetches) reaches the model, and only it.
    status, body = get(server, parsed.metas["file"])
    assert (status, body) == (200, model.read_bytes())


def _netron_index() -> Path:
    from app.netron_server import netron_folder

    return netron_folder() / "index.html"


def test_external_data_is_served_but_not_a_location_outside_the_folder(tmp_path, serve):
    folder = tmp_path / "model"
    folder.mkdir()
    proto = onnx.load(str(save_chain_model(tmp_path / "chain.onnx", nodes=2, width=64)))
    onnx.save(
        proto,
        str(folder / "big.onnx"),
        save_as_external_data=True,
        location="big.weights",
        size_threshold=0,
    )
    (tmp_path / "secret.txt").write_text("private")
    server = serve(folder / "big.onnx")
    status, body = get(server, "/data/big.weights")
    assert (status, body) == (200, (folder / "big.weights").read_bytes())

    # A hostile model whose "external data" is a file outside its folder.
    for t in proto.graph.initializer:
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        del t.external_data[:]
        t.external_data.add(key="location", value="../secret.txt")
    onnx.save(proto, str(folder / "hostile.onnx"))
    server = serve(folder / "hostile.onnx")
    status, body = get(server, "/data/../secret.txt")
    assert status == 404 and b"private" not in body


def test_a_savedmodel_serves_its_variables_only(tmp_path, serve):
    (tmp_path / "variables").mkdir()
    (tmp_path / "saved_model.pb").write_bytes(b"\x08\x01")
    (tmp_path / "variables" / "variables.index").write_bytes(b"idx")
    (tmp_path / "variables" / "variables.data-00000-of-00001").write_bytes(b"data")
    (tmp_path / "variables" / "other.txt").write_text("private")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "vocab.txt").write_text("private")
    server = serve(tmp_path / "saved_model.pb")
    assert get(server, "/data/variables/variables.index") == (200, b"idx")
    assert get(server, "/data/variables/variables.data-00000-of-00001") == (200, b"data")
    assert get(server, "/data/variables/other.txt")[0] == 404
    assert get(server, "/data/assets/vocab.txt")[0] == 404


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symlinks here")
def test_a_symlinked_model_opens(tmp_path, serve):
    real = save_chain_model(tmp_path / "real.onnx", nodes=2)
    (tmp_path / "view").mkdir()
    link = tmp_path / "view" / "linked.onnx"
    link.symlink_to(real)
    assert get(serve(link), "/data/linked.onnx") == (200, real.read_bytes())


def test_stop_frees_the_port_and_missing_files_are_refused(tmp_path):
    server = NetronServer(save_chain_model(tmp_path / "m.onnx", nodes=2))
    port = server.address[1]
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(OSError):
        http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/")
    with pytest.raises(FileNotFoundError, match=r"gone\.onnx"):
        NetronServer(tmp_path / "gone.onnx")
