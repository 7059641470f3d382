"""Bounds uvicorn lacks: how many connections are open, and how long a request's headers and
body may take to arrive.

Why: uvicorn (written against 0.54.0) has no header or body read timeout. A client that opens
a connection and sends half a request holds it, and its file descriptor, for ever; enough of
them exhaust the descriptors (EMFILE in accept) and every endpoint stops answering.
``limit_concurrency`` answers 503 only once headers arrived, and ``timeout_keep_alive`` covers
only the idle gap between two requests.

How: ``uvicorn.Config(app, http=guarded_protocol(limits))`` (``cli.uvicorn_config`` does it).
The class is uvicorn's h11 protocol, the one ``http="auto"`` picks here (httptools is not
installed; naming the class pins h11 even where it is), with three additions:

- a connection over ``max_connections`` is answered 503 and closed in ``connection_made``;
- request line and headers must be complete within ``header_timeout`` of the connection
  opening or, on a keep-alive connection, of the next request's first byte: a total, so a
  client trickling a byte at a time gains nothing. Else 408 (or, if nothing arrived, a plain
  close) and the connection is closed;
- ``body_timeout`` is an idle timeout while the body is read: it restarts with every chunk
  that arrives (nginx's ``client_body_timeout``), so a 10 MB upload over slow Wi-Fi passes
  however long it takes while it progresses, and one that stalls is answered 408 and closed.
  It does not run while the app has not asked for the body yet (uvicorn stopped reading, or
  the client waits for ``100 Continue``): that wait is the server's, not the client's.

A request whose headers and body have arrived is left alone (a long model call is not a
timeout). This leans on uvicorn internals (``H11Protocol``'s callbacks, ``conn``, ``cycle``,
``flow``, ``connections``); tests/serving/test_gateway_connections.py runs a real server and
fails if an upgrade breaks them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("uvicorn.error")

Waiting = Literal["headers", "body"]

REFUSALS_LOGGED_EVERY = 10.0
"""Seconds between warnings about refused connections: a flood must not flood the log too."""


@dataclass(frozen=True)
class ConnectionLimits:
    """``GatewaySettings``' bounds on connections (its docstring says why these defaults)."""

    max_connections: int
    header_timeout: float
    body_timeout: float


def _closing_answer(status: str, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


TOO_MANY = _closing_answer("503 Service Unavailable", "too many connections")
TIMED_OUT = _closing_answer("408 Request Timeout", "request not received in time")


@dataclass
class _Refusals:
    since_logged: int = 0
    logged_at: float = -math.inf


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """A protocol class bound to ``limits``, for ``uvicorn.Config(http=…)``: uvicorn makes an
    instance per connection with its own arguments, so the limits travel on the class."""
    return type(
        "GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits, "refusals": _Refusals()}
    )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and header and body read timeouts."""

    limits: ClassVar[ConnectionLimits]
    refusals: ClassVar[_Refusals]
    _timer: asyncio.TimerHandle | None = None
    _waiting_for: Waiting | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvicorn's own set of open connections: no second count to keep in step.
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport  # uvicorn's connection_lost closes it
            transport.write(TOO_MANY)
            transport.close()  # the descriptor goes now, not when the client gives up
            self._log_refusal()
            return
        super().connection_made(transport)
        self._arm("headers", self.limits.header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(progress=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch(progress=False)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _log_refusal(self) -> None:
        refusals = self.refusals
        refusals.since_logged += 1
        if self.loop.time() - refusals.logged_at >= REFUSALS_LOGGED_EVERY:
            logger.warning(
                "Refused %d connection(s): %d open, the limit (--max-connections)",
                refusals.since_logged,
                len(self.connections),
            )
            refusals.since_logged, refusals.logged_at = 0, self.loop.time()

    def _watch(self, progress: bool) -> None:
        """Arms the timer for what the connection now waits on from the client, if anything."""
        state = self.conn.their_state
        if self.transport.is_closing():
            self._disarm()
        elif state is h11.SEND_BODY:
            if progress or self._waiting_for != "body":
                self._arm("body", self.limits.body_timeout)
        elif state is h11.IDLE and (self._waiting_for == "headers" or self.conn.trailing_data[0]):
            # A new connection, or the first bytes of the next request: the timer started
            # then keeps running until the headers are complete.
            if self._waiting_for != "headers":
                self._arm("headers", self.limits.header_timeout)
        else:  # headers and body are in, or an idle keep-alive connection (uvicorn's timer)
            self._disarm()

    def _arm(self, waiting_for: Waiting, seconds: float) -> None:
        self._disarm()
        self._waiting_for = waiting_for
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting_for = None

    def _timed_out(self) -> None:
        waiting_for = self._waiting_for
        self._timer = self._waiting_for = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if waiting_for == "body" and (
            self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue)
        ):
            self._arm("body", self.limits.body_timeout)  # the app has not asked for more yet
            return
        if waiting_for == "headers":
            # A connection that never sent a byte (a browser's preconnect) just closes.
            answer = bool(self.conn.trailing_data[0])
        else:
            answer = cycle is not None and not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app now reads http.disconnect; its sends are dropped
            cycle.message_event.set()
        if answer:
            self.transport.write(TIMED_OUT)
        self.transport.close()
        client = "{}:{} - ".format(*self.client) if self.client else ""
        level = logging.INFO if answer else logging.DEBUG  # preconnects idle out all the time
        logger.log(level, "%sClosed: the request's %s did not arrive in time", client, waiting_for)
