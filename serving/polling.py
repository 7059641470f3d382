"""A daemon thread that calls a function every few seconds until stopped: the version scan
(``ModelManager``) and the models.config watcher (``ConfigFileWatcher``).

    poller = Poller(manager.sync, 2.0, "model-poller")
    poller.start()
    poller.stop()  # waits up to 5 s for a call in progress
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Poller:
    def __init__(self, call: Callable[[], object], seconds: float, name: str):
        """``name``: the thread's, also in the log when a call fails."""
        self.call, self.seconds, self.name = call, seconds, name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Calls ``call`` every ``seconds``, the first time ``seconds`` from now."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stops polling; a call in progress is waited for up to ``timeout`` seconds, then
        left to finish in the background."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.call()
            except Exception:  # one failed call must not end polling for the server's life
                log.exception("%s: a call failed; trying again in %s s", self.name, self.seconds)
