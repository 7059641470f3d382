"""DeepLab v3 vs v3+ (``--decoder``) at equal training: test mean IoU and boundary (trimap) IoU.

Trains both on the synthetic learning benchmark (``benchmarks/learn_synthetic.py``, one fresh
process each, the same data, seed, schedule and number of steps; v3+ only adds its decoder),
then scores each on the held-out test split at the images' own resolution (320×240; the
network input as the export picks it, logits resized back, as a deployed model answers): mean
IoU over all pixels and over the pixels within a few pixels of true class edges
(:mod:`training.learning.trimap`). Writes a picture: image | truth | v3 | v3+.

    python benchmarks/decoder_quality.py --epochs 12 --input-size 160 \
        --picture docs/img/decoder_predictions.png
    python benchmarks/decoder_quality.py --skip-training   # score the runs already there
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from client.palette import colorize
from training.data.pipeline import make_dataset
from training.data.preview import compose_grid
from training.learning.metrics import scores_from_confusion, update_confusion
from training.learning.run_folder import RunFolder
from training.learning.trimap import trimap_confusion
from training.model.inference_graph import logits_at_frame_size, network_size

HERE = Path(__file__).resolve().parent
VARIANTS = {"v3": [], "v3+": ["--decoder"]}


def _train(variant: str, args: argparse.Namespace, passed: list[str]) -> float | None:
    """Runs learn_synthetic.py for one variant; its training minutes, as it printed them."""
    command = [sys.executable, str(HERE / "learn_synthetic.py"), *passed, *VARIANTS[variant]]
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    print(done.stdout[-1500:], flush=True)
    if done.returncode:
        raise SystemExit(f"{variant}: learn_synthetic.py failed ({done.returncode})")
    minutes = re.search(r"training took ([\d.]+) min", done.stdout)
    return float(minutes.group(1)) if minutes else None


def score(run: RunFolder, widths: list[int], keep: int) -> tuple[dict, list]:
    """Mean IoU over all test pixels and within each trimap width, at full resolution; the
    first ``keep`` (image, truth, prediction) triples."""
    config = run.read_config()
    model = run.load_model()
    classes = config.num_classes
    confusion = np.zeros((classes, classes))
    trimaps = {width: np.zeros((classes, classes)) for width in widths}
    kept = []
    batches = make_dataset(
        config.data,
        "test",
        batch_size=1,
        input_size=None,
        split_seed=config.split_seed,
        **config.split_options(),
        num_classes=classes,
        cache=False,
    )
    for images, labels in batches:
        size = network_size(
            tf.shape(images)[1:3],
            input_size=config.input_size,
            output_stride=config.output_stride,
        )
        logits = logits_at_frame_size(lambda x: model(x, training=False), images, size)
        confusion += update_confusion(labels, logits, classes).numpy()
        predicted = tf.argmax(logits, axis=-1).numpy()
        for width in widths:
            trimaps[width] += trimap_confusion(
                labels.numpy(), predicted, num_classes=classes, width=width
            )
        if len(kept) < keep:
            kept.append((images[0].numpy(), labels[0].numpy(), predicted[0]))
    results = {"mean_iou": float(scores_from_confusion(confusion)["mean_iou"])}
    for width, matrix in trimaps.items():
        results[f"trimap_{width}"] = float(scores_from_confusion(matrix)["mean_iou"])
    return results, kept


def picture(runs: dict[str, RunFolder], kept: dict[str, list], out: Path) -> None:
    """image | truth | v3 | v3+ per test image, with the classes' legend."""
    labelmap = next(iter(runs.values())).read_config().classes()
    palette = labelmap.palette()
    rows, ids = [], set()
    for k, (image, truth, _) in enumerate(next(iter(kept.values()))):
        tiles = [np.round(image * 255).astype(np.uint8), colorize(truth, palette)]
        for variant in runs:
            prediction = kept[variant][k][2].astype(np.uint8)
            tiles.append(colorize(prediction, palette))
            ids |= set(np.unique(prediction).tolist())
        ids |= set(np.unique(truth).tolist()) - {255}
        rows.append(tiles)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid = compose_grid(rows, columns=1, class_ids=sorted(ids), labelmap=labelmap)
    Image.fromarray(grid).save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--input-size", type=int, default=160)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--count", type=int, default=600, help="synthetic images")
    parser.add_argument("--widths", default="2,5", help="trimap band widths in pixels")
    parser.add_argument("--pictures", type=int, default=4, help="test images in the picture")
    parser.add_argument("--picture", type=Path, default=Path("docs/img/decoder_predictions.png"))
    parser.add_argument("--skip-training", action="store_true", help="score existing runs")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]

    passed = [
        f"--work={args.work}",
        f"--backbone={args.backbone}",
        f"--input-size={args.input_size}",
        f"--epochs={args.epochs}",
        f"--count={args.count}",
    ]
    name = f"learn_synthetic_{args.backbone}_{args.input_size}_os16"
    runs = {"v3": RunFolder(args.work / name), "v3+": RunFolder(args.work / f"{name}_decoder")}
    minutes = {}
    for variant in VARIANTS:
        if not args.skip_training:
            started = time.perf_counter()
            minutes[variant] = _train(variant, args, passed)
            print(f"{variant}: {(time.perf_counter() - started) / 60:.1f} min in all", flush=True)
    results, kept = {}, {}
    for variant, run in runs.items():
        results[variant], kept[variant] = score(run, widths, args.pictures)
    picture(runs, kept, args.picture)

    header = " | ".join(f"trimap mean IoU, {w} px" for w in widths)
    print(f"\n| model | training time | test mean IoU (full res.) | {header} |")
    print("| --- | --- | --- |" + " --- |" * len(widths))
    for variant, scores in results.items():
        took = minutes.get(variant)
        trimap = " | ".join(f"{scores[f'trimap_{w}']:.3f}" for w in widths)
        print(
            f"| {variant} | {'—' if took is None else f'{took:.1f} min'} "
            f"| {scores['mean_iou']:.3f} | {trimap} |"
        )
    print(f"\npicture: {args.picture}")


if __name__ == "__main__":
    main()
