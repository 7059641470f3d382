"""``python -m training {export,export-tflite,export-onnx}``: publish a run for servers and
vehicles.

    python -m training export --run runs/voc --models-dir models --name deeplabv3
    python -m training export-tflite --run runs/voc --out models/deeplabv3.tflite --optimize int8
    python -m training export-onnx --run runs/voc --out models/deeplabv3.onnx

Defaults and choices are :class:`~training.config.ExportOptions`',
:class:`~training.config.TfliteOptions`' and :class:`~training.config.OnnxOptions`'. Heavy
imports happen inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.cli.args import batch_sizes_arg, input_size_arg, scales_arg, share_arg, with_default
from training.config import (
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_MIN_INT8_AGREEMENT,
    PRECISIONS,
    RESIZE_MODES,
    TFLITE_OPTIMIZATIONS,
    ExportOptions,
    InferenceOptimizations,
    OnnxOptions,
    TfliteOptions,
)


def _export(args: argparse.Namespace) -> int:
    from training.export.publish import export_run, remove_versions_of_run

    options = ExportOptions(
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
        scales=args.scales,
        flip=args.flip,
    )
    if args.replace:
        removed = remove_versions_of_run(args.models_dir / options.name, args.run)
        if removed:
            print(f"removed earlier exports of {args.run}: versions {removed}")
    print(export_run(args.run, args.models_dir, options).text())
    return 0


def _export_tflite(args: argparse.Namespace) -> int:
    from training.export.tflite import export_tflite

    options = TfliteOptions(
        resize=args.resize,
        optimize=args.optimize,
        min_agreement=args.min_agreement,
        frame_size=args.frame_size,
    )
    print(export_tflite(args.run, args.out, options).text())
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    from training.export.onnx import export_onnx

    options = OnnxOptions(resize=args.resize, min_agreement=args.min_agreement, opset=args.opset)
    print(export_onnx(args.run, args.out, options).text())
    return 0


def add_export_commands(commands: argparse._SubParsersAction) -> None:
    """Adds export, export-tflite and export-onnx to the ``python -m training`` parser."""
    p = commands.add_parser(
        "export", help="publish a run as a TF Serving version (SavedModel, verified)"
    )
    p.add_argument("--run", type=Path, required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--models-dir", type=Path, default=Path("models"), help="model repository")
    p.add_argument("--name", **with_default(ExportOptions, "name", "model name (folder)"))
    p.add_argument("--version", type=int, help="version number (default: the next integer)")
    p.add_argument(
        "--replace",
        action="store_true",
        help="first remove the versions this run exported before (their export.json names "
        "the run); other versions stay",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        **with_default(
            ExportOptions, "precision", "compute precision of the served model (GPUs: float16)"
        ),
    )
    p.add_argument(
        "--resize",
        choices=RESIZE_MODES,
        **with_default(
            ExportOptions,
            "resize",
            "aspect: keep the frame's aspect ratio (long side = training size); "
            "stretch: resize to the training size like the book",
        ),
    )
    p.add_argument(
        "--min-agreement",
        type=share_arg,
        **with_default(
            ExportOptions, "min_agreement", "share of class-map pixels equal to the Keras model's"
        ),
    )
    p.add_argument(
        "--min-float32-agreement",
        type=share_arg,
        **with_default(
            ExportOptions,
            "min_float32_agreement",
            "float16/bfloat16: share equal to the float32 model's",
        ),
    )
    p.add_argument(
        "--warmup-batches",
        type=batch_sizes_arg,
        **with_default(
            ExportOptions,
            "warmup_batches",
            "also warm up batches of these sizes, e.g. 2,4,8 for a GPU server that batches "
            "(on CPUs they slow later single-frame requests)",
        ),
    )
    p.add_argument(
        "--no-native-dilation",
        dest="native_dilation",
        action="store_false",
        help="keep TensorFlow's space-to-batch lowering of atrous convolutions (about 2× "
        "slower on CPUs; docs/performance.md)",
    )
    p.add_argument(
        "--no-fold-batch-norms",
        dest="fold_batch_norms",
        action="store_false",
        help="keep batch normalization as separate ops instead of folding it into the "
        "convolutions' weights",
    )
    p.add_argument(
        "--scales",
        type=scales_arg,
        **with_default(
            ExportOptions,
            "scales",
            "multi-scale inference in the served graph, e.g. 0.75,1.0,1.25 (slower, more "
            "accurate; evaluate --scales measures both)",
        ),
    )
    p.add_argument(
        "--flip", action="store_true", help="also average the mirror image's softmax (slower)"
    )
    p.set_defaults(func=_export)

    p = commands.add_parser("export-tflite", help="a verified .tflite model for onboard use")
    p.add_argument("--run", type=Path, required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--out", type=Path, required=True, help="model file, e.g. deeplabv3.tflite")
    p.add_argument("--resize", choices=RESIZE_MODES, **with_default(TfliteOptions, "resize"))
    p.add_argument(
        "--optimize",
        choices=TFLITE_OPTIMIZATIONS,
        **with_default(
            TfliteOptions,
            "optimize",
            "float16: weights stored as float16; int8: full-integer network at a fixed size, "
            "calibrated on the run's training frames (the runner resizes)",
        ),
    )
    p.add_argument(
        "--min-agreement",
        type=share_arg,
        help="share of class-map pixels equal to the float32 model's (default: "
        f"{DEFAULT_MIN_AGREEMENT}, int8: {DEFAULT_MIN_INT8_AGREEMENT})",
    )
    height, width = TfliteOptions.frame_size
    p.add_argument(
        "--frame-size",
        type=input_size_arg,
        default=TfliteOptions.frame_size,
        help="int8: WIDTHxHEIGHT of the camera frames the fixed network size is chosen for "
        f"(default: {width}x{height})",
    )
    p.set_defaults(func=_export_tflite)

    p = commands.add_parser("export-onnx", help="a verified .onnx model for ONNX Runtime")
    p.add_argument("--run", type=Path, required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--out", type=Path, required=True, help="model file, e.g. deeplabv3.onnx")
    p.add_argument("--resize", choices=RESIZE_MODES, **with_default(OnnxOptions, "resize"))
    p.add_argument("--min-agreement", type=share_arg, **with_default(OnnxOptions, "min_agreement"))
    p.add_argument("--opset", type=int, **with_default(OnnxOptions, "opset", "ONNX opset"))
    p.set_defaults(func=_export_onnx)
