"""Resuming a training run killed at any point, with the history it would have had.

Keras' ``BackupAndRestore`` saves weights and the epoch, but not the state of the callbacks
that decide the run's course (ReduceLROnPlateau's and EarlyStopping's counters, the best
score), and it overwrites its file in place. :class:`RunState` saves all of it at the end of
every epoch: the weights (with the optimizer's slots) go to a new file first, then a small
JSON that names them replaces the old one in one ``os.replace``. A kill at any instant leaves
the previous epoch's complete state or the new one; on restart the CSV rows of an epoch whose
state was not saved are dropped, and that epoch runs again (with the same data, see
:func:`training.data.pipeline.make_dataset`'s ``first_epoch``).

    best = BestWeights(run_dir / "best.weights.h5")
    state = RunState(run_dir / "state", watched=[best, reduce_lr, early_stopping])
    initial_epoch = state.restore(model, csv_log=run_dir / "log.csv")  # 0 on a new run
    model.fit(..., initial_epoch=initial_epoch, callbacks=[best, ..., state])  # state last
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


def _finite_loss(logs: dict | None) -> bool:
    loss = (logs or {}).get("loss")
    return loss is None or math.isfinite(loss)


def save_weights_atomically(model: keras.Model, path: Path) -> None:
    """``model.save_weights`` to a temporary file, then renamed: never a half-written file."""
    temporary = path.with_name(f".{path.name}.tmp.weights.h5")
    model.save_weights(temporary)
    os.replace(temporary, path)


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the highest ``monitor`` (val mean IoU).

    Unlike ``ModelCheckpoint`` it writes atomically and never keeps an epoch whose training
    loss was NaN; its ``best`` and ``best_epoch`` are part of the run state.
    """

    def __init__(self, path: str | Path, monitor: str = "val_mean_iou"):
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.best: float | None = None
        self.best_epoch: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None or not _finite_loss(logs) or not math.isfinite(current):
            return
        if self.best is None or current > self.best:
            save_weights_atomically(self.model, self.path)
            self.best, self.best_epoch = float(current), epoch


# The attributes that carry each callback's decisions from one epoch to the next.
CALLBACK_FIELDS = {
    BestWeights: ("best", "best_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("best", "wait", "cooldown_counter"),
    keras.callbacks.EarlyStopping: ("best", "wait", "stopped_epoch", "best_epoch"),
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
    """Saves and restores a run's complete state per epoch; put it last in the callbacks.

    ``read_dir`` (default ``state_dir``) is where a restart reads from: workers of a
    multi-machine run all resume from the chief's state so they agree on the epoch.
    """

    def __init__(
        self,
        state_dir: str | Path,
        watched: list[keras.callbacks.Callback],
        *,
        epochs: int | None = None,
        read_dir: str | Path | None = None,
    ):
        super().__init__()
        self.state_dir = Path(state_dir)
        self.read_dir = Path(read_dir) if read_dir is not None else self.state_dir
        self.watched = list(watched)
        self.epochs = epochs
        self._pending: dict | None = None
        self.diverged = False

    # --- reading -------------------------------------------------------------------------

    def saved(self) -> dict | None:
        """The last saved state (``epochs_done``, ``finished``, …), or None for a new run."""
        return self._read(self.read_dir)

    @staticmethod
    def _read(state_dir: Path) -> dict | None:
        path = state_dir / STATE_FILE
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise RuntimeError(f"{path}: unreadable run state ({error})") from error

    def restore(self, model: keras.Model, *, csv_log: str | Path | None = None) -> int:
        """Loads the saved weights and optimizer state into ``model`` (call it inside the
        distribution strategy's scope); returns the epoch to start from (0 for a new run).
        CSV rows of epochs after the saved one are dropped: their state was never saved and
        they run again."""
        state = self.saved()
        epochs_done = 0 if state is None else state["epochs_done"]
        if csv_log is not None:
            truncate_csv_log(csv_log, epochs_done)
        if state is None:
            return 0
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        model.load_weights(self.read_dir / state["weights"])  # optimizer.iterations included
        rate = model.optimizer.learning_rate
        if isinstance(rate, keras.Variable):  # a schedule follows iterations by itself
            rate.assign(state["learning_rate"])
        self._pending = state
        log.info("resuming after epoch %d from %s", epochs_done, self.read_dir)
        return epochs_done

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
        if not _finite_loss(logs):
            log.warning("epoch %d ended with loss %s: its state is not saved", epoch + 1, logs)
            self.diverged = True
            return
        self.save(epoch + 1)

    def on_train_end(self, logs=None):
        state = self.saved()
        if state is not None and not self.diverged and self.read_dir == self.state_dir:
            state["finished"] = True
            state["early_stopped"] = bool(self.model.stop_training)
            self._write_json(state)

    # --- writing -------------------------------------------------------------------------

    def save(self, epochs_done: int) -> None:
        """Commits the state after ``epochs_done`` epochs (weights first, then the JSON)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        previous = self._read(self.state_dir)
        weights = f"epoch-{epochs_done:04d}.weights.h5"
        self.model.save_weights(self.state_dir / weights)
        state = {
            "epochs_done": epochs_done,
            "epochs": self.epochs,
            "finished": False,
            "early_stopped": False,
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


def is_complete(state: dict | None, epochs: int) -> bool:
    """True when a saved run has nothing left to do for a target of ``epochs``: it finished
    all of them, or early stopping ended it and the target did not grow since."""
    if state is None or not state.get("finished"):
        return False
    if state["epochs_done"] >= epochs:
        return True
    return bool(state.get("early_stopped")) and epochs <= (state.get("epochs") or 0)


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
    try:
        kept = [row for row in body if row and int(row[0]) < epochs_done]
    except ValueError as error:
        raise ValueError(f"{path}: a row does not start with an epoch number ({error})") from error
    if len(kept) == len(body):
        return
    with open(path, "w", newline="") as file:
        csv.writer(file).writerows([header, *kept])
