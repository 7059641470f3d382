"""Command line of the model part: ``python -m training {train,evaluate,predict,model-info}``.

Heavy imports (TensorFlow, Keras) happen inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training import voc


def _input_size(text: str) -> tuple[int, int]:
    """'384' or 'WIDTHxHEIGHT' → (height, width), the order the pipeline and model use."""
    from training.cli import size_arg

    width, height = size_arg(text)
    return height, width


def _weights_arg(text: str) -> str | None:
    return None if text.lower() == "none" else text


def _train(args: argparse.Namespace) -> int:
    from training.run import TrainConfig
    from training.train import train

    config = TrainConfig(
        data=str(args.data),
        out=str(args.out),
        epochs=args.epochs,
        batch_size=args.batch_size,
        input_size=args.input_size,
        lr=args.lr,
        backbone=args.backbone,
        backbone_weights=args.backbone_weights,
        output_stride=args.output_stride,
        num_classes=args.num_classes,
        loss=args.loss,
        class_weights=args.class_weights,
        train_split=args.train_split,
        val_split=args.val_split,
        seed=args.seed,
        steps_per_epoch=args.steps_per_epoch,
        bn_momentum=args.bn_momentum,
        mixed_precision=args.mixed_precision,
        early_stopping_patience=args.early_stopping_patience,
        reduce_lr_patience=args.reduce_lr_patience,
    )
    result = train(config, verbose=args.keras_verbose)
    best = "none yet" if result.best_val_mean_iou is None else f"{result.best_val_mean_iou:.4f}"
    print(
        f"{result.run.path}: {result.epochs_done} epochs done, best val mean IoU {best}; "
        f"curves in {result.run.curves}, best weights in {result.run.best_weights}"
    )
    if result.diverged:
        print("error: the loss became NaN; the run stopped at its last finite epoch")
        return 1
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import evaluate_run

    if args.resize and not args.full_res:
        raise ValueError("--resize applies to --full-res only (otherwise images are stretched)")

    report = evaluate_run(
        args.run,
        args.split,
        full_res=args.full_res,
        data=args.data,
        batch_size=args.batch_size,
        resize=args.resize or "aspect",
        precision=args.precision,
    )
    print(report.table())
    if args.json:
        print(json.dumps({k: v for k, v in report.to_json().items() if k != "confusion"}))
    print(f"\nwritten: {report.out_dir}/metrics.json, confusion.png, predictions.png")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from training.predict import predict_image
    from training.run import RunFolder

    class_map, out = predict_image(args.run, args.image, args.out, resize=args.resize)
    names = RunFolder(args.run).read_config().class_names
    ids, counts = np.unique(class_map, return_counts=True)
    shares = ", ".join(
        f"{names[i]} {c / class_map.size:.1%}" for i, c in sorted(zip(ids, counts, strict=True))
    )
    print(f"{out}: {class_map.shape[1]}x{class_map.shape[0]} ({shares})")
    return 0


def _model_info(args: argparse.Namespace) -> int:
    from training.model_info import TABLE_HEADER, describe

    print(TABLE_HEADER)
    for backbone in args.backbone:
        for output_stride in args.output_stride:
            info = describe(backbone, input_size=args.input_size, output_stride=output_stride)
            print(info.row())
    return 0


# Choices, spelled here so that building the parser imports no TensorFlow (a test checks they
# equal training.backbones' and training.train's).
BACKBONES = ("resnet50", "mobilenetv2")
OUTPUT_STRIDES = (8, 16)
LOSSES = ("ce", "ce+dice", "dice")
CLASS_WEIGHTINGS = ("per_image", "fixed", "none")
RESIZE_MODES = ("aspect", "stretch")
PRECISIONS = ("float32", "float16", "bfloat16")  # training.export.PRECISIONS


def add_model_commands(commands: argparse._SubParsersAction) -> None:
    """Adds train, evaluate, predict and model-info to the ``python -m training`` parser."""

    p = commands.add_parser("train", help="train DeepLab v3 (resumes an interrupted run)")
    p.add_argument("--data", type=Path, required=True, help="VOC-format root")
    p.add_argument("--out", type=Path, required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=8, help="global batch (all replicas)")
    p.add_argument("--input-size", type=_input_size, default=(384, 384), help="384 or WxH")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--backbone", choices=BACKBONES, default="resnet50")
    p.add_argument(
        "--backbone-weights",
        type=_weights_arg,
        default="imagenet",
        help="imagenet, none, or a keras.applications no-top weights file",
    )
    p.add_argument("--output-stride", type=int, choices=OUTPUT_STRIDES, default=16)
    p.add_argument("--num-classes", type=int, default=voc.NUM_CLASSES)
    p.add_argument("--loss", choices=LOSSES, default="ce+dice")
    p.add_argument("--class-weights", choices=CLASS_WEIGHTINGS, default="per_image")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps-per-epoch", type=int, help="default: one pass over the split")
    p.add_argument("--bn-momentum", type=float, help="batch-norm momentum (default: Keras')")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute (GPUs)")
    p.add_argument("--early-stopping-patience", type=int, default=6)
    p.add_argument("--reduce-lr-patience", type=int, default=3)
    p.add_argument(
        "--keras-verbose", type=int, choices=(0, 1, 2), default=2, help="Keras progress output"
    )
    p.set_defaults(func=_train)

    p = commands.add_parser("evaluate", help="score a run on a split, with pictures")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--full-res", action="store_true", help="score at each image's resolution")
    p.add_argument("--data", type=Path, help="default: the run's training data root")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--json", action="store_true", help="also print the scores as JSON")
    p.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        help="with --full-res: the network input size, as in export (default: aspect)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="compute in the precision `export --precision` uses, to see what it costs",
    )
    p.set_defaults(func=_evaluate)

    p = commands.add_parser("predict", help="colorized overlay of one image")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--resize", choices=RESIZE_MODES, default="aspect", help="network input size, as in export"
    )
    p.set_defaults(func=_predict)

    p = commands.add_parser("model-info", help="parameters and multiply-adds of the model")
    p.add_argument("--backbone", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    p.add_argument("--output-stride", nargs="+", type=int, choices=OUTPUT_STRIDES, default=[16])
    p.add_argument("--input-size", type=_input_size, default=(384, 384))
    p.set_defaults(func=_model_info)
