"""The ``paper`` recipe: its values, the poly schedule against its formula, decoupled weight
decay, DeepLab's random-scale augmentation, and a killed paper run continuing its schedule."""

from __future__ import annotations

import csv
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.test_presets import config_of
from training.config import TrainConfig
from training.data.pipeline import IMAGENET_MEAN_RGB, make_dataset, random_scale_crop
from training.data.synth import write_synthetic_voc
from training.learning import resume
from training.learning.optimizer import WarmupPolynomialDecay, make_optimizer
from training.presets import PRESETS


def test_the_paper_preset_is_deeplabs_schedule():
    paper = config_of("--preset=paper")
    assert paper == TrainConfig(data="d", out="o", **PRESETS["paper"].values)
    assert (paper.optimizer, paper.momentum, paper.lr_schedule, paper.lr_power) == (
        "sgd",
        0.9,
        "poly",
        0.9,
    )
    assert (paper.lr, paper.weight_decay, paper.warmup_steps) == (0.007, 1e-3, 1000)
    assert (paper.batch_size, paper.input_size, paper.epochs * paper.steps_per_epoch) == (
        16,
        (513, 513),
        30_000,
    )
    assert (paper.augmentation, paper.scale_range) == ("random_scale", (0.5, 2.0))
    assert (paper.loss, paper.class_weights, paper.early_stopping_patience) == ("ce", "none", None)
    assert paper.train_split == "train_aug"
    # Flags still win, "none" included.
    changed = config_of("--preset=paper", "--weight-decay=none", "--scale-range=0.75,1.5")
    assert (changed.weight_decay, changed.scale_range) == (None, (0.75, 1.5))
    assert config_of("--early-stopping-patience=none").early_stopping_patience is None


def test_bad_recipe_values_are_named():
    with pytest.raises(ValueError, match="optimizer must be one of adam, sgd; got 'rmsprop'"):
        TrainConfig(data="d", out="o", optimizer="rmsprop")
    with pytest.raises(ValueError, match=r"scale_range must be \(low, high\).*got \(2.0, 0.5\)"):
        config_of("--scale-range=2,0.5")
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.5"):
        config_of("--momentum=1.5")
    too_long = TrainConfig(data="d", out="o", lr_schedule="poly", warmup_steps=10)
    with pytest.raises(ValueError, match=r"warmup_steps \(10\) must be fewer than the run's 10"):
        make_optimizer(too_long, total_steps=10)


def test_the_poly_schedule_follows_its_formula():
    lr, steps, warmup, power = 0.007, 1000, 100, 0.9
    schedule = WarmupPolynomialDecay(lr, steps, warmup_steps=warmup, power=power)
    for step in (0, 1, 50, 99):
        assert float(schedule(step)) == pytest.approx(lr * step / warmup, rel=1e-6)
    for step in (100, 101, 400, 999, 1000, 1200):
        progress = min(step - warmup, steps - warmup) / (steps - warmup)
        assert float(schedule(step)) == pytest.approx(lr * (1 - progress) ** power, abs=1e-9)
    config = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(config(400)) == float(schedule(400))


def test_sgd_decays_weights_outside_the_momentum_and_spares_batch_norm():
    """One step with zero gradients: only the decay moves the weights, by lr × decay."""
    config = TrainConfig(data="d", out="o", optimizer="sgd", lr=0.1, weight_decay=0.01)
    optimizer = make_optimizer(config, total_steps=10)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2), keras.layers.BatchNormalization()]
    )
    kernel, bias, gamma, beta = (v.numpy() for v in model.trainable_variables)
    optimizer.apply(
        [tf.zeros_like(v) for v in model.trainable_variables], model.trainable_variables
    )
    after = [v.numpy() for v in model.trainable_variables]
    np.testing.assert_allclose(after[0], kernel * (1 - 0.1 * 0.01), rtol=1e-6)
    for before, now in zip((bias, gamma, beta), after[1:], strict=True):
        np.testing.assert_array_equal(now, before)
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.9


def _pair(height=40, width=60):
    image = tf.random.stateless_uniform([height, width, 3], seed=[1, 2])
    mask = tf.cast(
        tf.random.stateless_uniform([height, width], [3, 4], maxval=3, dtype=tf.int32), tf.uint8
    )
    return image, mask


def test_random_scale_pads_with_the_mean_and_ignore_and_crops_the_input_size():
    image, mask = _pair()
    seeds = tf.constant([[5, 6], [7, 8]], tf.int64)
    # Scale 0.5 of the frame fitted into 32×32 (60 → 32 wide): 11×16, padded to 32×32.
    small_image, small_mask = random_scale_crop(image, mask, seeds, (32, 32), (0.5, 0.5))
    assert small_image.shape == (32, 32, 3) and small_mask.shape == (32, 32)
    small_mask = small_mask.numpy()
    assert (small_mask[:11, :16] < 3).all()
    assert (small_mask[11:] == 255).all() and (small_mask[:, 16:] == 255).all()
    np.testing.assert_allclose(small_image.numpy()[20, 20], IMAGENET_MEAN_RGB, atol=1e-6)
    # Scale 2: 43×64, a 32×32 crop inside it, no padding.
    big_image, big_mask = random_scale_crop(image, mask, seeds, (32, 32), (2.0, 2.0))
    assert big_image.shape == (32, 32, 3) and (big_mask.numpy() < 3).all()


def test_random_scale_is_reproducible_per_seed_and_epoch(tmp_path):
    root = write_synthetic_voc(tmp_path / "voc", count=6, seed=3, size=(64, 48), val_fraction=0.2)

    def first_batch(epoch):
        dataset = make_dataset(
            root,
            "train",
            batch_size=2,
            input_size=(32, 32),
            augment=True,
            shuffle=True,
            scale_range=(0.5, 2.0),
            seed=7,
            first_epoch=epoch,
            repeat=1,
            index_dir=tmp_path / "ix",
        )
        images, labels = next(iter(dataset))
        assert images.shape == (2, 32, 32, 3) and labels.shape == (2, 32, 32)
        return images.numpy(), labels.numpy()

    again = first_batch(1)
    np.testing.assert_array_equal(first_batch(1)[1], again[1])
    np.testing.assert_allclose(first_batch(1)[0], again[0])
    assert not np.array_equal(first_batch(2)[1], again[1])


def _log_rates(path) -> list[float]:
    with open(path, newline="") as file:
        return [float(row["learning_rate"]) for row in csv.DictReader(file)]


@pytest.mark.slow
def test_a_killed_paper_run_continues_its_schedule(tmp_path, monkeypatch):
    """Killed after epoch 2's CSV row and before its state; the rerun continues at step 2."""
    from training.learning.train import train

    root = write_synthetic_voc(tmp_path / "voc", count=5, seed=4, size=(48, 40), val_fraction=0.4)
    config = TrainConfig(
        data=str(root),
        out=str(tmp_path / "run"),
        **{
            **PRESETS["paper"].values,
            **dict(
                backbone="mobilenetv2",
                backbone_weights=None,
                input_size=(32, 32),
                batch_size=2,
                epochs=3,
                steps_per_epoch=1,
                warmup_steps=1,
                train_split="train",
                lr=0.01,
            ),
        },
    )
    save = resume.RunState.save

    def killed_at_epoch_2(self, epochs_done):
        if epochs_done == 2:
            raise KeyboardInterrupt("killed")
        save(self, epochs_done)

    monkeypatch.setattr(resume.RunState, "save", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0)
    assert len(_log_rates(tmp_path / "run" / "log.csv")) == 2
    monkeypatch.setattr(resume.RunState, "save", save)
    result = train(config, verbose=0)
    assert result.finished and result.epochs_done == 3
    schedule = WarmupPolynomialDecay(0.01, 3, warmup_steps=1, power=0.9)
    # The rate of the next step, logged after steps 1, 2, 3 (a restarted schedule: 1, 1, 2).
    expected = [float(schedule(step)) for step in (1, 2, 3)]
    np.testing.assert_allclose(_log_rates(tmp_path / "run" / "log.csv"), expected, atol=1e-7)
    state = json.loads((tmp_path / "run" / "state" / "state.json").read_text())
    assert [set(fields) for fields in state["callbacks"]] == [{"best", "best_epoch"}]
