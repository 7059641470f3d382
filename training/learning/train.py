"""Training DeepLab v3 with Keras' fit, the book's callbacks, and resume after any interruption.

    config = TrainConfig(data="VOCdevkit/VOC2012", out="runs/voc")
    result = train(config)  # the same call again continues an interrupted run

Several GPUs on one machine train under ``MirroredStrategy``; several machines under
``MultiWorkerMirroredStrategy``, chosen when ``TF_CONFIG`` is set or built from a Kubernetes
Indexed Job's environment (:mod:`training.learning.cluster`; each worker runs the same command;
the batch size is global, split evenly across replicas). With more than one replica the model
is a :class:`training.learning.replicated.ReplicatedModel`, which fixes Keras 3's ``fit`` there.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from training.config import TrainConfig
from training.data import voc
from training.data.index_masks import index_mask_path, prepare_index_masks
from training.data.pipeline import make_dataset
from training.learning import cluster
from training.learning.curves import CurvesCallback
from training.learning.losses import (
    CrossEntropyDiceLoss,
    DiceLoss,
    WeightedSparseCategoricalCrossentropy,
    class_weights_from_counts,
    count_class_pixels,
)
from training.learning.metrics import MeanAccuracy, MeanIoU, PixelAccuracy
from training.learning.optimizer import make_optimizer
from training.learning.replicated import ReplicatedModel
from training.learning.resume import BestWeights, RunState, is_complete
from training.learning.run_folder import RunFolder, model_from_config

log = logging.getLogger(__name__)

LOSS_CLASSES = {  # one per name in training.config.LOSSES (TrainConfig checks the name)
    "ce": WeightedSparseCategoricalCrossentropy,
    "dice": DiceLoss,
    "ce+dice": CrossEntropyDiceLoss,
}
# Options that may change between an interrupted run and its resumption.
# The fractions only matter through the split lists, which are compared themselves.
RESUMABLE_CHANGES = ("epochs", "fixed_class_weights", "val_fraction", "test_fraction")


@dataclass
class TrainResult:
    """What a call to :func:`train` did."""

    run: RunFolder
    epochs_done: int
    finished: bool
    diverged: bool
    best_val_mean_iou: float | None


def distribution_strategy() -> tf.distribute.Strategy:
    """MultiWorkerMirrored for several machines (:func:`cluster.tf_config`), Mirrored for
    several GPUs, else the default."""
    tf_config = cluster.tf_config()
    if tf_config is not None:
        os.environ["TF_CONFIG"] = json.dumps(tf_config)  # where the strategy reads it
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_loss(config: TrainConfig) -> keras.losses.Loss:
    """The run's loss. Fixed class weights come from ``config.fixed_class_weights`` (computed
    once when training starts and kept in config.json, so evaluation needs no training data)."""
    weights: str | list[float] | None = {"per_image": "per_image", "none": None}.get(
        config.class_weights
    )
    if config.class_weights == "fixed":
        if config.fixed_class_weights is None:
            config.fixed_class_weights = fixed_class_weights(config).tolist()
        weights = config.fixed_class_weights
    return LOSS_CLASSES[config.loss](num_classes=config.num_classes, class_weights=weights)


def fixed_class_weights(config: TrainConfig) -> np.ndarray:
    """Median-frequency weights from the training split's pixel counts (index masks)."""
    ids = config.split(config.train_split)
    index_dir = prepare_index_masks(config.data, ids, num_classes=config.num_classes)
    masks = (voc.read_mask(index_mask_path(index_dir, sample_id)) for sample_id in ids)
    return class_weights_from_counts(count_class_pixels(masks, config.num_classes))


def compile_model(
    config: TrainConfig,
    *,
    backbone_weights: str | None,
    replicated: bool = False,
    total_steps: int = 1,
) -> keras.Model:
    """The model of ``config``, compiled with its optimizer (:func:`make_optimizer`; a poly
    schedule spans ``total_steps``), the chosen loss and the three metrics; ``replicated``: a
    :class:`ReplicatedModel`, for ``fit`` over several replicas."""
    model = model_from_config(config, backbone_weights=backbone_weights)
    if replicated:
        model = ReplicatedModel.of(model)
    model.compile(
        optimizer=make_optimizer(config, total_steps),
        loss=make_loss(config),
        metrics=[
            PixelAccuracy(config.num_classes),
            MeanAccuracy(config.num_classes),
            MeanIoU(config.num_classes),
        ],
    )
    return model


def _split_lists(config: TrainConfig) -> dict[str, list[str]]:
    """The id lists the run uses (and the test half, for the record, when it resolves)."""
    names = dict.fromkeys([config.train_split, config.val_split, "test"])
    lists = {}
    for name in names:
        try:
            lists[name] = config.split(name)
        except (FileNotFoundError, ValueError):
            if name != "test":
                raise
    return lists


def _check_resumable(run: RunFolder, config: TrainConfig, lists: dict[str, list[str]]) -> None:
    """A saved run continues only with the same options and the same split lists."""
    saved = run.read_config()
    differences = saved.differences(config, ignore=RESUMABLE_CHANGES)
    if config.lr_schedule == "poly" and saved.epochs != config.epochs:
        # The poly schedule spans the whole run: more epochs would lift a decayed rate again.
        differences.append(
            f"epochs {saved.epochs} → {config.epochs}: the poly schedule spans the run's "
            "epochs (resume with the same --epochs)"
        )
    for name, ids in lists.items():
        recorded = run.splits / f"{name}.txt"
        if recorded.is_file() and voc.read_split_list(recorded) != ids:
            differences.append(f"split {name!r}: the ids differ from {recorded}")
    if differences:
        raise ValueError(
            f"{run.path} holds a run with other options ({'; '.join(differences)}). "
            "Use the same options to resume it, or another --out for a new run."
        )
    config.fixed_class_weights = saved.fixed_class_weights


def train(config: TrainConfig, *, verbose: int | str = "auto") -> TrainResult:
    """Trains (or resumes) the run in ``config.out``; returns what happened."""
    tf_config = cluster.tf_config()
    chief = RunFolder(config.out)
    if cluster.is_chief(tf_config):
        run = chief
    else:
        run = RunFolder(chief.path / "workers" / str(cluster.task_index(tf_config)))
    lists = _split_lists(config)
    if len(lists[config.train_split]) < config.batch_size:
        raise ValueError(
            f"the {config.train_split!r} split of {config.data} has "
            f"{len(lists[config.train_split])} samples, fewer than --batch-size "
            f"{config.batch_size}"
        )
    best = BestWeights(run.best_weights)
    # A schedule owns the rate: ReduceLROnPlateau cannot set it (Keras refuses), and early
    # stopping would cut the schedule short unless asked for.
    watched: list[keras.callbacks.Callback] = [best]
    if config.lr_schedule == "plateau":
        watched.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.1, patience=config.reduce_lr_patience, min_lr=1e-8
            )
        )
    if config.early_stopping_patience is not None:
        watched.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping_patience
            )
        )
    state = RunState(
        run.state,
        watched=watched,
        epochs=config.epochs,
        read_dir=chief.state,
    )
    saved = state.saved()
    if saved is not None:
        _check_resumable(chief, config, lists)
        if is_complete(saved, config.epochs):
            log.info("%s already finished after %d epochs", run.path, saved["epochs_done"])
            return _result(run, saved, best=saved["callbacks"][0]["best"], diverged=False)

    # Set either way: an earlier run in this process may have left mixed precision on.
    keras.mixed_precision.set_global_policy(
        "mixed_float16" if config.mixed_precision else "float32"
    )
    keras.utils.set_random_seed(config.seed)
    strategy = distribution_strategy()
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ValueError(
            f"--batch-size {config.batch_size} is the global batch: it must split evenly "
            f"over the {replicas} replicas (GPUs or workers)"
        )
    # The stream resumes exactly where the killed run left it: data passes (epochs of the
    # split) are seeded by their index, and a Keras epoch may be shorter or longer than one.
    batches_per_pass = len(lists[config.train_split]) // config.batch_size
    steps_per_epoch = config.steps_per_epoch or batches_per_pass
    with strategy.scope():
        # A resumed run loads every weight from its state: no ImageNet download needed.
        model = compile_model(
            config,
            backbone_weights=None if saved else config.backbone_weights,
            replicated=replicas > 1,
            total_steps=config.epochs * steps_per_epoch,
        )
        initial_epoch = state.restore(model, csv_log=run.log)
    run.write_config(
        config,
        versions={"tensorflow": tf.__version__, "keras": keras.__version__},
        host=platform.node(),
    )
    run.splits.mkdir(parents=True, exist_ok=True)
    for name, ids in lists.items():
        (run.splits / f"{name}.txt").write_text("\n".join(ids) + "\n")

    dataset_options = dict(
        batch_size=config.batch_size,
        input_size=config.input_size,
        split_seed=config.split_seed,
        **config.split_options(),
        num_classes=config.num_classes,
    )
    consumed = initial_epoch * steps_per_epoch
    train_data = make_dataset(
        config.data,
        config.train_split,
        augment=True,
        resize_before_crop=config.resize_before_crop,
        scale_range=config.scale_range if config.augmentation == "random_scale" else None,
        shuffle=True,
        repeat=True,
        seed=config.seed,
        drop_remainder=True,
        first_epoch=consumed // batches_per_pass,
        **dataset_options,
    ).skip(consumed % batches_per_pass)
    val_data = make_dataset(config.data, config.val_split, **dataset_options)
    # Workers split each global batch (DATA): the pipeline reads no files by itself to shard.
    sharding = tf.data.Options()
    sharding.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_data, val_data = train_data.with_options(sharding), val_data.with_options(sharding)
    callbacks = [
        *watched,
        LearningRateLog(),
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
    return _result(run, state.saved() or {}, best=best.best, diverged=state.diverged)


class LearningRateLog(keras.callbacks.Callback):
    """Puts the rate of the next step into the epoch's logs (``log.csv``'s ``learning_rate``)
    where no ReduceLROnPlateau does it, as under a schedule."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "learning_rate" not in logs:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))


def _result(run: RunFolder, saved: dict, *, best, diverged: bool) -> TrainResult:
    return TrainResult(
        run=run,
        epochs_done=saved.get("epochs_done", 0),
        finished=saved.get("finished", False),
        diverged=diverged,
        best_val_mean_iou=None if best is None else float(best),
    )
