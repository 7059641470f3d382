"""The command line: ``python -m training data …``, ``train``, ``evaluate``, ``predict``,
``model-info``, ``export``, ``export-tflite``.

Each command lives in the module of its part (:mod:`training.cli.data`,
:mod:`training.cli.learning`, :mod:`training.cli.export`) and imports TensorFlow only when it
runs, so ``--help`` stays fast. Defaults and choices come from :mod:`training.config`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from training.cli.data import add_data_commands
from training.cli.export import add_export_commands
from training.cli.learning import add_learning_commands
from training.data.check import DatasetError
from training.data.download import DownloadError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, evaluate and export DeepLab v3 on VOC-format data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True)
    add_data_commands(commands)
    add_learning_commands(commands)
    add_export_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return args.func(args)
    except (DatasetError, DownloadError, FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
