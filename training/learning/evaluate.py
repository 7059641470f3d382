"""Honest evaluation of a run: one confusion matrix over the whole split, tables and pictures.

By default images and masks are resized to the run's input size (384×384 in the book) before
scoring, like the book. ``full_res=True`` scores at each image's own resolution: the network
sees the image at the size the exported model picks (``resize="aspect"``: long side = the
training size; ``"stretch"``: the training size), and its logits are resized back to the image
before the argmax, so the score is the one a deployed model earns.

``output_stride=8`` rebuilds a model trained at 16 with doubled atrous rates and loads the
same weights (the rates are not variables); ``scales`` and ``flip`` average the softmax over
scaled and mirrored copies of each image (:mod:`training.model.multiscale`), DeepLab v3's
evaluation. The report says what one image cost (``ms_per_image``).

    report = evaluate_run("runs/voc", split="test")
    report = evaluate_run("runs/voc", "val", output_stride=8, scales=(0.75, 1, 1.25), flip=True)
    print(report.table())

Writes ``<run>/evaluation/<split>[-full-res][-os<N>][-ms<count>][-flip][-<precision>]/``
(``val-os8-ms3-flip``: every mode its own folder): ``metrics.json``, ``confusion.png`` (rows
normalized: where each true class's pixels went) and ``predictions.png`` (image | ground
truth | prediction, VOC palette).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure
from PIL import Image

from client.palette import colorize
from training.config import PRECISION_POLICIES
from training.data.layouts import open_layout
from training.data.pipeline import make_dataset
from training.data.preview import compose_grid
from training.learning.metrics import scores_from_confusion, update_confusion
from training.learning.run_folder import RunFolder, dtype_policy
from training.learning.train import make_loss
from training.model.inference_graph import logits_at_frame_size, network_size
from training.model.multiscale import PLAIN, multiscale_probabilities


@dataclass
class EvaluationReport:
    """Scores of one split; ``per_class_iou`` is None for classes that did not occur."""

    split: str
    full_res: bool
    resize: str
    images: int
    loss: float
    pixel_accuracy: float
    mean_accuracy: float
    mean_iou: float
    per_class_iou: dict[str, float | None]
    confusion: np.ndarray
    out_dir: Path
    precision: str = "float32"
    output_stride: int = 16
    scales: tuple[float, ...] = PLAIN
    flip: bool = False
    ms_per_image: float = 0.0
    """Median over batches of the network's time (every scale and flip) per image."""

    def mode(self) -> str:
        """``output stride 8, scales 0.75/1/1.25, flipped``: how the network was run."""
        parts = [f"output stride {self.output_stride}"]
        if tuple(self.scales) != PLAIN:
            parts.append("scales " + "/".join(f"{scale:g}" for scale in self.scales))
        if self.flip:
            parts.append("flipped")
        return ", ".join(parts)

    def table(self) -> str:
        where = (
            f"each image's resolution (network input: {self.resize})"
            if self.full_res
            else "the training input size"
        )
        lines = [
            f"{self.split}: {self.images} images, scored at {where}, in {self.precision}, "
            f"{self.mode()}; {self.ms_per_image:.1f} ms per image",
            "",
            "| metric | value |",
            "| --- | --- |",
            f"| loss | {self.loss:.4f} |",
            f"| pixel accuracy | {self.pixel_accuracy:.4f} |",
            f"| mean accuracy | {self.mean_accuracy:.4f} |",
            f"| mean IoU | {self.mean_iou:.4f} |",
            "",
            "| class | IoU |",
            "| --- | --- |",
        ]
        for name, iou in self.per_class_iou.items():
            lines.append(f"| {name} | {'—' if iou is None else f'{iou:.4f}'} |")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "split": self.split,
            "full_res": self.full_res,
            "precision": self.precision,
            "resize": self.resize,
            "output_stride": self.output_stride,
            "scales": list(self.scales),
            "flip": self.flip,
            "ms_per_image": self.ms_per_image,
            "images": self.images,
            "loss": self.loss,
            "pixel_accuracy": self.pixel_accuracy,
            "mean_accuracy": self.mean_accuracy,
            "mean_iou": self.mean_iou,
            "per_class_iou": self.per_class_iou,
            "confusion": self.confusion.astype(np.int64).tolist(),
        }


def evaluate_run(
    run_dir: str | Path,
    split: str = "test",
    *,
    full_res: bool = False,
    data: str | Path | None = None,
    batch_size: int | None = None,
    grid_count: int = 6,
    resize: str = "aspect",
    precision: str = "float32",
    output_stride: int | None = None,
    scales: tuple[float, ...] = PLAIN,
    flip: bool = False,
) -> EvaluationReport:
    """Scores the run's best weights on ``split`` and writes JSON, confusion and grid PNGs.

    ``output_stride`` (None: the training one) rebuilds the model at that stride with the
    same weights; ``scales``/``flip``: multi-scale and mirrored inference (the averaged
    softmax is scored; the loss is its cross-entropy).

    ``precision`` computes in float16/bfloat16 (Keras mixed precision, the policy export's
    ``--precision`` uses; results in ``<split>[-full-res]-<precision>/``) to measure what that
    costs. This is the model as trained: the export also folds batch norms into the
    convolutions, which rounds a little differently in reduced precision (export verifies
    that)."""
    run = RunFolder(run_dir)
    config = run.read_config()
    data = Path(data or config.data)
    layout = open_layout(data)  # labelmap.txt or Cityscapes' table name their own classes
    labelled = layout.labelmap() if layout.declares_classes() else None
    if labelled is not None and labelled != config.classes():
        # Same count, other order: the scores of two classes would silently swap.
        raise ValueError(
            f"{layout.classes_source} names other classes than the run trained on "
            f"({', '.join(labelled.names)} vs {', '.join(config.class_names)}, "
            "with their colours): evaluate on data labelled with the run's labelmap.txt"
        )
    if layout.kind == "cityscapes" and split == "test":
        raise ValueError(
            f"{data}: Cityscapes' test split has no public labels (its gtFine masks are "
            "placeholders): evaluate --split val"
        )
    output_stride = output_stride or config.output_stride
    scales = tuple(float(scale) for scale in scales)
    model = load_at_output_stride(run, output_stride, precision)
    loss_fn = make_loss(config)
    graph_options = dict(input_size=config.input_size, output_stride=output_stride, resize=resize)
    plain = scales == PLAIN and not flip

    @tf.function(reduce_retracing=True)
    def infer(images, size):
        """Logits at the images' size (for several scales or flips: log of the averaged
        softmax, whose argmax and cross-entropy are the average's)."""
        if plain:
            return logits_at_frame_size(lambda x: model(x, training=False), images, size)
        probabilities = multiscale_probabilities(
            lambda x: model(x, training=False), images, scales=scales, flip=flip, size=size
        )
        return tf.math.log(tf.maximum(probabilities, 1e-12))

    confusion = np.zeros((config.num_classes, config.num_classes))
    loss_sum, count, grid, ms_per_image = 0.0, 0, [], []
    palette = config.classes().palette()  # the run's own colours (255: VOC's border colour)
    batches = make_dataset(
        data,
        split,
        batch_size=1 if full_res else batch_size or config.batch_size,
        input_size=None if full_res else config.input_size,
        split_seed=config.split_seed,
        **config.split_options(),
        num_classes=config.num_classes,
        cache=False,
    )
    for images, labels in batches:
        # Full resolution: the network size the exported model picks for this image.
        size = network_size(tf.shape(images)[1:3], **graph_options) if full_res else None
        if not ms_per_image:
            infer(images, size)  # traces the function: not part of an image's cost
        started = time.perf_counter()
        logits = tf.constant(infer(images, size).numpy())  # .numpy() waits for the result
        ms_per_image.append((time.perf_counter() - started) * 1000 / len(images))
        loss_sum += float(loss_fn(labels, logits)) * len(images)
        count += len(images)
        confusion += update_confusion(labels, logits, config.num_classes).numpy()
        for image, label, logit in zip(images, labels, logits, strict=True):
            if len(grid) < grid_count:
                grid.append(_grid_tiles(image, label, logit, config.input_size, palette))

    scores = {k: v.numpy() for k, v in scores_from_confusion(confusion).items()}
    out_dir = run.evaluation / "-".join(
        [
            split,
            *(["full-res"] if full_res else []),
            *([f"os{output_stride}"] if output_stride != config.output_stride else []),
            *([f"ms{len(scales)}"] if scales != PLAIN else []),
            *(["flip"] if flip else []),
            *([precision] if precision != "float32" else []),
        ]
    )
    report = EvaluationReport(
        split=split,
        full_res=full_res,
        resize=resize if full_res else "stretch",
        images=count,
        loss=loss_sum / max(count, 1),
        pixel_accuracy=float(scores["pixel_accuracy"]),
        mean_accuracy=float(scores["mean_accuracy"]),
        mean_iou=float(scores["mean_iou"]),
        per_class_iou={
            name: None if np.isnan(iou) else float(iou)
            for name, iou in zip(config.class_names, scores["per_class_iou"], strict=True)
        },
        confusion=confusion,
        out_dir=out_dir,
        precision=precision,
        output_stride=output_stride,
        scales=scales,
        flip=flip,
        ms_per_image=float(np.median(ms_per_image)) if ms_per_image else 0.0,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(report.to_json(), indent=1) + "\n")
    plot_confusion(confusion, config.class_names, out_dir / "confusion.png")
    class_ids = sorted({int(c) for tiles in grid for c in np.unique(tiles[3])})
    picture = compose_grid(
        [tiles[:3] for tiles in grid], columns=2, class_ids=class_ids, labelmap=config.classes()
    )
    Image.fromarray(picture).save(out_dir / "predictions.png")
    return report


def load_at_output_stride(
    run: RunFolder, output_stride: int, precision: str = "float32"
) -> keras.Model:
    """The run's best weights in its architecture rebuilt at ``output_stride``: the atrous
    rates change (backbone and ASPP), every variable keeps its shape and value. Keras loads
    a weights file by the layers' order and kinds, and ``load_weights`` refuses any shape
    that differs."""
    config = run.read_config()
    if output_stride == config.output_stride:
        return run.load_model(precision)
    if not run.best_weights.is_file():
        run.load_model(precision)  # raises its "no best weights yet" error
    rebuilt = dataclasses.replace(config, output_stride=output_stride)  # checks the value
    with dtype_policy(PRECISION_POLICIES[precision]):
        model = run.build_model(rebuilt)
    model.load_weights(run.best_weights, skip_mismatch=False)
    return model


def _grid_tiles(image, label, logits, size, palette: np.ndarray):
    """image | truth | prediction tiles at ``size`` (nearest for the maps, in ``palette``'s
    colours), plus the ids."""
    prediction = tf.argmax(logits, axis=-1, output_type=tf.int32)
    image = tf.image.resize(image, size)
    maps = tf.image.resize(
        tf.stack([tf.cast(label, tf.int32), prediction])[..., None], size, method="nearest"
    )[..., 0].numpy()
    rgb = np.round(image.numpy() * 255).astype(np.uint8)
    truth, predicted = (colorize(m.astype(np.uint8), palette) for m in maps)
    return [rgb, truth, predicted, maps]


def plot_confusion(confusion: np.ndarray, class_names: list[str], out: str | Path) -> Path:
    """Row-normalized confusion matrix of the classes that occur, as a labelled heat map."""
    present = np.flatnonzero(confusion.sum(axis=1) + confusion.sum(axis=0))
    matrix = confusion[np.ix_(present, present)]
    rows = matrix.sum(axis=1, keepdims=True)
    normalized = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    names = [class_names[i] for i in present]
    size = 2 + 0.45 * len(names)
    figure = Figure(figsize=(size + 1, size))
    axis = figure.subplots()
    shown = axis.imshow(normalized, vmin=0, vmax=1, cmap="Blues")
    axis.set_xticks(range(len(names)), names, rotation=60, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for (row, column), value in np.ndenumerate(normalized):
        if value >= 0.005:
            color = "white" if value > 0.5 else "black"
            axis.text(
                column, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color
            )
    figure.colorbar(shown, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(out, dpi=90)
    return Path(out)
