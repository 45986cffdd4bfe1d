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

Two per-request costs are cut, seen with py-spy on a small model's requests at 32 clients (2
cores): a timer made and cancelled for every deadline (~7 % of the event loop's time; here one
timer per connection, moved only when it fires), and two socket writes per answer, one for its
head and one for its body (here the head goes out with the body's first part: one write, one TCP
segment). Together: 6 % more requests/s with batching (median of 4 alternating runs each way).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from server.settings import Settings

log = logging.getLogger("uvicorn.error")
MAX_HEAD_BYTES = 16 * 1024
JOIN_BODY_BYTES = 64 * 1024  # a body up to this size is copied behind the head: one write
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
        self._phase_deadline = 0.0  # loop time by which the awaited phase must arrive
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
        if type(self.cycle) is RequestResponseCycle:
            # uvicorn makes the cycle itself; its task has not run yet, so `send` is looked up
            # on the subclass (same attributes, one method more).
            self.cycle.__class__ = OneWriteCycle
        self._await("body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._await(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_deadline()
        super().connection_lost(exc)

    def _await(self, phase: str | None) -> None:
        """Start awaiting `phase` (None: nothing). The deadline is a time, not a timer: the one
        timer of the connection checks it when it fires and, if it was moved, waits again."""
        self._phase = phase
        if phase is None:
            return
        seconds = self.header_timeout if phase == "head" else self.body_timeout
        self._phase_deadline = self.loop.time() + seconds
        if self._deadline is None:
            self._deadline = self.loop.call_at(self._phase_deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._deadline = None
        phase = self._phase
        if phase is None or self.transport.is_closing():
            return
        if self.loop.time() < self._phase_deadline:  # awaiting a later phase or request
            self._deadline = self.loop.call_at(self._phase_deadline, self._check_deadline)
            return
        self._expired(phase, self.header_timeout if phase == "head" else self.body_timeout)

    def _stop_deadline(self) -> None:
        self._phase = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, phase: str, seconds: float) -> None:
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
        self._stop_deadline()
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


class OneWriteCycle(RequestResponseCycle):
    """uvicorn's request/response cycle writing an answer's head together with its body (or the
    body's first part, up to JOIN_BODY_BYTES): one send() and one TCP segment for a small answer
    where uvicorn makes two. A head with no body message after it is not sent (the app failed
    after starting its answer: uvicorn then closes the connection anyway)."""

    _head = b""

    async def send(self, message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.start" and not self.response_started:
            transport, held = self.transport, _HeldWrites()
            self.transport = held  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
            self._head = b"".join(held.data)
            return
        if kind == "http.response.body" and self._head:
            head, self._head = self._head, b""
            transport, joined = self.transport, _HeadFirst(self.transport, head)
            self.transport = joined  # type: ignore[assignment]
            try:
                await super().send(message)
            finally:
                self.transport = transport
                joined.flush()  # an answer to HEAD writes no body
            return
        await super().send(message)


class _HeldWrites:
    """Stands in for the transport while uvicorn writes a head: keeps what it writes."""

    def __init__(self) -> None:
        self.data: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.data.append(data)


class _HeadFirst:
    """The transport, with `head` written before (joined to, when small) the first write."""

    def __init__(self, transport: asyncio.Transport, head: bytes) -> None:
        self._transport, self._head = transport, head

    def write(self, data: bytes) -> None:
        if self._head and len(data) <= JOIN_BODY_BYTES:
            data, self._head = self._head + data, b""
        self.flush()
        self._transport.write(data)

    def flush(self) -> None:
        if self._head:
            head, self._head = self._head, b""
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # close(), is_closing(), ...
        return getattr(self._transport, name)
