"""The run's optimizer and learning-rate schedule, from :class:`~training.config.TrainConfig`.

The book: Adam at a constant rate that ``ReduceLROnPlateau`` cuts. DeepLab v3 (the ``paper``
preset): SGD with momentum 0.9 and the "poly" rate ``lr × (1 − step/steps)^0.9``, here after
a linear warm-up. A schedule is a function of the optimizer's ``iterations``, which the run
state saves with the weights, so a resumed run continues the schedule where it stopped.

    optimizer = make_optimizer(config, total_steps=30_000)
    float(optimizer.learning_rate)  # the rate of the next step

Keras 3.15's ``PolynomialDecay`` has no warm-up (``CosineDecay`` has ``warmup_steps``):
:class:`WarmupPolynomialDecay` adds Keras' linear warm-up in front of Keras' own
``PolynomialDecay``, and nothing else.
"""

from __future__ import annotations

import keras
from keras import ops

from training.config import TrainConfig

NO_WEIGHT_DECAY = ("gamma", "beta", "bias")
"""Variables the decay leaves alone: batch-norm scales and offsets and biases (DeepLab's L2
regularizer, slim's, covered convolution weights only)."""


@keras.saving.register_keras_serializable(package="rcseg")
class WarmupPolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``learning_rate × step / warmup_steps`` for the first ``warmup_steps`` steps, then
    ``keras.optimizers.schedules.PolynomialDecay`` from ``learning_rate`` to 0 over the
    remaining ``decay_steps - warmup_steps`` (``power`` 0.9: DeepLab's "poly").

        schedule = WarmupPolynomialDecay(0.01, decay_steps=100, warmup_steps=10)
        [round(float(schedule(step)), 6) for step in (0, 5, 10, 55, 100)]
        # → [0.0, 0.005, 0.01, 0.005359, 0.0]
    """

    def __init__(
        self,
        learning_rate: float,
        decay_steps: int,
        warmup_steps: int = 0,
        power: float = 0.9,
        name: str = "WarmupPolynomialDecay",
    ):
        super().__init__()
        if not 0 <= warmup_steps < decay_steps:
            raise ValueError(
                f"warmup_steps must be in [0, decay_steps={decay_steps}), got {warmup_steps}"
            )
        self.learning_rate = learning_rate
        self.decay_steps = decay_steps
        self.warmup_steps = warmup_steps
        self.power = power
        self.name = name
        self.decay = keras.optimizers.schedules.PolynomialDecay(
            learning_rate, decay_steps - warmup_steps, end_learning_rate=0.0, power=power
        )

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warming = self.learning_rate * step / max(self.warmup_steps, 1)
        return ops.where(step < self.warmup_steps, warming, self.decay(step - self.warmup_steps))

    def get_config(self) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "decay_steps": self.decay_steps,
            "warmup_steps": self.warmup_steps,
            "power": self.power,
            "name": self.name,
        }


def learning_rate(
    config: TrainConfig, total_steps: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """``config.lr`` (``plateau``: ReduceLROnPlateau changes it) or the poly schedule over
    ``total_steps`` (epochs × steps per epoch)."""
    if config.lr_schedule == "plateau":
        return config.lr
    if config.warmup_steps >= total_steps:
        raise ValueError(
            f"warmup_steps ({config.warmup_steps}) must be fewer than the run's "
            f"{total_steps} steps (epochs × steps per epoch)"
        )
    return WarmupPolynomialDecay(
        config.lr, total_steps, warmup_steps=config.warmup_steps, power=config.lr_power
    )


def make_optimizer(config: TrainConfig, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam or SGD (momentum ``config.momentum``) at :func:`learning_rate`, with Keras'
    decoupled ``weight_decay`` on every variable but :data:`NO_WEIGHT_DECAY`'s."""
    rate = learning_rate(config, total_steps)
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate=rate, momentum=config.momentum, weight_decay=config.weight_decay
        )
    else:
        optimizer = keras.optimizers.Adam(learning_rate=rate, weight_decay=config.weight_decay)
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    return optimizer
