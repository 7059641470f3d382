"""What the gateway is told at start: where the model server is, its limits, where to listen.

Every default is written here once; ``python -m serving gateway`` reads its flags' defaults
from these fields (TF Serving's rule: one Options struct, flags bind to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from client import contract

MIB = 1024 * 1024

LOG_LEVELS = ("debug", "info", "warning", "error")
"""uvicorn's log levels the CLI offers."""

INFO_TIMEOUT = 3.0
"""Seconds for status and metadata calls: they answer in milliseconds when the server is up,
and a health check or the page must not wait for the segmentation deadline when it is not."""


@dataclass(frozen=True)
class GatewaySettings:
    """``targets``: model servers (HOST:PORT, or one gRPC target such as
    ``dns:///model-server-grpc:8500``), balanced by gRPC's round_robin when several; ``model`` and
    ``version`` (a number, a label, or None for the latest) what to ask them for;
    ``timeout`` each segmentation's deadline in seconds; ``connect_timeout`` how long a call
    waits for a model server that does not answer at all (down, restarting): a person or a
    load balancer gets 503 within a second and can retry, rather than waiting out the whole
    deadline. ``ca_cert``: a PEM root certificate to reach the model servers over TLS (the
    server's ``--ssl-cert`` or the CA that signed it).

    ``max_upload_bytes`` bounds a request body (10 MiB: a large phone JPEG); ``max_pixels``
    bounds the decoded image, checked on the header before anything is decoded (the contract's
    limit, the embedded server's default: an image that passes here also passes there).

    ``host``, ``port`` and ``log_level`` are uvicorn's, used by the CLI only.

    Connection bounds uvicorn lacks (``connections.py``; the CLI's server only): at most
    ``max_connections`` open, over it one is closed on accept. 900 fits under the common
    1024-descriptor soft limit with room for what else the process holds (listener, gRPC
    channels, static files: 14 when measured idle), and is far more clients than one model
    server can keep busy. Request line and headers must arrive within ``header_timeout``
    seconds (they are one packet from a working client); the body may pause at most
    ``body_timeout`` seconds between reads (an idle timeout, so a slow upload that progresses
    passes); else 408 and close.
    """

    targets: tuple[str, ...] = (f"localhost:{contract.GRPC_PORT}",)
    model: str = contract.DEFAULT_MODEL_NAME
    version: int | str | None = None
    timeout: float = 30.0
    connect_timeout: float = 1.0
    ca_cert: Path | None = None
    max_upload_bytes: int = 10 * MIB
    max_pixels: int = contract.DEFAULT_MAX_PIXELS
    overlay_quality: int = 90
    host: str = "0.0.0.0"
    port: int = contract.GATEWAY_PORT
    log_level: str = "info"
    max_connections: int = 900
    header_timeout: float = 10.0
    body_timeout: float = 30.0

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            object.__setattr__(self, "targets", (self.targets,))
        if self.max_upload_bytes < 1 or self.max_pixels < 1:
            raise ValueError("max_upload_bytes and max_pixels must be positive")
        if self.max_connections < 1 or self.header_timeout <= 0 or self.body_timeout <= 0:
            raise ValueError("max_connections, header_timeout and body_timeout must be positive")
        if self.connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, got {self.connect_timeout}")

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials from ``ca_cert``, or None for plain text; ValueError naming the
        file if it cannot be read."""
        if self.ca_cert is None:
            return None
        try:
            root = Path(self.ca_cert).read_bytes()
        except OSError as error:
            raise ValueError(f"cannot read the CA certificate (--ca-cert): {error}") from None
        return grpc.ssl_channel_credentials(root_certificates=root)
