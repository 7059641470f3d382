"""Named training recipes: ``python -m training train --preset book|paper|demo|smoke``.

A preset is a set of :class:`~training.config.TrainConfig` values; flags given on the command
line override them. ``book`` is TrainConfig's own defaults (chapter 8 of "TensorFlow in
Action"); the others change what they list. No TensorFlow here.

    config = train_config("demo", data="demo_out/voc_synth", out="demo_out/runs/demo")
    config = train_config("book", data="VOCdevkit/VOC2012", out="runs/voc", epochs=40)
    config = train_config("paper", data="VOCdevkit/VOC2012", out="runs/voc-paper")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from training.config import TrainConfig


@dataclass(frozen=True)
class Preset:
    """What a preset is for and the TrainConfig values it sets."""

    purpose: str
    values: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """``purpose (option=value, …)``, as ``--help`` prints it."""
        values = ", ".join(f"{name}={value}" for name, value in self.values.items())
        return f"{self.purpose} ({values or 'the defaults shown below'})"


PRESETS: dict[str, Preset] = {
    "book": Preset(
        "the book's run: ResNet-50 from ImageNet weights, 384×384, Adam 1e-4, ce+dice with "
        "per-image class weights, batch 8, 25 epochs"
    ),
    # DeepLab v3's VOC schedule (Chen et al. 2017, section 4.1; tensorflow/models
    # research/deeplab/train.py): 30K steps of batch 16 on train_aug, 513 crops at random scale
    # 0.5–2.0 and flip, SGD momentum 0.9, poly rate 0.007 (power 0.9), cross-entropy ignoring
    # 255, no class weights. Its L2 of 1e-4 on convolution weights (ResNets; 4e-5 for
    # MobileNetV2) passes through the momentum, which multiplies it by 1 / (1 − 0.9) at steady
    # state; Keras' decoupled decay does not, hence 10 × 1e-4. The warm-up is ours.
    "paper": Preset(
        "DeepLab v3's VOC schedule: ResNet-50 from ImageNet weights, 513×513 at random scale "
        "0.5–2.0, SGD momentum 0.9, poly rate 0.007 with warm-up, batch 16, 30K steps, ce",
        dict(
            input_size=(513, 513),
            batch_size=16,
            epochs=30,
            steps_per_epoch=1000,
            optimizer="sgd",
            lr=0.007,
            momentum=0.9,
            weight_decay=1e-3,
            lr_schedule="poly",
            lr_power=0.9,
            warmup_steps=1000,
            early_stopping_patience=None,
            augmentation="random_scale",
            scale_range=(0.5, 2.0),
            loss="ce",
            class_weights="none",
            train_split="train_aug",
        ),
    ),
    "demo": Preset(
        "what `make demo` trains on a CPU in a few minutes, from scratch",
        dict(
            backbone="mobilenetv2",
            backbone_weights=None,
            input_size=(128, 128),
            batch_size=8,
            epochs=15,
            lr=2e-3,
            bn_momentum=0.9,
            reduce_lr_patience=2,
        ),
    ),
    "smoke": Preset(
        "a few steps of a tiny model, to check that a setup trains (tests use it)",
        dict(
            backbone="mobilenetv2",
            backbone_weights=None,
            input_size=(64, 64),
            batch_size=4,
            epochs=2,
            steps_per_epoch=6,
            lr=3e-3,
            bn_momentum=0.5,
            loss="ce",
        ),
    ),
}
DEFAULT_PRESET = "book"


def train_config(preset: str = DEFAULT_PRESET, **options: Any) -> TrainConfig:
    """The TrainConfig of ``preset`` with ``options`` (``data``, ``out``, any override) applied."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}; got {preset!r}")
    return TrainConfig(**{**PRESETS[preset].values, **options})
