"""What the routes share for the app's lifetime: the settings, the model server client, the
metrics, and the model's metadata cached per version. The lifespan opens it, the providers in
``dependencies`` hand its parts to the routes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from client import ModelMetadata, SegmentationClient
from serving.gateway.metrics import GatewayMetrics
from serving.gateway.settings import INFO_TIMEOUT, GatewaySettings


class MetadataCache:
    """The metadata of each model version that answered, fetched once per version: the class
    names and palette of a segment answer must be those of the version that made it."""

    def __init__(self, client: SegmentationClient):
        self._client = client
        self._by_version: dict[int, ModelMetadata] = {}
        self._lock = threading.Lock()  # segment work runs on the thread pool

    def get(self, version: int) -> ModelMetadata:
        """``version``'s metadata; fetched when a new version starts answering."""
        with self._lock:
            cached = self._by_version.get(version)
        if cached is None:
            cached = self._client.metadata(timeout=INFO_TIMEOUT)
            with self._lock:
                self._by_version[cached.model_version] = cached
        return cached


@dataclass
class Gateway:
    """The shared state; ``owns_client``: the gateway opened the client and closes it."""

    settings: GatewaySettings
    client: SegmentationClient
    metrics: GatewayMetrics
    owns_client: bool = False
    metadata: MetadataCache = field(init=False)

    def __post_init__(self) -> None:
        self.metadata = MetadataCache(self.client)

    @classmethod
    def open(
        cls,
        settings: GatewaySettings,
        metrics: GatewayMetrics,
        client: SegmentationClient | None = None,
    ) -> Gateway:
        """The state, with a client of its own to ``settings.targets`` unless one is given."""
        if client is not None:
            return cls(settings, client, metrics)
        own = SegmentationClient(
            settings.targets,
            settings.model,
            version=settings.version,
            timeout=settings.timeout,
            connect_timeout=settings.connect_timeout,
            credentials=settings.credentials(),
        )
        return cls(settings, own, metrics, owns_client=True)

    def close(self) -> None:
        if self.owns_client:
            self.client.close()
