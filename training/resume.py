"""Resuming a training run killed at any point, with the history it would have had.

Keras' ``BackupAndRestore`` saves weights and the epoch, but not the state of the callbacks
that decide the run's course (ReduceLROnPlateau's and EarlyStopping's counters, the best
checkpoint's score), and it overwrites its file in place. :class:`RunState` saves all of it at
the end of every epoch, atomically: the weights (with the optimizer's slots) go to a new file
first, then a small JSON that names them replaces the old one in a single ``os.replace``. A
kill at any instant leaves either the previous epoch's complete state or the new one.

    >>> state = RunState(run_dir / "state", watched=[checkpoint, reduce_lr, early_stopping])
    >>> initial_epoch = state.restore(model, csv_log=run_dir / "log.csv")  # 0 on a new run
    >>> model.fit(..., initial_epoch=initial_epoch, callbacks=[..., state])  # state last
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from pathlib import Path

import keras

log = logging.getLogger(__name__)

STATE_FILE = "state.json"

# The attributes that carry each callback's decisions from one epoch to the next.
CALLBACK_FIELDS = {
    keras.callbacks.ReduceLROnPlateau: ("best", "wait", "cooldown_counter"),
    keras.callbacks.EarlyStopping: ("best", "wait", "stopped_epoch", "best_epoch"),
    keras.callbacks.ModelCheckpoint: ("best",),
}


def _fields(callback: keras.callbacks.Callback) -> tuple[str, ...]:
    for kind, fields in CALLBACK_FIELDS.items():
        if isinstance(callback, kind):
            return fields
    raise TypeError(f"RunState does not know which state of {type(callback).__name__} to keep")


def _json_number(value):
    """Numbers as JSON allows them: None stays None, inf (an initial best) becomes a string."""
    if value is None or isinstance(value, int):
        return value
    value = float(value)
    return value if math.isfinite(value) else str(value)


class RunState(keras.callbacks.Callback):
    """Saves and restores a run's complete state per epoch; put it last in the callbacks."""

    def __init__(self, state_dir: str | Path, watched: list[keras.callbacks.Callback]):
        super().__init__()
        self.state_dir = Path(state_dir)
        self.watched = list(watched)
        self._pending: dict | None = None
        self.diverged = False

    # --- reading -------------------------------------------------------------------------

    def saved(self) -> dict | None:
        """The last saved state (``epochs_done``, ``finished``, …), or None for a new run."""
        path = self.state_dir / STATE_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise RuntimeError(f"{path}: unreadable run state ({error})") from error

    def restore(self, model: keras.Model, *, csv_log: str | Path | None = None) -> int:
        """Loads the saved weights and optimizer state into ``model``; returns the epoch to
        start from (0 for a new run). CSV rows of epochs after the saved one are dropped: they
        belong to an epoch that did not finish saving and will run again."""
        state = self.saved()
        if state is None:
            return 0
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.state_dir / state["weights"])
        model.optimizer.learning_rate.assign(state["learning_rate"])
        self._pending = state
        if csv_log is not None:
            truncate_csv_log(csv_log, state["epochs_done"])
        log.info("resuming after epoch %d from %s", state["epochs_done"], self.state_dir)
        return state["epochs_done"]

    # --- keras hooks ---------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        # Runs after the watched callbacks' own on_train_begin, which resets their counters.
        if self._pending is None:
            return
        for callback, fields in zip(self.watched, self._pending["callbacks"], strict=True):
            for name, value in fields.items():
                setattr(callback, name, float(value) if isinstance(value, str) else value)
        self._pending = None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            log.warning("epoch %d ended with loss %s: its state is not saved", epoch + 1, loss)
            self.diverged = True
            return
        self.save(epoch + 1, finished=False)

    def on_train_end(self, logs=None):
        state = self.saved()
        if state is not None and not self.diverged:
            state["finished"] = True
            self._write_json(state)

    # --- writing -------------------------------------------------------------------------

    def save(self, epochs_done: int, *, finished: bool) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        previous = self.saved()
        weights = f"epoch-{epochs_done:04d}.weights.h5"
        self.model.save_weights(self.state_dir / weights)
        state = {
            "epochs_done": epochs_done,
            "finished": finished,
            "weights": weights,
            "learning_rate": float(self.model.optimizer.learning_rate.numpy()),
            "callbacks": [
                {name: _json_number(getattr(callback, name)) for name in _fields(callback)}
                for callback in self.watched
            ],
        }
        self._write_json(state)
        if previous is not None and previous["weights"] != weights:
            (self.state_dir / previous["weights"]).unlink(missing_ok=True)

    def _write_json(self, state: dict) -> None:
        temporary = self.state_dir / f"{STATE_FILE}.tmp"
        with open(temporary, "w") as file:
            json.dump(state, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.state_dir / STATE_FILE)


def truncate_csv_log(path: str | Path, epochs_done: int) -> None:
    """Keeps the header and the rows of epochs ``< epochs_done`` of a Keras CSVLogger file."""
    path = Path(path)
    if not path.is_file():
        return
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    if not rows:
        return
    header, body = rows[0], rows[1:]
    kept = [row for row in body if row and int(row[0]) < epochs_done]
    if len(kept) == len(body):
        return
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([header, *kept])
