"""What the gateway is told at start: where the model server is, and its limits."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class GatewaySettings:
    """``targets``: model servers (HOST:PORT), round-robin when several.

    ``max_upload_bytes`` bounds a request body (10 MiB: a large phone JPEG); ``max_pixels``
    bounds the decoded image, checked on the header before anything is decoded (8 M, the
    embedded server's default: an image that passes here also passes there).
    """

    targets: tuple[str, ...] = ("localhost:8500",)
    model: str = "deeplabv3"
    version: int | str | None = None
    timeout: float = 30.0
    max_upload_bytes: int = 10 * MIB
    max_pixels: int = 8_000_000
    overlay_quality: int = 90

    def __post_init__(self):
        if isinstance(self.targets, str):
            object.__setattr__(self, "targets", (self.targets,))
        if self.max_upload_bytes < 1 or self.max_pixels < 1:
            raise ValueError("max_upload_bytes and max_pixels must be positive")
