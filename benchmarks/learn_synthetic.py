"""Does DeepLab v3 learn from scratch on this CPU? Held-out mean IoU and wall time.

Generates a synthetic VOC-format dataset (rooms seen from a vehicle, six object classes),
trains with ``python -m training train``'s code path (no ImageNet weights: this machine is
offline), then scores the held-out test half of val.txt, which neither training nor the best
checkpoint's selection saw.

    python benchmarks/learn_synthetic.py                       # MobileNetV2, 160×160, ~20 min
    python benchmarks/learn_synthetic.py --backbone resnet50 --input-size 192 --epochs 10

``--recipe paper`` trains with the ``paper`` preset's optimizer, schedule, augmentation and
loss (SGD momentum 0.9, poly rate with warm-up, decoupled weight decay, random scale 0.5–2.0,
cross-entropy) instead of the book's (Adam, plateau cuts, crop-or-resize with colour jitter,
CE + dice with per-image weights); give both the same steps × batch for equal compute.
``--evaluations`` also scores the run at output stride 8, with scales 0.75/1/1.25 + flip,
and both, and prints mean IoU and milliseconds per image of each mode:

    python benchmarks/learn_synthetic.py --epochs 12 --evaluations
    python benchmarks/learn_synthetic.py --recipe paper --batch-size 16 --steps-per-epoch 30 \\
        --lr 0.05 --warmup-steps 20 --epochs 12 --evaluations

``--voc-sample DIR`` instead overfits the nine real VOC pairs of the shared sample (all of
them for training and scoring) to show the model can fit real scenes:

    python benchmarks/learn_synthetic.py --voc-sample ../shared/data/voc_sample --epochs 120 \
        --steps-per-epoch 6 --batch-size 3 --output-stride 8 --reduce-lr-patience 12
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from training.config import TrainConfig
from training.data.synth import write_synthetic_voc
from training.learning.evaluate import evaluate_run
from training.learning.train import train
from training.presets import PRESETS


def _overfit_root(voc_sample: Path, work: Path) -> Path:
    """A copy of the sample whose train list holds all nine pairs (it ships train and val)."""
    root = work / "voc_sample_all"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(voc_sample, root)
    lists = root / "ImageSets" / "Segmentation"
    ids = sorted(p.stem for p in (root / "SegmentationClass").glob("*.png"))
    (lists / "train.txt").write_text("\n".join(ids) + "\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/benchmarks"))
    parser.add_argument("--count", type=int, default=600, help="synthetic images")
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--input-size", type=int, default=160)
    parser.add_argument("--output-stride", type=int, default=16)
    parser.add_argument("--decoder", action="store_true", help="DeepLab v3+ (train --decoder)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, help="default: one pass over the split")
    parser.add_argument("--recipe", choices=("book", "paper"), default="book")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak rate with --recipe paper")
    parser.add_argument("--warmup-steps", type=int, default=0, help="--recipe paper")
    parser.add_argument("--evaluations", action="store_true", help="also OS8, multi-scale+flip")
    parser.add_argument("--loss", default="ce+dice")
    parser.add_argument("--bn-momentum", type=float, default=0.9)
    parser.add_argument("--reduce-lr-patience", type=int, default=3, help="the book's 3")
    parser.add_argument("--voc-sample", type=Path, help="overfit these real pairs instead")
    args = parser.parse_args()

    args.work.mkdir(parents=True, exist_ok=True)
    if args.voc_sample:
        data, name = _overfit_root(args.voc_sample, args.work), "overfit_voc_sample"
        train_split = val_split = score_split = "train"
    else:
        data = args.work / f"synth_{args.count}"
        if not (data / "ImageSets").is_dir():
            write_synthetic_voc(data, count=args.count, seed=0, size=(320, 240))
        name = f"learn_synthetic_{args.backbone}_{args.input_size}_os{args.output_stride}"
        train_split, val_split, score_split = "train", "val", "test"
    name += "_decoder" if args.decoder else ""
    name += "_paper" if args.recipe == "paper" else ""
    out = args.work / name
    if out.exists():
        shutil.rmtree(out)  # a benchmark measures a fresh run

    book = dict(
        data=str(data),
        out=str(out),
        epochs=args.epochs,
        batch_size=args.batch_size,
        steps_per_epoch=args.steps_per_epoch,
        input_size=(args.input_size, args.input_size),
        lr=args.lr,
        backbone=args.backbone,
        backbone_weights=None,
        output_stride=args.output_stride,
        decoder=args.decoder,
        loss=args.loss,
        bn_momentum=args.bn_momentum,
        train_split=train_split,
        val_split=val_split,
        reduce_lr_patience=args.reduce_lr_patience,
        early_stopping_patience=args.epochs,  # a fixed budget: no early stop
    )
    # --recipe paper: the paper preset's optimizer, schedule, augmentation and loss on top.
    recipe = _paper_recipe(args) if args.recipe == "paper" else {}
    config = TrainConfig(**{**book, **recipe})
    started = time.perf_counter()
    result = train(config, verbose=2)
    train_minutes = (time.perf_counter() - started) / 60
    report = evaluate_run(out, score_split)
    print()
    print(report.table())
    print(
        f"\n{name}: {result.epochs_done} epochs, {args.backbone} "
        f"({'DeepLab v3+, ' if args.decoder else ''}output stride "
        f"{args.output_stride}) from scratch at "
        f"{args.input_size}×{args.input_size}, batch {args.batch_size}; training took "
        f"{train_minutes:.1f} min; {score_split} mean IoU {report.mean_iou:.3f}, pixel accuracy "
        f"{report.pixel_accuracy:.3f}, mean accuracy {report.mean_accuracy:.3f} "
        f"(pictures in {report.out_dir})"
    )
    if args.evaluations:
        _print_evaluations(out, score_split, args.output_stride)


def _paper_recipe(args: argparse.Namespace) -> dict:
    """The paper preset's optimizer, schedule, augmentation and loss; the benchmark's own
    data, size, budget and rate."""
    recipe = ("optimizer", "momentum", "weight_decay", "lr_schedule", "lr_power",
              "augmentation", "scale_range", "loss", "class_weights")  # fmt: skip
    return {
        **{name: PRESETS["paper"].values[name] for name in recipe},
        "warmup_steps": args.warmup_steps,
    }


def _print_evaluations(run: Path, split: str, output_stride: int) -> None:
    """Mean IoU and ms per image of the run at OS8 and with scales 0.75/1/1.25 + flip."""
    modes = {
        "plain": {},
        "multi-scale + flip": dict(scales=(0.75, 1.0, 1.25), flip=True),
    }
    if output_stride != 8:
        modes["output stride 8"] = dict(output_stride=8)
        modes["output stride 8, multi-scale + flip"] = dict(
            output_stride=8, scales=(0.75, 1.0, 1.25), flip=True
        )
    print(f"\n| evaluation of {run.name} | {split} mean IoU | pixel acc. | ms per image |")
    print("| --- | --- | --- | --- |")
    for mode, options in modes.items():
        report = evaluate_run(run, split, **options)
        print(
            f"| {mode} | {report.mean_iou:.3f} | {report.pixel_accuracy:.3f} | "
            f"{report.ms_per_image:.1f} |"
        )


if __name__ == "__main__":
    main()
