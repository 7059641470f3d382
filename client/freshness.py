"""Fresh or nothing: the planner gets the newest map only while it is younger than ``max_age``.

A planner that keeps driving on the last map it got, after the server slowed down or stopped
or the camera froze, drives blind under a stamp that looks fine (Nav2 does not stop on stale
data unless ``expected_update_rate`` is set). ``FreshMap`` sits between the stream and the
planner: the stream ``update``s it with each map (stamped with its frame's capture time) and
notes failed frames; the planner ``get``s a ``MapState`` whose ``map`` is None once the newest
map is too old, with the reason.

    >>> from types import SimpleNamespace as Map
    >>> now = [100.0]
    >>> maps = FreshMap(max_age=0.5, clock=lambda: now[0])
    >>> maps.get().reason
    'no map yet'
    >>> maps.update(Map(stamp=99.9))
    >>> state = maps.get()
    >>> state.fresh, round(state.age, 2)
    (True, 0.1)
    >>> now[0] = 101.0  # a second later, nothing new came
    >>> maps.note_failure("ServerUnavailable: connection refused")
    >>> state = maps.get()
    >>> state.map is None, state.reason
    (True, 'the newest map is 1.10 s old (max_age 0.50 s); the last frame failed: ...')
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = ["FreshMap", "MapState", "Stamped"]


class Stamped(Protocol):
    stamp: float  # capture time of the frame the map came from, on FreshMap's clock


MapT = TypeVar("MapT", bound=Stamped)


@dataclass(frozen=True)
class MapState(Generic[MapT]):
    """What the planner gets: ``map`` (None unless fresh), its ``age`` in seconds (None when
    there is no map at all) and, when not fresh, the ``reason``."""

    map: MapT | None
    age: float | None
    reason: str = ""

    @property
    def fresh(self) -> bool:
        return self.map is not None


class FreshMap(Generic[MapT]):
    """The newest map by capture stamp, handed out only while younger than ``max_age``
    seconds on ``clock`` (``time.monotonic``, the stream's clock). Thread-safe: the stream
    updates it on one thread, the planner reads it on another."""

    def __init__(self, max_age: float, *, clock: Callable[[], float] = time.monotonic):
        if not (math.isfinite(max_age) and max_age > 0):
            raise ValueError(f"max_age={max_age}: must be > 0 seconds")
        self.max_age = max_age
        self.clock = clock
        self.updates = 0
        self.failures = 0
        self._map: MapT | None = None
        self._failure = ""
        self._lock = threading.Lock()

    def update(self, new_map: MapT) -> None:
        """Offers a map; one older than the newest held (an answer overtaken) is ignored."""
        with self._lock:
            if self._map is None or new_map.stamp >= self._map.stamp:
                self._map = new_map
                self._failure = ""
                self.updates += 1

    def note_failure(self, error: object) -> None:
        """Records that a frame got no map (its error goes into the stale reason)."""
        with self._lock:
            self._failure = str(error)
            self.failures += 1

    def get(self) -> MapState[MapT]:
        with self._lock:
            current, failure = self._map, self._failure
        failed = f"; the last frame failed: {failure}" if failure else ""
        if current is None:
            return MapState(None, None, f"no map yet{failed}")
        age = self.clock() - current.stamp
        if age <= self.max_age:
            return MapState(current, age)
        return MapState(
            None, age, f"the newest map is {age:.2f} s old (max_age {self.max_age:.2f} s){failed}"
        )

    def latest(self) -> MapT | None:
        """The map if fresh, else None: ``get().map``."""
        return self.get().map
