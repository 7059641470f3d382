"""``python -m training {train,evaluate,predict,model-info}``: the model's commands.

``train`` starts from a preset (``--preset book|paper|demo|smoke``, :mod:`training.presets`) and
applies the flags given on top; every default and choice is read from :mod:`training.config`.
Heavy imports (TensorFlow, Keras) happen inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from training.cli.args import (
    input_size_arg,
    optional_float_arg,
    optional_int_arg,
    scales_arg,
    weights_arg,
    with_default,
)
from training.config import (
    AUGMENTATIONS,
    BACKBONES,
    CLASS_WEIGHTINGS,
    DEFAULT_PRECISION,
    DEFAULT_RESIZE,
    LOSSES,
    LR_SCHEDULES,
    OPTIMIZERS,
    OUTPUT_STRIDES,
    PLAIN_SCALES,
    PRECISIONS,
    RESIZE_MODES,
    TrainConfig,
    default_of,
)
from training.presets import DEFAULT_PRESET, PRESETS, train_config

# TrainConfig fields the train command sets from flags of the same name (others are derived).
_TRAIN_OPTIONS = {f.name for f in fields(TrainConfig)} - {
    "data",
    "out",
    "split_seed",
    "class_names",
    "palette",
    "fixed_class_weights",
}


def train_config_from(args: argparse.Namespace) -> TrainConfig:
    """The preset's values with the flags given on top (a flag left out is absent from
    ``args``, so ``--backbone-weights none`` overrides a preset's weights)."""
    given = {name: getattr(args, name) for name in _TRAIN_OPTIONS if hasattr(args, name)}
    return train_config(args.preset, data=str(args.data), out=str(args.out), **given)


def _train(args: argparse.Namespace) -> int:
    from training.learning.train import train

    result = train(train_config_from(args), verbose=args.keras_verbose)
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
    from training.learning.evaluate import evaluate_run

    if args.resize and not args.full_res:
        raise ValueError("--resize applies to --full-res only (otherwise images are stretched)")

    report = evaluate_run(
        args.run,
        args.split,
        full_res=args.full_res,
        data=args.data,
        batch_size=args.batch_size,
        resize=args.resize or DEFAULT_RESIZE,
        precision=args.precision,
        output_stride=args.output_stride,
        scales=args.scales,
        flip=args.flip,
    )
    print(report.table())
    if args.json:
        print(json.dumps({k: v for k, v in report.to_json().items() if k != "confusion"}))
    print(f"\nwritten: {report.out_dir}/metrics.json, confusion.png, predictions.png")
    return 0


def _predict(args: argparse.Namespace) -> int:
    import numpy as np

    from training.learning.predict import predict_image
    from training.learning.run_folder import RunFolder

    class_map, out = predict_image(args.run, args.image, args.out, resize=args.resize)
    names = RunFolder(args.run).read_config().class_names
    ids, counts = np.unique(class_map, return_counts=True)
    shares = ", ".join(
        f"{names[i]} {c / class_map.size:.1%}" for i, c in sorted(zip(ids, counts, strict=True))
    )
    print(f"{out}: {class_map.shape[1]}x{class_map.shape[0]} ({shares})")
    return 0


def _model_info(args: argparse.Namespace) -> int:
    from training.model.info import TABLE_HEADER, describe

    print(TABLE_HEADER)
    for backbone in args.backbone:
        for output_stride in args.output_stride:
            info = describe(
                backbone,
                input_size=args.input_size,
                output_stride=output_stride,
                decoder=args.decoder,
            )
            print(info.row())
    return 0


def _presets_help() -> str:
    lines = [f"  {name}: {preset.describe()}" for name, preset in PRESETS.items()]
    return "presets (flags given on the command line override them):\n" + "\n".join(lines)


def _add_train_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train DeepLab v3 (resumes an interrupted run)",
        description="Train DeepLab v3; the same command again resumes an interrupted run.",
        epilog=_presets_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def option(flag: str, text: str = "", **kwargs) -> None:
        """A flag for the TrainConfig field of the same name: absent unless given (then the
        preset decides), its help showing the book's default."""
        name = flag.removeprefix("--").replace("-", "_")
        shown = with_default(TrainConfig, name, text)["help"]
        p.add_argument(flag, default=argparse.SUPPRESS, help=shown, **kwargs)

    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="dataset root: VOC's layout, or CVAT's 'Segmentation mask 1.1' export as it is",
    )
    p.add_argument("--out", type=Path, required=True, help="run folder, e.g. runs/NAME")
    p.add_argument(
        "--preset",
        choices=tuple(PRESETS),
        default=DEFAULT_PRESET,
        help=f"starting values (default: {DEFAULT_PRESET}; listed below)",
    )
    option("--epochs", type=int)
    option("--batch-size", "global batch (all replicas)", type=int)
    option("--input-size", "384 or WxH", type=input_size_arg)
    option("--lr", "learning rate (with --lr-schedule poly: the peak)", type=float)
    option("--optimizer", choices=OPTIMIZERS)
    option("--momentum", "SGD's momentum", type=float)
    option(
        "--weight-decay",
        "Keras' decoupled decay, w -= lr × decay × w per step (not through the momentum, "
        "unlike an L2 loss); none: off",
        type=optional_float_arg,
    )
    option(
        "--lr-schedule",
        "plateau: constant, cut by 10 when val loss stalls (the book's); poly: warm-up, then "
        "lr × (1 − step/steps)^power to 0 (DeepLab's)",
        choices=LR_SCHEDULES,
    )
    option("--lr-power", "the poly schedule's power", type=float)
    option("--warmup-steps", "the poly schedule's linear warm-up", type=int)
    option(
        "--augmentation",
        "crop_or_resize: the book's (with colour jitter); random_scale: DeepLab's",
        choices=AUGMENTATIONS,
    )
    option(
        "--scale-range",
        "random_scale's LOW,HIGH factors (relative to the frame fitted into the input size)",
        type=scales_arg,
    )
    option("--backbone", choices=BACKBONES)
    option(
        "--backbone-weights",
        "imagenet, none, or a keras.applications no-top weights file",
        type=weights_arg,
    )
    option("--output-stride", type=int, choices=OUTPUT_STRIDES)
    option("--num-classes", "none: the dataset's labelmap.txt, or VOC's 21", type=int)
    option("--loss", choices=LOSSES)
    option("--class-weights", choices=CLASS_WEIGHTINGS)
    option("--val-fraction", "share of a one-list root (CVAT's default.txt) for val", type=float)
    option("--test-fraction", "… and for test (the rest trains)", type=float)
    option("--train-split")
    option("--val-split")
    option("--seed", type=int)
    option("--steps-per-epoch", "none: one pass over the split", type=int)
    option("--bn-momentum", "batch-norm momentum; none: Keras'", type=float)
    option("--mixed-precision", "float16 compute (GPUs)", action="store_const", const=True)
    option(
        "--decoder",
        "DeepLab v3+: a decoder on the backbone's stride-4 features (sharper edges)",
        action="store_const",
        const=True,
    )
    option(
        "--sync-batch-norm",
        "batch statistics over all replicas (several GPUs or workers)",
        action="store_const",
        const=True,
    )
    option("--early-stopping-patience", "none: never stop early", type=optional_int_arg)
    option("--reduce-lr-patience", type=int)
    p.add_argument(
        "--keras-verbose", type=int, choices=(0, 1, 2), default=2, help="Keras progress output"
    )
    p.set_defaults(func=_train)


def add_learning_commands(commands: argparse._SubParsersAction) -> None:
    """Adds train, evaluate, predict and model-info to the ``python -m training`` parser."""
    _add_train_command(commands)

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
        help=f"with --full-res: the network input size, as in export (default: {DEFAULT_RESIZE})",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="compute in the precision `export --precision` uses, to see what it costs",
    )
    p.add_argument(
        "--output-stride",
        type=int,
        choices=OUTPUT_STRIDES,
        help="rebuild the model at this stride with the same weights (default: the run's)",
    )
    p.add_argument(
        "--scales",
        type=scales_arg,
        default=PLAIN_SCALES,
        help="average the softmax over the image scaled by each factor, e.g. 0.75,1,1.25 "
        "(default: 1)",
    )
    p.add_argument(
        "--flip", action="store_true", help="also average over the mirrored image (2× the cost)"
    )
    p.set_defaults(func=_evaluate)

    p = commands.add_parser("predict", help="colorized overlay of one image")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        default=DEFAULT_RESIZE,
        help="network input size, as in export",
    )
    p.set_defaults(func=_predict)

    p = commands.add_parser("model-info", help="parameters and multiply-adds of the model")
    p.add_argument("--backbone", nargs="+", choices=BACKBONES, default=list(BACKBONES))
    p.add_argument(
        "--output-stride",
        nargs="+",
        type=int,
        choices=OUTPUT_STRIDES,
        default=[default_of(TrainConfig, "output_stride")],
    )
    p.add_argument(
        "--input-size", type=input_size_arg, default=default_of(TrainConfig, "input_size")
    )
    p.add_argument("--decoder", action="store_true", help="DeepLab v3+ (train --decoder)")
    p.set_defaults(func=_model_info)
