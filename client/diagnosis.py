"""Why a connection to a model server fails, when waiting will not help.

A client retries UNAVAILABLE until its deadline: a server restarting or a Wi-Fi gap clears by
itself. Plain text against a TLS port (or TLS against a plain one) never does, and gRPC names it
badly ("Socket closed"), so a call would spend its whole deadline and end with no hint. These
checks name it after the first failed attempt:

    reason = tls_mismatch("robot-server:8500", details, uses_tls=False)
    # → "robot-server:8500 speaks TLS and this client sends plain text: …" or None
"""

from __future__ import annotations

import socket
import ssl

PROBE_SECONDS = 1.0
"""How long the TLS probe may take (one TCP connect and handshake on the server's port)."""

# gRPC's words for a plain-text client whose connection the TLS server closed.
_PLAIN_TO_TLS = ("Socket closed", "Connection reset")
_PLAIN_SERVER = "WRONG_VERSION_NUMBER"  # a TLS client reading a plain HTTP/2 answer
_UNTRUSTED = "CERTIFICATE_VERIFY_FAILED"


def host_and_port(target: str) -> tuple[str, int] | None:
    """``(host, port)`` of a gRPC target such as ``host:8500``, ``[::1]:8500`` or
    ``dns:///host:8500``; None for forms that name no single address (``unix:``, no port).

    >>> host_and_port("dns:///robot-server:8500"), host_and_port("[::1]:8500")
    (('robot-server', 8500), ('::1', 8500))
    """
    address = target.split("///", 1)[-1] if "///" in target else target
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or target.startswith(("unix:", "unix-abstract:")):
        return None
    return host.strip("[]"), int(port)


def speaks_tls(target: str, timeout: float = PROBE_SECONDS) -> bool:
    """True if a TLS handshake (any certificate accepted: this only asks which protocol the
    port speaks) succeeds on ``target``."""
    address = host_and_port(target)
    if address is None:
        return False
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection(address, timeout=timeout) as connection,
            context.wrap_socket(connection, server_hostname=address[0]),
        ):
            return True
    except (OSError, ValueError):  # ssl.SSLError is an OSError
        return False


def tls_mismatch(target: str, details: str, *, uses_tls: bool) -> str | None:
    """What is wrong, if a failed connection's ``details`` come from TLS disagreeing between
    this client and the server on ``target``; None if they do not (or the server is down)."""
    if uses_tls and _PLAIN_SERVER in details:
        return (
            f"{target} answers in plain text, not TLS: connect without TLS (no --ca-cert, no "
            "credentials), or start the server with --ssl-cert and --ssl-key"
        )
    if uses_tls and _UNTRUSTED in details:
        return (
            f"{target} speaks TLS but its certificate is not signed by the CA this client "
            "trusts (--ca-cert): give the CA that signed the server's --ssl-cert"
        )
    if not uses_tls and any(words in details for words in _PLAIN_TO_TLS) and speaks_tls(target):
        return (
            f"{target} speaks TLS and this client sends plain text: connect with TLS "
            "(--ca-cert, or credentials=grpc.ssl_channel_credentials(...))"
        )
    return None
