"""A training run's folder: what it holds and how to rebuild its model.

runs/NAME/
  config.json        resolved configuration (every option, versions, class names and colours)
  labelmap.txt       the classes trained, in CVAT's format (names and colours in id order)
  splits/            the id lists the run trained and validated on
  log.csv            one row per epoch (Keras CSVLogger)
  curves.png         loss, mean IoU, accuracies, learning rate per epoch
  best.weights.h5    weights of the epoch with the best validation mean IoU
  state/             resume state (weights, optimizer, callback counters) of the last epoch
  tensorboard/       TensorBoard logs
  evaluation/        what `python -m training evaluate` writes

run = RunFolder("runs/voc")
model = run.load_model()  # best weights, ready for predict/evaluate/export
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import keras

from training.config import PRECISION_POLICIES, PRECISIONS, TrainConfig
from training.data.labelmap import LABELMAP_FILE, write_labelmap
from training.model.deeplab import build_deeplabv3


def model_from_config(
    config: TrainConfig, *, backbone_weights: str | Path | None = None
) -> keras.Model:
    """The architecture ``config`` describes; ``backbone_weights`` as in build_deeplabv3."""
    return build_deeplabv3(
        config.num_classes,
        backbone=config.backbone,
        output_stride=config.output_stride,
        backbone_weights=backbone_weights,
        bn_momentum=config.bn_momentum,
        decoder=config.decoder,
        sync_batch_norm=config.sync_batch_norm,
    )


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    config = property(lambda self: self.path / "config.json")
    splits = property(lambda self: self.path / "splits")
    labelmap = property(lambda self: self.path / LABELMAP_FILE)
    log = property(lambda self: self.path / "log.csv")
    curves = property(lambda self: self.path / "curves.png")
    best_weights = property(lambda self: self.path / "best.weights.h5")
    state = property(lambda self: self.path / "state")
    tensorboard = property(lambda self: self.path / "tensorboard")
    evaluation = property(lambda self: self.path / "evaluation")

    def write_config(self, config: TrainConfig, **extra) -> None:
        """config.json, and the classes as labelmap.txt (what a labelling tool reads back)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps({**asdict(config), **extra}, indent=2) + "\n")
        write_labelmap(config.classes(), self.labelmap)

    def read_config(self) -> TrainConfig:
        if not self.config.is_file():
            raise FileNotFoundError(
                f"{self.config}: no such run (train one with --out {self.path})"
            )
        try:
            saved = json.loads(self.config.read_text())
            known = {f.name for f in fields(TrainConfig)}
            return TrainConfig(**{key: value for key, value in saved.items() if key in known})
        except (ValueError, TypeError) as error:
            raise ValueError(f"{self.config}: not a valid run configuration ({error})") from error

    def build_model(self, config: TrainConfig | None = None) -> keras.Model:
        """The run's architecture with random weights (no download)."""
        return model_from_config(config or self.read_config(), backbone_weights=None)

    def load_model(self, precision: str = "float32") -> keras.Model:
        """The run's model with its best weights, computing in ``precision`` (one of
        :data:`training.config.PRECISIONS`; weights stay float32)."""
        if precision not in PRECISION_POLICIES:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if not self.best_weights.is_file():
            raise FileNotFoundError(
                f"{self.best_weights}: the run has no best weights yet (no epoch finished)"
            )
        with dtype_policy(PRECISION_POLICIES[precision]):
            model = self.build_model()
        model.load_weights(self.best_weights, skip_mismatch=False)
        return model


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Builds layers under Keras dtype policy ``name``, restoring the previous one after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
