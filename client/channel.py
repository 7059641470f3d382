"""One gRPC channel over every model server: gRPC's own load balancing, retries and health.

gRPC spreads calls and retries them itself when its service config says so: the
``round_robin`` policy keeps a connection (a subchannel) to every address a target names and
sends each call to the next ready one; ``healthCheckConfig`` takes a server out of the rotation
while its ``grpc.health.v1`` says NOT_SERVING (the embedded server says so while no version is
AVAILABLE and from the moment it starts draining); ``retryPolicy`` retries a call the server
refused with UNAVAILABLE, on the next server. A target names the servers:

    channel_target("dns:///model-server-grpc:8500")  # every address of a (headless) name
    channel_target("ipv4:10.0.0.5:8500,10.0.0.6:8500")  # gRPC's multi-address form
    channel_target(["10.0.0.5:8500", "10.0.0.6:8500"])  # → 'ipv4:10.0.0.5:8500,10.0.0.6:8500'
    channel = grpc.insecure_channel(target, channel_options(RetryPolicy()))

A server without ``grpc.health.v1`` (TF Serving has none) answers the health check with
UNIMPLEMENTED, which gRPC takes as healthy (gRFC A17), so the same config serves both.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from client import contract

DEFAULT_MESSAGE_BYTES = 64 * 1024 * 1024
"""gRPC's 4 MiB default is raised: a 1080p raw frame is 6.2 MB, its class map 2 MB."""

# gRPC caps a retry policy's attempts at 5 (gRFC A6), the first one included.
MAX_ATTEMPTS = 5
_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's ``retryPolicy`` for calls a server refuses with UNAVAILABLE (or cancels as it
    shuts down): up to ``max_attempts`` in all, with jittered exponential backoff between them;
    attempts stop at the call's deadline whatever is left."""

    initial_backoff: float = 0.05
    max_backoff: float = 1.0
    multiplier: float = 2.0
    # Three servers tried once each. gRPC also retries a call no server could take (all down):
    # more attempts would spend a short frame deadline on backoff rather than on failing fast.
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if not 2 <= self.max_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"max_attempts must be in 2..{MAX_ATTEMPTS}, got {self.max_attempts}")
        if self.initial_backoff <= 0 or self.max_backoff <= 0 or self.multiplier <= 0:
            raise ValueError("backoffs and multiplier must be positive")


DEFAULT_RETRY = RetryPolicy()


def _duration(seconds: float) -> str:
    """A protobuf JSON Duration: ``0.05`` → ``"0.05s"``."""
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def service_config(retry: RetryPolicy) -> dict:
    """The service config every client channel carries (as JSON in ``grpc.service_config``)."""
    services = [{"service": contract.PREDICTION_SERVICE}, {"service": contract.MODEL_SERVICE}]
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": contract.PREDICTION_SERVICE},
        "methodConfig": [
            {
                "name": services,
                "retryPolicy": {
                    "maxAttempts": retry.max_attempts,
                    "initialBackoff": _duration(retry.initial_backoff),
                    "maxBackoff": _duration(retry.max_backoff),
                    "backoffMultiplier": retry.multiplier,
                    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                },
            }
        ],
    }


def channel_options(
    retry: RetryPolicy, overrides: Sequence[tuple[str, object]] = ()
) -> list[tuple[str, object]]:
    """Our channel options, ``overrides`` replacing them by name (gRPC would take the first of
    duplicates)."""
    options: dict[str, object] = {
        "grpc.max_send_message_length": DEFAULT_MESSAGE_BYTES,
        "grpc.max_receive_message_length": DEFAULT_MESSAGE_BYTES,
        # Reconnect quickly after a server restart: gRPC's defaults back off to minutes, and
        # a robot on a LAN would stay blind for that long.
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.min_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1000,
        # Subchannels of this channel alone: another client's connection to the same address
        # (its backoff, its health watch) must not decide this one's.
        "grpc.use_local_subchannel_pool": 1,
        "grpc.enable_retries": 1,
        # gRPC retries only requests it still holds; its 256 KiB default is less than one frame.
        "grpc.per_rpc_retry_buffer_size": DEFAULT_MESSAGE_BYTES,
        "grpc.service_config": json.dumps(service_config(retry)),
        # Ours, not one a DNS TXT record might carry.
        "grpc.service_config_disable_resolution": 1,
    }
    options.update(dict(overrides))
    return list(options.items())


def resolve(host: str, port: int) -> list[tuple[str, str]]:
    """``(scheme, "address:port")`` of every IPv4 and IPv6 address of ``host``, in the
    resolver's order, ``scheme`` being gRPC's (``ipv4``, ``ipv6``); raises socket.gaierror.

    >>> resolve("127.0.0.1", 8500)
    [('ipv4', '127.0.0.1:8500')]
    """
    found = []
    for family, _, _, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if family == socket.AF_INET:
            found.append(("ipv4", f"{address[0]}:{port}"))
        elif family == socket.AF_INET6:
            found.append(("ipv6", f"[{address[0]}]:{port}"))
    return found


def _addresses_of(entry: str) -> dict[str, str]:
    """``HOST:PORT`` → ``{scheme: "address:port"}`` for IPv4 and IPv6 (one address each)."""
    host, colon, port = entry.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT in a list of targets, got {entry!r}")
    host = host.strip("[]")
    try:
        found = resolve(host, int(port))
    except socket.gaierror as error:
        raise ValueError(f"cannot resolve {host!r} of target {entry!r}: {error}") from None
    addresses: dict[str, str] = {}
    for scheme, address in found:
        addresses.setdefault(scheme, address)
    return addresses


def channel_target(target: str | Sequence[str]) -> str:
    """The one gRPC target for ``target``: a string is gRPC's own (``host:port``,
    ``dns:///name:port``, ``ipv4:a:p,b:p``, ``unix:path``) and passes as it is; a list of
    ``HOST:PORT`` becomes gRPC's multi-address form, its names resolved once, now (a name whose
    addresses change belongs in one ``dns:///`` target, which gRPC re-resolves).

    >>> channel_target(["10.0.0.5:8500", "10.0.0.6:8500"])
    'ipv4:10.0.0.5:8500,10.0.0.6:8500'
    >>> channel_target(["[::1]:8500", "127.0.0.1:8501"])
    Traceback (most recent call last):
    ValueError: the targets ['[::1]:8500', '127.0.0.1:8501'] share no address family (IPv4, IPv6)
    """
    if isinstance(target, str):
        if not target:
            raise ValueError("target must not be empty")
        return target
    entries = list(target)
    if not entries or not all(isinstance(entry, str) and entry for entry in entries):
        raise ValueError(f"target must be 'host:port' or a list of them, got {target!r}")
    if len(entries) == 1:
        return entries[0]
    schemed = [entry for entry in entries if entry.startswith(_SCHEMES)]
    if schemed:
        raise ValueError(
            f"{schemed[0]!r} is a gRPC target of its own: list HOST:PORT entries, or give one "
            "target such as 'dns:///name:8500' or 'ipv4:a:8500,b:8500'"
        )
    resolved = [_addresses_of(entry) for entry in entries]
    for scheme in ("ipv4", "ipv6"):
        if all(scheme in addresses for addresses in resolved):
            return f"{scheme}:" + ",".join(addresses[scheme] for addresses in resolved)
    raise ValueError(f"the targets {entries} share no address family (IPv4, IPv6)")
