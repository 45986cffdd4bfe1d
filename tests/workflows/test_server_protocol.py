"""The exported server's HTTP protocol on a recording transport: an answer's head goes out in
the same write as its body (one write for a small answer, the head alone for HEAD, head and body
apart for a large body), 100-continue is not held back, and the request deadlines still fire
with one timer per connection."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "resources" / "templates" / "docker"))
from server import protocol


@pytest.fixture(autouse=True)
def deadlines(monkeypatch):
    """HEADER_TIMEOUT and BODY_TIMEOUT without a served model's settings."""
    monkeypatch.setattr(protocol, "_timeouts", lambda: (5.0, 5.0))


class Transport:
    """Records every write; enough of asyncio.Transport for uvicorn's protocol."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, *args, **kwargs) -> None:
        pass


def app_answering(body: bytes):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def exchange(app, *requests: bytes, env: dict | None = None) -> Transport:
    config = Config(app=app, http=protocol.GuardedHttpToolsProtocol, log_level="warning")
    config.load()
    proto = protocol.GuardedHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}
    )
    transport = Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    for request in requests:
        proto.data_received(request)
        for _ in range(50):  # let the ASGI task run to its end
            await asyncio.sleep(0)
    proto.connection_lost(None)
    return transport


GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"


def test_a_small_answer_is_one_write_with_its_head():
    transport = asyncio.run(exchange(app_answering(b'{"ok": true}'), GET, GET))
    assert len(transport.writes) == 2  # two requests on one connection: one write each
    for write in transport.writes:
        assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b'\r\n\r\n{"ok": true}')


def test_head_requests_and_large_bodies_still_get_their_head():
    head_only = asyncio.run(exchange(app_answering(b""), b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert len(head_only.writes) == 1 and head_only.writes[0].startswith(b"HTTP/1.1 200 OK")
    assert head_only.writes[0].endswith(b"\r\n\r\n")

    big = b"x" * (protocol.JOIN_BODY_BYTES + 1)
    transport = asyncio.run(exchange(app_answering(big), GET))
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK") and transport.writes[1] == big
    assert len(transport.writes) == 2  # not copied behind the head: written after it


def test_100_continue_is_written_at_once():
    request = b"POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    transport = asyncio.run(exchange(app_answering(b"done"), request, b"abc"))
    assert transport.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert transport.writes[1].startswith(b"HTTP/1.1 200 OK") and transport.writes[1].endswith(
        b"done"
    )


@pytest.mark.parametrize("phase", ["head", "body"])
def test_a_request_late_by_its_deadline_is_closed_by_the_one_timer(monkeypatch, phase):
    monkeypatch.setattr(protocol, "_timeouts", lambda: (0.2, 0.3))

    async def run() -> tuple[Transport, float]:
        loop = asyncio.get_running_loop()
        config = Config(app=app_answering(b"ok"), http=protocol.GuardedHttpToolsProtocol)
        config.load()
        proto = protocol.GuardedHttpToolsProtocol(
            config=config, server_state=ServerState(), app_state={}
        )
        transport = Transport()
        proto.connection_made(transport)  # type: ignore[arg-type]
        # A first request answered well within its deadline, then the late one.
        proto.data_received(GET)
        await asyncio.sleep(0.1)
        started = loop.time()
        if phase == "head":
            proto.data_received(b"GET /x HTTP/1.1\r\n")
        else:
            proto.data_received(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab")
        while not transport.closed and loop.time() - started < 2:
            await asyncio.sleep(0.01)
        took = loop.time() - started
        proto.connection_lost(None)
        return transport, took

    transport, took = asyncio.run(run())
    assert transport.closed
    limit = 0.2 if phase == "head" else 0.3
    assert limit - 0.02 < took < limit + 0.5, took
    assert transport.writes[0].endswith(b"\r\n\r\nok")  # the first request was answered
    if phase == "body":
        assert transport.writes[-1].startswith(b"HTTP/1.1 408")
    else:
        assert len(transport.writes) == 1  # nothing asked, nothing answered
