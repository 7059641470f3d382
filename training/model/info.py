"""Parameter count and multiply-adds of a model at a given input size.

Multiply-adds are counted per convolution from the static output shape: a dilated 3×3 counts
9 taps per output even where some taps read padding (what the hardware is asked to do, not the
useful part). Batch norm, activations, additions and resizes are not counted; they are a small
share and batch norm folds into the convolutions at export.

    info = describe("mobilenetv2", input_size=(384, 384))
    info.multiply_adds / 1e9, info.parameters / 1e6
    describe("mobilenetv2", input_size=(480, 640), decoder=True).row()  # DeepLab v3+
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

from training.model.deeplab import build_deeplabv3


@dataclass(frozen=True)
class ModelInfo:
    """Size and cost of one configuration."""

    backbone: str
    output_stride: int
    input_size: tuple[int, int]
    parameters: int
    multiply_adds: int
    feature_size: tuple[int, int]
    decoder: bool = False

    def row(self) -> str:
        height, width = self.input_size
        return (
            f"| {self.backbone} | {self.output_stride} | {height}×{width} "
            f"| {self.parameters / 1e6:.1f} M | {self.multiply_adds / 1e9:.1f} B "
            f"| {self.feature_size[0]}×{self.feature_size[1]} | {'v3+' if self.decoder else 'v3'} |"
        )


TABLE_HEADER = (
    "| backbone | output stride | input | parameters | multiply-adds | ASPP feature map "
    "| model |\n| --- | --- | --- | --- | --- | --- | --- |"
)


def layer_multiply_adds(layer: keras.layers.Layer) -> int:
    """Multiply-adds of one convolution or dense layer at its built static shapes (0 otherwise)."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = layer.kernel.shape  # (kh, kw, in, depth_multiplier)
        return math.prod(layer.output.shape[1:]) * kernel[0] * kernel[1]
    if isinstance(layer, keras.layers.Conv2D):
        kernel = layer.kernel.shape  # (kh, kw, in / groups, out)
        return math.prod(layer.output.shape[1:]) * kernel[0] * kernel[1] * kernel[2]
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.output.shape[1:]) * layer.kernel.shape[0]
    return 0


def count_multiply_adds(model: keras.Model) -> int:
    """Sum of :func:`layer_multiply_adds` over a model built for a fixed input size."""
    return sum(layer_multiply_adds(layer) for layer in model.layers)


def describe(
    backbone: str,
    *,
    input_size: tuple[int, int] = (384, 384),
    output_stride: int = 16,
    num_classes: int = 21,
    decoder: bool = False,
) -> ModelInfo:
    """Builds the model (random weights) at ``input_size`` and measures it; ``decoder``:
    DeepLab v3+."""
    model = build_deeplabv3(
        num_classes,
        backbone=backbone,
        output_stride=output_stride,
        backbone_weights=None,
        input_shape=(*input_size, 3),
        decoder=decoder,
    )
    features = model.get_layer("aspp_concat").output.shape
    return ModelInfo(
        backbone=backbone,
        output_stride=output_stride,
        input_size=tuple(input_size),
        parameters=model.count_params(),
        multiply_adds=count_multiply_adds(model),
        feature_size=(features[1], features[2]),
        decoder=decoder,
    )
