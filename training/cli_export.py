"""Command line of the export part: ``python -m training {export,export-tflite}``.

    python -m training export --run runs/voc --models-dir models --name deeplabv3
    python -m training export-tflite --run runs/voc --out models/deeplabv3.tflite

Heavy imports happen inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.cli_model import PRECISIONS, RESIZE_MODES

# Spelled here so that building the parser imports no TensorFlow (a test checks they equal
# training.export's and training.tflite_export's).
TFLITE_OPTIMIZATIONS = ("none", "float16")


def _agreement(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1], got {text}")
    return value


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 2,4,8, got {text!r}") from None
    if any(size < 2 for size in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be at least 2, got {text!r}")
    return sizes


def _export(args: argparse.Namespace) -> int:
    from training.export import export_run
    from training.fast_inference import InferenceOptimizations

    report = export_run(
        args.run,
        args.models_dir,
        name=args.name,
        version=args.version,
        precision=args.precision,
        resize=args.resize,
        min_agreement=args.min_agreement,
        min_float32_agreement=args.min_float32_agreement,
        warmup_batches=args.warmup_batches,
        optimizations=InferenceOptimizations(
            native_dilation=args.native_dilation,
            fold_batch_norms=args.fold_batch_norms,
        ),
    )
    print(report.text())
    return 0


def _export_tflite(args: argparse.Namespace) -> int:
    from training.tflite_export import export_tflite

    report = export_tflite(
        args.run,
        args.out,
        resize=args.resize,
        optimize=args.optimize,
        min_agreement=args.min_agreement,
    )
    print(report.text())
    return 0


def add_export_commands(commands: argparse._SubParsersAction) -> None:
    """Adds export and export-tflite to the ``python -m training`` parser."""
    p = commands.add_parser(
        "export", help="publish a run as a TF Serving version (SavedModel, verified)"
    )
    p.add_argument("--run", type=Path, required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="model repository")
    p.add_argument("--name", default="deeplabv3", help="model name (folder under --models-dir)")
    p.add_argument("--version", type=int, help="version number (default: the next integer)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="compute precision of the served model (float16/bfloat16 for GPUs)",
    )
    p.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        default="aspect",
        help="aspect: keep the frame's aspect ratio (long side = training size); "
        "stretch: resize to the training size like the book",
    )
    p.add_argument(
        "--min-agreement",
        type=_agreement,
        default=0.999,
        help="share of class-map pixels that must equal the Keras model's (default 0.999)",
    )
    p.add_argument(
        "--min-float32-agreement",
        type=_agreement,
        default=0.99,
        help="float16/bfloat16: share that must equal the float32 model's (default 0.99)",
    )
    p.add_argument(
        "--warmup-batches",
        type=_batch_sizes,
        default=(),
        help="also warm up batches of these sizes, e.g. 2,4,8 for a GPU server that batches "
        "(on CPUs they slow later single-frame requests)",
    )
    p.add_argument(
        "--no-native-dilation",
        dest="native_dilation",
        action="store_false",
        help="keep TensorFlow's space-to-batch lowering of atrous convolutions (about 2× "
        "slower on CPUs; README, Performance)",
    )
    p.add_argument(
        "--no-fold-batch-norms",
        dest="fold_batch_norms",
        action="store_false",
        help="keep batch normalization as separate ops instead of folding it into the "
        "convolutions' weights",
    )
    p.set_defaults(func=_export)

    p = commands.add_parser("export-tflite", help="a verified .tflite model for onboard use")
    p.add_argument("--run", type=Path, required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--out", type=Path, required=True, help="model file, e.g. deeplabv3.tflite")
    p.add_argument("--resize", choices=RESIZE_MODES, default="aspect")
    p.add_argument(
        "--optimize",
        choices=TFLITE_OPTIMIZATIONS,
        default="none",
        help="float16: weights stored as float16 (half the size)",
    )
    p.add_argument("--min-agreement", type=_agreement, default=0.999)
    p.set_defaults(func=_export_tflite)
