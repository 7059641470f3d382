"""The one error type request handling raises: a gRPC status code and TF Serving's message.

Messages name what a client sent (a model, a signature, an input), so they echo its names;
``echo`` bounds each one and ``ServingError`` bounds the whole message: a status travels in
HTTP/2 trailers, and an answer over the client's metadata limit (8 KiB by default) would
reach it as RESOURCE_EXHAUSTED instead of the reason.

    raise invalid(f'Serving signature key "{echo(signature)}" not found.')
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc

ECHOED_NAME_CHARS = 64
ECHOED_NAMES = 10
MESSAGE_CHARS = 2000


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def echo(name: object) -> str:
    """A client-sent name as a message shows it: ASCII (other characters escaped, as gRPC
    would percent-encode them to up to 12 bytes each), its first ECHOED_NAME_CHARS."""
    text = str(name)
    return _cut(text if text.isascii() else ascii(text)[1:-1], ECHOED_NAME_CHARS)


def echo_set(names: Iterable[str]) -> str:
    """``{a,b,c}`` of client-sent names, sorted: the first ECHOED_NAMES of them, each bounded."""
    names = sorted(names)
    shown = [echo(n) for n in names[:ECHOED_NAMES]]
    if len(names) > ECHOED_NAMES:
        shown.append(f"... {len(names) - ECHOED_NAMES} more")
    return "{" + ",".join(shown) + "}"


class ServingError(Exception):
    """Answered as ``code`` with ``message`` (at most MESSAGE_CHARS); never takes the server
    down."""

    def __init__(self, code: grpc.StatusCode, message: str):
        message = _cut(message, MESSAGE_CHARS)
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)
