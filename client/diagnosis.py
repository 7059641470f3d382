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

from client.channel import resolve

PROBE_SECONDS = 1.0
"""How long the TLS probe may take (one TCP connect and handshake on the server's port)."""

# gRPC's words for a plain-text client whose connection the TLS server closed.
_PLAIN_TO_TLS = ("Socket closed", "Connection reset")
_PLAIN_SERVER = "WRONG_VERSION_NUMBER"  # a TLS client reading a plain HTTP/2 answer
_UNTRUSTED = "CERTIFICATE_VERIFY_FAILED"


def addresses(target: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` pairs a gRPC target names: ``host:8500``, ``[::1]:8500``,
    ``dns:///host:8500``, ``ipv4:a:8500,b:8501``; none for forms without a port (``unix:``).

    >>> addresses("dns:///robot-server:8500"), addresses("[::1]:8500")
    ([('robot-server', 8500)], [('::1', 8500)])
    >>> addresses("ipv4:10.0.0.5:8500,10.0.0.6:8501")
    [('10.0.0.5', 8500), ('10.0.0.6', 8501)]
    """
    if target.startswith(("unix:", "unix-abstract:", "vsock:")):
        return []
    if target.startswith(("ipv4:", "ipv6:")):
        entries = target.split(":", 1)[1].split(",")
    else:
        entries = [target.split("///", 1)[-1] if "///" in target else target]
    found = []
    for entry in entries:
        host, colon, port = entry.rpartition(":")
        if colon and port.isdigit():
            found.append((host.strip("[]"), int(port)))
    return found


def single_addresses(target: str) -> list[tuple[str, str]]:
    """``(name, gRPC target of one address)`` for every address ``target`` resolves to, to
    ask each server apart: a channel over several reports only its last failure, which may be
    another server's refused connection rather than a TLS error.

    >>> single_addresses("ipv4:127.0.0.1:8500")
    [('127.0.0.1:8500', 'ipv4:127.0.0.1:8500')]
    """
    found = []
    for host, port in addresses(target):
        try:
            resolved = resolve(host, port)
        except socket.gaierror:
            continue
        found += [(f"{host}:{port}", f"{scheme}:{address}") for scheme, address in resolved]
    return list(dict.fromkeys(found))


def speaks_tls(address: tuple[str, int], timeout: float = PROBE_SECONDS) -> bool:
    """True if a TLS handshake (any certificate accepted: this only asks which protocol the
    port speaks) succeeds on ``address``."""
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
    this client and a server of ``target`` (each of its addresses is asked); None if they do not
    (or the servers are down)."""
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
    if not uses_tls and any(words in details for words in _PLAIN_TO_TLS):
        for host, port in addresses(target):
            if speaks_tls((host, port)):
                return (
                    f"{host}:{port} speaks TLS and this client sends plain text: connect with "
                    "TLS (--ca-cert, or credentials=grpc.ssl_channel_credentials(...))"
                )
    return None
