"""A training run's folder: what it holds and how to rebuild its model.

runs/NAME/
  config.json        resolved configuration (every option, versions, class names)
  splits/            the id lists the run trained and validated on
  log.csv            one row per epoch (Keras CSVLogger)
  curves.png         loss, mean IoU, accuracies, learning rate per epoch
  best.weights.h5    weights of the epoch with the best validation mean IoU
  state/             resume state (weights, optimizer, callback counters) of the last epoch
  tensorboard/       TensorBoard logs
  evaluation/        what `python -m training evaluate` writes

>>> run = RunFolder("runs/voc")
>>> model = run.load_model()  # best weights, ready for predict/evaluate/export
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import keras

from training import voc
from training.model import build_deeplabv3


@dataclass
class TrainConfig:
    """Every option of a training run; the defaults are the book's."""

    data: str
    out: str
    epochs: int = 25
    batch_size: int = 8
    input_size: tuple[int, int] = (384, 384)
    lr: float = 1e-4
    backbone: str = "resnet50"
    backbone_weights: str | None = "imagenet"
    output_stride: int = 16
    num_classes: int = voc.NUM_CLASSES
    loss: str = "ce+dice"
    class_weights: str = "per_image"
    train_split: str = "train"
    val_split: str = "val"
    seed: int = 0
    split_seed: int = voc.DEFAULT_SPLIT_SEED
    steps_per_epoch: int | None = None
    bn_momentum: float | None = None
    mixed_precision: bool = False
    early_stopping_patience: int = 6
    reduce_lr_patience: int = 3
    class_names: list[str] = field(default_factory=list)
    fixed_class_weights: list[float] | None = None  # filled in when class_weights="fixed"

    def __post_init__(self):
        self.input_size = tuple(self.input_size)
        for name in ("epochs", "batch_size", "num_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1, got {self.steps_per_epoch}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if len(self.input_size) != 2 or min(self.input_size) < 32:
            raise ValueError(f"input_size must be (height, width) ≥ 32, got {self.input_size}")
        if not self.class_names:
            # VOC's names for VOC ids; numbered names beyond them (own data with more classes).
            known = list(voc.class_names[: self.num_classes])
            self.class_names = known + [f"class_{i}" for i in range(len(known), self.num_classes)]

    @property
    def resize_before_crop(self) -> tuple[int, int]:
        """The book resizes to 444 before cropping 384: the same ratio at any input size."""
        return tuple(round(side * 444 / 384) for side in self.input_size)

    def differences(self, other: TrainConfig, *, ignore: tuple[str, ...] = ()) -> list[str]:
        """``"name: this → other"`` for every option that differs (used before resuming)."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} → {getattr(other, f.name)!r}"
            for f in fields(self)
            if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)
        ]


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
    )


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    config = property(lambda self: self.path / "config.json")
    splits = property(lambda self: self.path / "splits")
    log = property(lambda self: self.path / "log.csv")
    curves = property(lambda self: self.path / "curves.png")
    best_weights = property(lambda self: self.path / "best.weights.h5")
    state = property(lambda self: self.path / "state")
    tensorboard = property(lambda self: self.path / "tensorboard")
    evaluation = property(lambda self: self.path / "evaluation")

    def write_config(self, config: TrainConfig, **extra) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps({**asdict(config), **extra}, indent=2) + "\n")

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

    def load_model(self) -> keras.Model:
        """The run's model with its best weights."""
        if not self.best_weights.is_file():
            raise FileNotFoundError(
                f"{self.best_weights}: the run has no best weights yet (no epoch finished)"
            )
        model = self.build_model()
        model.load_weights(self.best_weights, skip_mismatch=False)
        return model
