"""Argument types and help text shared by the ``python -m training`` commands."""

from __future__ import annotations

import argparse
from typing import Any

from training.config import default_of


def size_arg(text: str) -> tuple[int, int]:
    """'480x360' → (480, 360) (width, height); '384' → (384, 384)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 480x360, got {text!r}")
    return parts[0], parts[1]


def input_size_arg(text: str) -> tuple[int, int]:
    """'384' or 'WIDTHxHEIGHT' → (height, width), the order the pipeline and model use."""
    width, height = size_arg(text)
    return height, width


def weights_arg(text: str) -> str | None:
    """'none' → None (random initialization); anything else as given."""
    return None if text.lower() == "none" else text


def optional_int_arg(text: str) -> int | None:
    """'none' → None; anything else an integer."""
    return None if text.lower() == "none" else int(text)


def optional_float_arg(text: str) -> float | None:
    """'none' → None; anything else a number."""
    return None if text.lower() == "none" else float(text)


def scales_arg(text: str) -> tuple[float, ...]:
    """'0.75,1.0,1.25' → (0.75, 1.0, 1.25); each positive."""
    try:
        scales = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected factors like 0.75,1.25, got {text!r}") from None
    if not all(scale > 0 for scale in scales):
        raise argparse.ArgumentTypeError(f"factors must be positive, got {text!r}")
    return scales


def share_arg(text: str) -> float:
    """A share in (0, 1], such as 0.999."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1], got {text}")
    return value


def batch_sizes_arg(text: str) -> tuple[int, ...]:
    """'2,4,8' → (2, 4, 8); each at least 2."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 2,4,8, got {text!r}") from None
    if any(size < 2 for size in sizes):
        raise argparse.ArgumentTypeError(f"batch sizes must be at least 2, got {text!r}")
    return sizes


def with_default(options: type, name: str, text: str = "") -> dict[str, Any]:
    """``default=`` and a help text ending in the default, both read from ``options``' field."""
    default = default_of(options, name)
    shown = "none" if default is None else default
    return {"default": default, "help": f"{text} (default: {shown})".strip()}
