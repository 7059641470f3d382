"""DeepLab v3: shapes at any size, dilation, pretrained-weight transfer, ASPP, serialization."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from training.model.backbones import (
    BackboneWeightsError,
    ImageNetPreprocessing,
    dilated_backbone,
    imagenet_weights_file,
)
from training.model.deeplab import build_deeplabv3
from training.model.info import count_multiply_adds, describe


def _feature_size(model, height, width):
    features = keras.Model(model.inputs[0], model.get_layer("aspp_concat").input[0])
    return features(np.zeros((1, height, width, 3), "float32")).shape[1:3]


@pytest.mark.parametrize(
    ("backbone", "output_stride"),
    [("resnet50", 16), ("resnet50", 8), ("mobilenetv2", 16), ("mobilenetv2", 8)],
)
def test_logits_at_the_input_size_and_features_at_the_output_stride(backbone, output_stride):
    model = build_deeplabv3(
        5, backbone=backbone, output_stride=output_stride, backbone_weights=None
    )
    images = np.random.default_rng(0).random((2, 97, 130, 3), "float32")  # odd sizes
    logits = model(images)
    assert logits.shape == (2, 97, 130, 5)
    assert logits.dtype == "float32"
    assert np.isfinite(logits.numpy()).all()
    assert tuple(_feature_size(model, 96, 128)) == (96 // output_stride, 128 // output_stride)


def test_full_size_resnet50_runs_at_384():
    model = build_deeplabv3(backbone_weights=None)
    logits = model(np.random.default_rng(1).random((1, 384, 384, 3), "float32"), training=False)
    assert logits.shape == (1, 384, 384, 21)
    assert np.isfinite(logits.numpy()).all()


def test_dilation_and_aspp_rates_follow_the_output_stride():
    os16 = build_deeplabv3(backbone_weights=None, output_stride=16)
    for block in (1, 2, 3):
        assert os16.get_layer(f"conv5_block{block}_2_conv").dilation_rate == (2, 2)
    assert os16.get_layer("conv5_block1_1_conv").strides == (1, 1)
    assert os16.get_layer("conv5_block1_0_conv").strides == (1, 1)
    assert os16.get_layer("conv4_block1_1_conv").strides == (2, 2)
    assert [os16.get_layer(f"aspp_rate{r}_conv").dilation_rate for r in (6, 12, 18)] == [
        (6, 6),
        (12, 12),
        (18, 18),
    ]

    os8 = build_deeplabv3(backbone_weights=None, output_stride=8)
    assert os8.get_layer("conv4_block6_2_conv").dilation_rate == (2, 2)
    assert os8.get_layer("conv5_block3_2_conv").dilation_rate == (4, 4)
    assert os8.get_layer("conv4_block1_1_conv").strides == (1, 1)
    assert os8.get_layer("aspp_rate36_conv").dilation_rate == (36, 36)


def test_aspp_pooling_branch_is_projected_and_the_concat_is_projected():
    model = build_deeplabv3(backbone_weights=None, backbone="mobilenetv2")
    pooled_conv = model.get_layer("aspp_pool_1x1_conv")
    assert pooled_conv.kernel.shape == (1, 1, 320, 256)  # the book concatenates raw 2048 ch
    concat = model.get_layer("aspp_concat")
    assert concat.output.shape[-1] == 5 * 256
    assert model.get_layer("aspp_projection_conv").kernel.shape == (1, 1, 5 * 256, 256)
    assert model.get_layer("classifier").kernel.shape == (1, 1, 256, 21)


def _randomized_application(backbone):
    """A keras.applications no-top model with every weight (BN statistics too) random."""
    if backbone == "resnet50":
        source = keras.applications.ResNet50(include_top=False, weights=None)
    else:
        source = keras.applications.MobileNetV2(
            include_top=False, weights=None, input_shape=(None, None, 3)
        )
    rng = np.random.default_rng(7)
    for variable in source.weights:
        values = rng.uniform(0.5, 1.5, variable.shape).astype("float32")
        variable.assign(values)
    return source


def _save_legacy_h5(model, path):
    """The HDF5 layout of keras.applications' ImageNet files (loaded by layer order)."""
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    with h5py.File(path, "w") as file:
        save_weights_to_hdf5_group(file, model)


@pytest.mark.parametrize(
    ("backbone", "file_format"),
    [("resnet50", "legacy"), ("resnet50", "keras3"), ("mobilenetv2", "legacy")],
)
def test_every_pretrained_weight_is_transferred_into_the_dilated_backbone(
    backbone, file_format, tmp_path
):
    source = _randomized_application(backbone)
    if file_format == "legacy":  # like resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5
        weights_file = tmp_path / f"{backbone}_notop.h5"
        _save_legacy_h5(source, weights_file)
    else:
        weights_file = tmp_path / f"{backbone}.weights.h5"
        source.save_weights(weights_file)

    dilated = dilated_backbone(backbone, output_stride=16, weights=weights_file)
    compared = 0
    for layer in dilated.layers:
        if not layer.weights:
            continue
        expected = source.get_layer(layer.name).get_weights()
        for got, want in zip(layer.get_weights(), expected, strict=True):
            np.testing.assert_array_equal(got, want, err_msg=layer.name)
            compared += 1
    # MobileNetV2 stops at the 320-channel features: its Conv_1 and Conv_1_bn are left out.
    left_out = {"Conv_1", "Conv_1_bn"}
    assert compared == sum(len(x.weights) for x in source.layers if x.name not in left_out)
    names = {layer.name for layer in dilated.layers}
    if backbone == "resnet50":
        # All three conv5 blocks, convolutions and batch norms, not only block 1 as in the book.
        units = [f"conv5_block{b}_{u}" for b in (1, 2, 3) for u in (1, 2, 3)]
        assert {f"{unit}_{kind}" for unit in units for kind in ("conv", "bn")} <= names
        assert dilated.get_layer("conv5_block3_2_conv").dilation_rate == (2, 2)
    else:
        assert dilated.get_layer("block_13_depthwise").strides == (1, 1)
        assert dilated.get_layer("block_16_depthwise").dilation_rate == (2, 2)


def test_imagenet_weights_offline_fail_with_a_message_naming_the_alternative(tmp_path):
    with pytest.raises(BackboneWeightsError, match=r"offline.*--backbone-weights none"):
        imagenet_weights_file("resnet50", cache_dir=tmp_path, base_url="http://127.0.0.1:9/")


def test_a_missing_or_broken_weights_file_is_named(tmp_path):
    with pytest.raises(BackboneWeightsError, match=r"not found: .*nope\.h5"):
        build_deeplabv3(backbone_weights=tmp_path / "nope.h5")
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not hdf5")
    with pytest.raises(BackboneWeightsError, match=r"broken\.weights\.h5"):
        build_deeplabv3(backbone="mobilenetv2", backbone_weights=broken)


def test_imagenet_preprocessing_modes():
    pixel = np.array([[[[1.0, 0.5, 0.0]]]], "float32")  # RGB in [0, 1]
    caffe = ImageNetPreprocessing("caffe")(pixel).numpy().ravel()
    np.testing.assert_allclose(caffe, [0.0 - 103.939, 127.5 - 116.779, 255.0 - 123.68], rtol=1e-6)
    np.testing.assert_allclose(ImageNetPreprocessing("tf")(pixel).numpy().ravel(), [1, 0, -1])
    with pytest.raises(ValueError, match="mode"):
        ImageNetPreprocessing("torch")


def test_saved_model_file_reloads_with_equal_outputs(tmp_path):
    model = build_deeplabv3(4, backbone="mobilenetv2", backbone_weights=None)
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    images = np.random.default_rng(2).random((1, 70, 90, 3), "float32")
    np.testing.assert_allclose(reloaded(images), model(images), rtol=1e-5, atol=1e-5)


def test_argument_errors():
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_deeplabv3(backbone="vgg16", backbone_weights=None)
    with pytest.raises(ValueError, match="output_stride must be one of"):
        build_deeplabv3(output_stride=32, backbone_weights=None)


def test_multiply_adds_of_known_layers_and_the_reported_configuration():
    inputs = keras.Input((10, 12, 16))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)  # 10*12*8 outputs × 9*16 taps
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 5*6*8 × 9
    model = keras.Model(inputs, x)
    assert count_multiply_adds(model) == 10 * 12 * 8 * 9 * 16 + 5 * 6 * 8 * 9

    info = describe("mobilenetv2", input_size=(384, 384))
    assert info.feature_size == (24, 24)
    assert 4e6 < info.parameters < 5e6
    assert 2e9 < info.multiply_adds < 4e9
