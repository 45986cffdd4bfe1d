"""uvicorn's httptools HTTP protocol with the read deadlines it lacks.

httptools (llhttp, Node.js's C parser), not h11 (pure Python): on 2 cores with 602 KB binary
requests it gave 6-17 % more requests/s at 8 clients and a lower p50 at 1 (benchmarks/serving.py).

uvicorn closes a kept-alive connection after `timeout_keep_alive` but never one that is slow to
send its request: a connection that sends nothing, or its headers a byte at a time, or its body
a byte at a time, holds a socket and a slot for as long as it likes (and delays shutdown). Go's
http.Server (ReadHeaderTimeout) and nginx (client_header_timeout / client_body_timeout) bound
both; so does this:
- the request head (request line and headers) must arrive within HEADER_TIMEOUT seconds of the
  connection opening or of its first byte after a kept-alive response: else the connection is
  closed (nothing has been asked, so nothing is answered);
- the body must arrive within BODY_TIMEOUT seconds of the head: else 408 Request Timeout and the
  connection is closed;
- the head may be at most MAX_HEAD_BYTES long: else 431 Request Header Fields Too Large and the
  connection is closed (llhttp itself sets no limit; h11's was the same 16 KiB).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from server.settings import Settings

log = logging.getLogger("uvicorn.error")
MAX_HEAD_BYTES = 16 * 1024
_settings: Settings | None = None


def _timeouts() -> tuple[float, float]:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return float(_settings.header_timeout), float(_settings.body_timeout)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol plus a deadline for the request head and one for its body."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout, self.body_timeout = _timeouts()
        self._phase: str | None = None  # "head" or "body" while one is awaited
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # received while the head is incomplete
        self._parsed_head = 0  # of the head parsed so far
        self._oversized = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await("head")

    # The head's size is counted twice over: bytes received while the head is incomplete (llhttp
    # would buffer an endless header), and the URL and headers as parsed (a head that arrives
    # whole within one read).
    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._phase == "head" and not self.transport.is_closing():
            self._head_bytes += len(data)  # all of it is head: the head is not complete yet
            if self._head_bytes > MAX_HEAD_BYTES:
                self._head_too_large()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        self._parsed_head += size
        if self._parsed_head > MAX_HEAD_BYTES:
            # Raised inside the parser: uvicorn answers a parser error with send_400_response.
            self._oversized = True
            raise ValueError("request head too large")

    def send_400_response(self, msg: str) -> None:
        if self._oversized:
            self._head_too_large()
        else:
            super().send_400_response(msg)

    def _head_too_large(self) -> None:
        message = f"the request head is over {MAX_HEAD_BYTES} bytes (request line and headers)"
        self._refuse(431, b"Request Header Fields Too Large", message)

    # The parser's callbacks, called from data_received: a request's first byte, its last
    # header, its last body byte. A kept-alive connection between requests awaits nothing here
    # (uvicorn's keep-alive timeout closes it).
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase != "head":  # else the deadline runs from the connection's opening
            self._await("head")

    def on_headers_complete(self) -> None:
        self._head_bytes = self._parsed_head = 0
        super().on_headers_complete()
        self._await("body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._await(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._await(None)
        super().connection_lost(exc)

    def _await(self, phase: str | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase is not None:
            seconds = self.header_timeout if phase == "head" else self.body_timeout
            self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _expired(self, phase: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning(
            "closing the connection from %s: request %s not received in %g s",
            client,
            phase,
            seconds,
        )
        if phase == "body":
            message = f"the request body did not arrive within {seconds:g} s (BODY_TIMEOUT)"
            self._refuse(408, b"Request Timeout", message)
        self.transport.close()

    def _refuse(self, status: int, reason: bytes, message: str) -> None:
        """Answer `status` with `message` (unless this request's answer has begun) and close."""
        self._await(None)
        cycle = self.cycle  # on a kept-alive connection, maybe the previous request's
        if cycle is None or cycle.response_complete or not cycle.response_started:
            text = (message + "\n").encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n"
                % (status, reason, len(text))
                + text
            )
        if cycle is not None:
            cycle.response_started = True  # the app's own answer, if any, goes nowhere
            cycle.disconnected = True
        self.transport.close()
