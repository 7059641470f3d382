"""Training DeepLab v3 with Keras' fit, the book's callbacks, and resume after any interruption.

    >>> config = TrainConfig(data="VOCdevkit/VOC2012", out="runs/voc")
    >>> result = train(config)  # the same call again continues an interrupted run

Several GPUs on one machine train under ``MirroredStrategy``; several machines under
``MultiWorkerMirroredStrategy``, chosen when ``TF_CONFIG`` is set (each worker runs the same
command; the batch size is global, split across replicas).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training import voc
from training.curves import CurvesCallback
from training.data import index_mask_path, make_dataset, prepare_index_masks
from training.losses import (
    CrossEntropyDiceLoss,
    DiceLoss,
    WeightedSparseCategoricalCrossentropy,
    class_weights_from_counts,
    count_class_pixels,
)
from training.metrics import MeanAccuracy, MeanIoU, PixelAccuracy
from training.model import build_deeplabv3
from training.resume import RunState
from training.run import RunFolder, TrainConfig

log = logging.getLogger(__name__)

LOSSES = {
    "ce": WeightedSparseCategoricalCrossentropy,
    "dice": DiceLoss,
    "ce+dice": CrossEntropyDiceLoss,
}
CLASS_WEIGHTINGS = ("per_image", "fixed", "none")
# Options that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = ("epochs",)


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    run: RunFolder
    epochs_done: int
    finished: bool
    diverged: bool
    best_val_mean_iou: float | None


def distribution_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored when TF_CONFIG is set, Mirrored for several GPUs, else the default."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """Worker 0 (or the chief) writes the run folder; other workers write beside it."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return task.get("type", "chief") == "chief" or (
        task.get("type") == "worker" and task.get("index", 0) == 0
    )


def make_loss(config: TrainConfig) -> keras.losses.Loss:
    if config.loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {config.loss!r}")
    if config.class_weights not in CLASS_WEIGHTINGS:
        raise ValueError(
            f"class_weights must be one of {CLASS_WEIGHTINGS}, got {config.class_weights!r}"
        )
    weights: str | list[float] | None = {"per_image": "per_image", "none": None}.get(
        config.class_weights
    )
    if config.class_weights == "fixed":
        weights = fixed_class_weights(config).tolist()
    return LOSSES[config.loss](num_classes=config.num_classes, class_weights=weights)


def fixed_class_weights(config: TrainConfig) -> np.ndarray:
    """Median-frequency weights from the training split's pixel counts (index masks)."""
    ids = voc.resolve_split(config.data, config.train_split, seed=config.split_seed)
    index_dir = prepare_index_masks(config.data, ids, num_classes=config.num_classes)
    masks = (voc.read_mask(index_mask_path(index_dir, sample_id)) for sample_id in ids)
    return class_weights_from_counts(count_class_pixels(masks, config.num_classes))


def compile_model(config: TrainConfig) -> keras.Model:
    """The model of ``config``, compiled with Adam, the chosen loss and the three metrics."""
    model = build_deeplabv3(
        config.num_classes,
        backbone=config.backbone,
        output_stride=config.output_stride,
        backbone_weights=config.backbone_weights,
        bn_momentum=config.bn_momentum,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.lr),
        loss=make_loss(config),
        metrics=[
            PixelAccuracy(config.num_classes),
            MeanAccuracy(config.num_classes),
            MeanIoU(config.num_classes),
        ],
    )
    return model


def _check_resumable(run: RunFolder, config: TrainConfig) -> None:
    if not run.config.is_file():
        return
    differences = run.read_config().differences(config, ignore=RESUMABLE_CHANGES)
    if differences:
        raise ValueError(
            f"{run.path} holds a run with other options ({'; '.join(differences)}). "
            "Use the same options to resume it, or another --out for a new run."
        )


def train(config: TrainConfig, *, verbose: int | str = "auto") -> TrainResult:
    """Trains (or resumes) the run in ``config.out``; returns what happened."""
    run = RunFolder(config.out if is_chief() else Path(config.out) / "workers" / _task_index())
    _check_resumable(run, config)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    keras.utils.set_random_seed(config.seed)

    train_ids = voc.resolve_split(config.data, config.train_split, seed=config.split_seed)
    if len(train_ids) < config.batch_size:
        raise ValueError(
            f"the {config.train_split!r} split of {config.data} has {len(train_ids)} samples, "
            f"fewer than --batch-size {config.batch_size}"
        )
    run.write_config(
        config,
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
        host=platform.node(),
    )
    voc.write_split_lists(
        config.data, run.splits, (config.train_split, config.val_split), seed=config.split_seed
    )

    with distribution_strategy().scope():
        model = compile_model(config)
    checkpoint = keras.callbacks.ModelCheckpoint(
        run.best_weights,
        monitor="val_mean_iou",
        mode="max",
        save_best_only=True,
        save_weights_only=True,
    )
    reduce_lr = keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.1, patience=config.reduce_lr_patience, min_lr=1e-8
    )
    early_stopping = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.early_stopping_patience
    )
    state = RunState(run.state, watched=[checkpoint, reduce_lr, early_stopping])
    saved = state.saved()
    if saved and saved["finished"] and saved["epochs_done"] >= config.epochs:
        log.info("%s already finished after %d epochs", run.path, saved["epochs_done"])
        return _result(run, saved, diverged=False)
    initial_epoch = state.restore(model, csv_log=run.log)

    dataset_options = dict(
        batch_size=config.batch_size,
        input_size=config.input_size,
        split_seed=config.split_seed,
        num_classes=config.num_classes,
    )
    # The stream resumes exactly where the killed run left it: data passes (epochs of the
    # split) are seeded by their index, and a Keras epoch may be shorter or longer than one.
    batches_per_pass = len(train_ids) // config.batch_size
    steps_per_epoch = config.steps_per_epoch or batches_per_pass
    consumed = initial_epoch * steps_per_epoch
    train_data = make_dataset(
        config.data,
        config.train_split,
        augment=True,
        resize_before_crop=config.resize_before_crop,
        shuffle=True,
        repeat=True,
        seed=config.seed,
        drop_remainder=True,
        first_epoch=consumed // batches_per_pass,
        **dataset_options,
    ).skip(consumed % batches_per_pass)
    val_data = make_dataset(config.data, config.val_split, **dataset_options)
    callbacks = [
        checkpoint,
        reduce_lr,
        early_stopping,
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(run.log, append=True),
        CurvesCallback(run.log, run.curves),
        keras.callbacks.TensorBoard(run.tensorboard),
        state,  # last: it saves what the others decided
    ]
    model.fit(
        train_data,
        epochs=config.epochs,
        initial_epoch=initial_epoch,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,  # the dataset shuffles itself, per epoch
        validation_data=val_data,
        callbacks=callbacks,
        verbose=verbose,
    )
    return _result(run, state.saved() or {}, diverged=state.diverged)


def _task_index() -> str:
    return str(json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0))


def _result(run: RunFolder, saved: dict, *, diverged: bool) -> TrainResult:
    best = None
    for fields in saved.get("callbacks", [])[:1]:  # the checkpoint's best val mean IoU
        value = fields.get("best")
        best = None if value is None else float(value)
    return TrainResult(
        run=run,
        epochs_done=saved.get("epochs_done", 0),
        finished=saved.get("finished", False),
        diverged=diverged,
        best_val_mean_iou=best,
    )
