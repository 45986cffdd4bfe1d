"""uvicorn's h11 HTTP protocol with the read deadlines it lacks.

uvicorn closes a kept-alive connection after `timeout_keep_alive` but never one that is slow to
send its request: a connection that sends nothing, or its headers a byte at a time, or its body
a byte at a time, holds a socket and a slot for as long as it likes (and delays shutdown). Go's
http.Server (ReadHeaderTimeout) and nginx (client_header_timeout / client_body_timeout) bound
both; so does this:
- the request head (request line and headers) must arrive within HEADER_TIMEOUT seconds of the
  connection opening or of its first byte after a kept-alive response: else the connection is
  closed (nothing has been asked, so nothing is answered);
- the body must arrive within BODY_TIMEOUT seconds of the head: else 408 Request Timeout and the
  connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from server.settings import Settings

log = logging.getLogger("uvicorn.error")
_settings: Settings | None = None


def _timeouts() -> tuple[float, float]:
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return float(_settings.header_timeout), float(_settings.body_timeout)


class GuardedH11Protocol(H11Protocol):
    """H11Protocol plus a deadline for the request head and one for its body."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout, self.body_timeout = _timeouts()
        self._phase: str | None = None  # "head" or "body" while one is awaited
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await("head")

    def data_received(self, data: bytes) -> None:
        if self._phase is None and self.conn.their_state is h11.IDLE:
            self._await("head")  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            wanted = "body"
        elif state is h11.IDLE and self._phase == "head":
            wanted = "head"  # still waiting for the rest of the head
        else:
            wanted = None
        if wanted != self._phase:
            self._await(wanted)

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
        if phase == "body" and self.cycle is not None and not self.cycle.response_started:
            message = f"the request body did not arrive within {seconds:g} s (BODY_TIMEOUT)\n"
            try:
                for event in (
                    h11.Response(
                        status_code=408,
                        reason=b"Request Timeout",
                        headers=[
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(message)).encode()),
                            (b"connection", b"close"),
                        ],
                    ),
                    h11.Data(data=message.encode()),
                    h11.EndOfMessage(),
                ):
                    self.transport.write(self.conn.send(event))
                self.cycle.disconnected = True  # the app's own answer, if any, goes nowhere
            except h11.LocalProtocolError:
                pass
        self.transport.close()
