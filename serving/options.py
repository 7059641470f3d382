"""What the embedded server is told at start, each default written once (TF Serving's rule:
the Options struct holds the defaults, the flags bind to it). No TensorFlow here, so
``python -m serving --help`` stays fast.

    options = ServerOptions(port=0, limits=Limits(max_batch=4))
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from client import contract

MIB = 1024 * 1024


def default_workers() -> int:
    """Request threads: enough to keep the model busy and queue a few more; each waits on
    TensorFlow, which uses the cores itself (intra-op threads)."""
    return max(4, 2 * (os.cpu_count() or 1))


@dataclass(frozen=True)
class Limits:
    """Per-request limits (a 1080p frame is 2.1 M pixels). A request's peak memory is about
    170 bytes per pixel (float32 logits of 21 classes at the frame size, twice), so the
    default 8 M pixels (4 × 1080p) is about 1.4 GB."""

    max_batch: int = 32
    max_pixels: int = contract.DEFAULT_MAX_PIXELS


# For the model's own warmup records: TF Serving replays them whatever its request limits.
NO_LIMITS = Limits(max_batch=2**31, max_pixels=2**62)


@dataclass
class ServerOptions:
    host: str = "0.0.0.0"
    port: int = contract.GRPC_PORT
    metrics_port: int | None = None  # None: no metrics endpoint
    # TF Serving's REST API (and the metrics page); None: off. TF Serving's port is
    # contract.REST_PORT; equal to metrics_port, this one port serves both.
    rest_port: int | None = None
    poll_seconds: float = 2.0
    # Seconds between reads of --model-config; 0: read once. TF Serving's default
    # (--model_config_file_poll_wait_seconds) is 0, but models.config promises that edits apply
    # without a restart (Dockerfile.serve gives TF Serving 60 s), and the embedded image runs
    # with no such flag. As often as the version scan: reading a small file costs nothing, an
    # edit applies as soon as a new version would, and in Kubernetes the kubelet's own delay
    # in updating a mounted ConfigMap (up to a minute) dominates anyway.
    model_config_poll_seconds: float = 2.0
    max_message_bytes: int = 64 * MIB
    workers: int = field(default_factory=default_workers)
    limits: Limits = field(default_factory=Limits)
    unload_timeout: float = 60.0
    # Requests running the model at once; the others wait their turn. On a CPU, parallel runs
    # only share the cores (and each holds its frame's big tensors).
    max_concurrent: int = 2
    # PEM files: with both, the port speaks TLS (robots reaching the server over Wi-Fi).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Seconds that calls in flight get to finish on SIGTERM/SIGINT.
    grace: float = 10.0
    # TensorFlow's threads: one request's convolutions use every core (intra-op); a frame's
    # graph is a chain, so running ops side by side (inter-op) only adds contention.
    intra_op_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    inter_op_threads: int = 1

    def __post_init__(self):
        # A request's outputs are 2 bytes per pixel; they must fit one gRPC message.
        if 2 * self.limits.max_pixels > self.max_message_bytes:
            raise ValueError(
                f"--max-pixels {self.limits.max_pixels:,} gives responses of up to "
                f"{2 * self.limits.max_pixels:,} bytes, over --max-message-mb "
                f"({self.max_message_bytes:,} bytes)"
            )
        if self.max_concurrent < 1:
            raise ValueError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both --ssl-cert and --ssl-key")

    def credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials from the PEM files, or None for a plain port."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        try:
            pair = (Path(self.tls_key).read_bytes(), Path(self.tls_cert).read_bytes())
        except OSError as error:
            raise ValueError(f"cannot read TLS file: {error}") from error
        return grpc.ssl_server_credentials([pair])
