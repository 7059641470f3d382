"""DeepLab v3+ (``decoder=True``): shapes at odd sizes, the decoder's structure and cost,
pretrained weights transferred, synchronized batch norms where asked."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.training.model.test_deeplab import _randomized_application, _save_legacy_h5
from training.model.backbones import LOW_LEVEL_LAYERS
from training.model.deeplab import build_deeplabv3
from training.model.info import describe


def _check_shapes(model, backbone, height, width, *, finite=True):
    """One forward pass at an odd size: logits at the input size, and the ASPP output resized
    to the backbone's stride-4 map at run time (odd sizes round up in ResNet-50's padded
    stem, down in MobileNetV2's)."""
    low_level = model.get_layer(LOW_LEVEL_LAYERS[backbone]).output
    probe = keras.Model(
        model.inputs[0], [model.output, low_level, model.get_layer("decoder_concat").output]
    )
    images = np.random.default_rng(0).random((1, height, width, 3), "float32")
    logits, low_level, concat = probe(images)
    assert logits.shape == (1, height, width, model.output.shape[-1])
    assert logits.dtype == "float32"
    assert np.isfinite(logits.numpy()).all() or not finite
    assert low_level.shape[1:3] == concat.shape[1:3]
    for got, side in zip(low_level.shape[1:3], (height, width), strict=True):
        assert got in (side // 4, -(-side // 4))


def _check_structure(model, backbone, channels, num_classes):
    assert model.get_layer(LOW_LEVEL_LAYERS[backbone]).output.shape[-1] == channels
    assert model.get_layer("decoder_low_level_conv").kernel.shape == (1, 1, channels, 48)
    assert model.get_layer("decoder_concat").output.shape[-1] == 256 + 48
    assert model.get_layer("decoder_conv1_depthwise").kernel.shape == (3, 3, 304, 1)
    assert model.get_layer("decoder_conv1_pointwise_conv").kernel.shape == (1, 1, 304, 256)
    assert model.get_layer("decoder_conv2_pointwise_conv").kernel.shape == (1, 1, 256, 256)
    assert model.get_layer("classifier").kernel.shape == (1, 1, 256, num_classes)


def _synchronized(model) -> set[bool]:
    return {x.synchronized for x in model.layers if isinstance(x, keras.layers.BatchNormalization)}


@pytest.mark.parametrize(
    ("backbone", "channels", "size"), [("mobilenetv2", 144, (65, 97)), ("resnet50", 256, (33, 47))]
)
def test_a_v3plus_model_from_pretrained_weights_at_output_stride_16(
    backbone, channels, size, tmp_path
):
    """Every pretrained weight reaches the backbone; the decoder reads its stride-4 features,
    projects them to 48 channels and convolves separably; logits come at odd input sizes."""
    source = _randomized_application(backbone)
    weights_file = tmp_path / f"{backbone}_notop.h5"
    _save_legacy_h5(source, weights_file)
    model = build_deeplabv3(3, backbone=backbone, backbone_weights=weights_file, decoder=True)
    assert model.name == f"deeplabv3plus_{backbone}_os16"
    transferred = 0
    for layer in source.layers:
        if not layer.weights or layer.name in ("Conv_1", "Conv_1_bn"):  # past the features
            continue
        for got, want in zip(
            model.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True
        ):
            np.testing.assert_array_equal(got, want, err_msg=layer.name)
            transferred += 1
    assert transferred == sum(
        len(x.weights) for x in source.layers if x.name not in ("Conv_1", "Conv_1_bn")
    )
    _check_structure(model, backbone, channels, num_classes=3)
    # All-positive test weights (0.5–1.5) overflow ResNet-50's 50 layers: shapes only.
    _check_shapes(model, backbone, *size, finite=False)
    assert _synchronized(model) == {False}  # the default


@pytest.mark.parametrize("backbone", ["mobilenetv2", "resnet50"])
def test_a_v3plus_model_at_output_stride_8_with_synchronized_batch_norms(backbone):
    model = build_deeplabv3(
        5,
        backbone=backbone,
        output_stride=8,
        backbone_weights=None,
        decoder=True,
        sync_batch_norm=True,
    )
    _check_shapes(model, backbone, 33, 47)
    # Every batch norm, backbone and head: outside a strategy they compute as plain ones.
    assert _synchronized(model) == {True}
    names = {x.name for x in model.layers}
    assert {"aspp_projection_bn", "decoder_conv2_pointwise_bn"} <= names


def test_the_decoder_cost_is_what_its_layers_count():
    """The multiply-adds v3+ adds at 96×128 (stride-4 map 24×32), counted by hand."""
    v3 = describe("mobilenetv2", input_size=(96, 128), num_classes=7)
    plus = describe("mobilenetv2", input_size=(96, 128), num_classes=7, decoder=True)
    # Per stride-4 position: the low-level projection, the two separable units, and the
    # classifier, which now runs there (24×32) instead of at stride 16 (6×8).
    per_position = 144 * 48 + (9 * 304 + 304 * 256) + (9 * 256 + 256 * 256) + 256 * 7
    by_hand = 24 * 32 * per_position - 6 * 8 * 256 * 7
    assert plus.multiply_adds - v3.multiply_adds == by_hand
    assert plus.decoder and not v3.decoder
    assert "v3+" in plus.row() and "v3+" not in v3.row()


def test_the_train_flags_set_the_run_options_and_bad_values_are_named(tmp_path):
    from training.cli import build_parser
    from training.cli.learning import train_config_from
    from training.config import TrainConfig

    def config_of(*flags: str) -> TrainConfig:
        argv = ["train", f"--data={tmp_path}", "--out=o", *flags]
        return train_config_from(build_parser().parse_args(argv))

    assert (config_of().decoder, config_of().sync_batch_norm) == (False, False)
    both = config_of("--preset=smoke", "--decoder", "--sync-batch-norm")
    assert (both.decoder, both.sync_batch_norm) == (True, True)
    with pytest.raises(ValueError, match="decoder must be true or false, got 'yes'"):
        TrainConfig(data=str(tmp_path), out="o", decoder="yes")
