"""Dilated ImageNet backbones for DeepLab v3: ResNet-50 and MobileNetV2 from keras.applications.

DeepLab keeps the feature map at 1/16 (or 1/8) of the input by turning the last stride-2 stage
into a stride-1 stage with atrous (dilated) convolutions. Dilation does not change a kernel's
shape, so every pretrained weight of the rebuilt stages is copied over unchanged.

    features = dilated_backbone("resnet50", output_stride=16, weights=None)
    features.output.shape  # (None, None, None, 2048), 1/16 of the input
    both = dilated_backbone("resnet50", weights=None, low_level=True)
    [tensor.shape for tensor in both.outputs]  # then the 1/4 features (DeepLab v3+)
    # → [(None, None, None, 2048), (None, None, None, 256)]

The backbone takes images as float32 in [0, 1] (what :func:`training.data.pipeline.normalize_image`
gives) and applies its ImageNet preprocessing inside the graph, so training, export and the
servers share one input convention.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras

from training.config import BACKBONES, OUTPUT_STRIDES

_KERAS_WEIGHTS = "https://storage.googleapis.com/tensorflow/keras-applications/"
# (file name, URL folder, MD5 or None): the no-top ImageNet files keras.applications uses.
IMAGENET_FILES = {
    "resnet50": (
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        _KERAS_WEIGHTS + "resnet/",
        "4d473c1dd8becc155b73f8504c6f6626",
    ),
    "mobilenetv2": (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        _KERAS_WEIGHTS + "mobilenet_v2/",
        None,
    ),
}
# The layer whose output feeds ASPP. MobileNetV2 stops before its 1280-channel Conv_1, as in
# the DeepLab model zoo (320 channels).
FEATURE_LAYERS = {"resnet50": "conv5_block3_out", "mobilenetv2": "block_16_project_BN"}
# The stride-4 layer whose output feeds DeepLab v3+'s decoder, as in DeepLab's own
# feature_extractor.py (tensorflow/models, research/deeplab/core): ResNet-50's last stride-4
# unit (there ``block1/unit_2/bottleneck_v1/conv3``, 256 channels; Keras strides at the start
# of the next stage, so its conv2 stage ends at stride 4), and MobileNetV2's
# ``layer_4/depthwise_output``: the depthwise 3×3 (BN, ReLU6) of the third inverted-residual
# block, 144 channels, which Keras names block_2.
LOW_LEVEL_LAYERS = {"resnet50": "conv2_block3_out", "mobilenetv2": "block_2_depthwise_relu"}


class BackboneWeightsError(RuntimeError):
    """ImageNet weights could not be fetched or a weights file could not be loaded."""


@keras.saving.register_keras_serializable(package="rcseg")
class ImageNetPreprocessing(keras.layers.Layer):
    """Maps images in [0, 1] to what an ImageNet backbone was trained on.

    ``mode="caffe"`` (ResNet-50): RGB→BGR, ×255, minus the ImageNet mean per channel.
    ``mode="tf"`` (MobileNetV2): scaled to [-1, 1].
    """

    CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf"):
            raise ValueError(f"mode must be 'caffe' or 'tf', got {mode!r}")
        self.mode = mode

    def call(self, images):
        images = keras.ops.cast(images, self.compute_dtype)
        if self.mode == "tf":
            return images * 2.0 - 1.0
        mean = keras.ops.convert_to_tensor(self.CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        return keras.ops.flip(images, axis=-1) * 255.0 - mean

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def imagenet_weights_file(
    backbone: str, *, cache_dir: str | Path | None = None, base_url: str | None = None
) -> Path:
    """Local path of the backbone's ImageNet weights, downloaded once into Keras' cache.

    Raises :class:`BackboneWeightsError` (saying the machine seems offline and what to use
    instead) when the file is not cached and cannot be downloaded.
    """
    file_name, folder, md5 = IMAGENET_FILES[backbone]
    origin = (base_url or folder) + file_name
    try:
        path = keras.utils.get_file(
            file_name,
            origin,
            cache_subdir="models",
            file_hash=md5,
            cache_dir=None if cache_dir is None else os.fspath(cache_dir),
        )
    except Exception as error:  # keras wraps URLError/HTTPError in a bare Exception
        raise BackboneWeightsError(
            f"could not download the ImageNet weights of {backbone} from {origin} ({error}). "
            "Is this machine offline? Put the file in Keras' cache (~/.keras/models/) from a "
            "machine with internet, pass its path (--backbone-weights PATH), or train from "
            "scratch (--backbone-weights none)."
        ) from error
    return Path(path)


def _resnet50_overrides(output_stride: int) -> dict[str, dict]:
    """Config changes that make ResNet-50's conv4 and/or conv5 stride 1 and atrous."""
    rates = {16: {"conv5": 2}, 8: {"conv4": 2, "conv5": 4}}[output_stride]
    blocks = {"conv4": 6, "conv5": 3}
    overrides: dict[str, dict] = {}
    for stage, rate in rates.items():
        # Keras' ResNet-50 (v1) strides the first 1×1 conv of a stage and its shortcut.
        overrides[f"{stage}_block1_0_conv"] = {"strides": (1, 1)}
        overrides[f"{stage}_block1_1_conv"] = {"strides": (1, 1)}
        for block in range(1, blocks[stage] + 1):
            overrides[f"{stage}_block{block}_2_conv"] = {"dilation_rate": (rate, rate)}
    return overrides


def _mobilenetv2_overrides(output_stride: int) -> dict[str, dict]:
    """Config changes that remove MobileNetV2's last stride-2 block(s) and dilate what follows.

    As in DeepLab's MobileNetV2 feature extractor: the block that used to stride keeps the
    current rate with stride 1; the blocks after it use twice the rate.
    """
    # Inverted-residual blocks that stride 2, and the blocks up to the next one.
    stages = [(6, range(7, 13)), (13, range(14, 17))]
    dilated = stages[1:] if output_stride == 16 else stages
    overrides: dict[str, dict] = {}
    rate = 1
    for strided_block, following in dilated:
        # The strided block pads explicitly and convolves with "valid" padding.
        overrides[f"block_{strided_block}_pad"] = {"padding": ((rate, rate), (rate, rate))}
        overrides[f"block_{strided_block}_depthwise"] = {
            "strides": (1, 1),
            "dilation_rate": (rate, rate),
        }
        rate *= 2
        for block in following:
            overrides[f"block_{block}_depthwise"] = {"dilation_rate": (rate, rate)}
    return overrides


def _application(backbone: str, images: keras.KerasTensor, weights: str | None) -> keras.Model:
    preprocessing_mode = "caffe" if backbone == "resnet50" else "tf"
    preprocessed = ImageNetPreprocessing(preprocessing_mode, name="imagenet_preprocessing")(images)
    if backbone == "resnet50":
        return keras.applications.ResNet50(
            include_top=False, weights=weights, input_tensor=preprocessed
        )
    return keras.applications.MobileNetV2(
        include_top=False, weights=weights, input_tensor=preprocessed, alpha=1.0
    )


def dilated_backbone(
    backbone: str = "resnet50",
    *,
    output_stride: int = 16,
    weights: str | Path | None = "imagenet",
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    bn_momentum: float | None = None,
    sync_batch_norm: bool = False,
    low_level: bool = False,
) -> keras.Model:
    """A keras Functional model: images in [0, 1] → features at 1/``output_stride``.

    ``weights``: ``"imagenet"``, ``None`` (random) or a path to a keras.applications no-top
    weights file. Layer names are those of keras.applications (``conv5_block1_2_conv``, …).
    ``bn_momentum`` replaces the batch norms' moving-average momentum (keras.applications
    uses 0.99 for ResNet-50 and 0.999 for MobileNetV2, too slow for short runs from scratch).
    ``sync_batch_norm``: every batch norm computes its batch statistics over all replicas
    (Keras' ``synchronized=True``). ``low_level``: a second output, the stride-4 features of
    :data:`LOW_LEVEL_LAYERS` (for the DeepLab v3+ decoder).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
    if weights == "imagenet":
        weights = imagenet_weights_file(backbone)
    if weights is not None and not Path(weights).is_file():
        raise BackboneWeightsError(f"backbone weights file not found: {weights}")

    images = keras.Input(shape=input_shape, name="images")
    try:
        pretrained = _application(backbone, images, None if weights is None else str(weights))
    except (ValueError, OSError) as error:
        raise BackboneWeightsError(
            f"could not load {backbone} weights from {weights}: {error}"
        ) from error
    outputs = [pretrained.get_layer(FEATURE_LAYERS[backbone]).output]
    if low_level:
        outputs.append(pretrained.get_layer(LOW_LEVEL_LAYERS[backbone]).output)
    truncated = keras.Model(pretrained.input, outputs if low_level else outputs[0], name=backbone)

    overrides = (
        _resnet50_overrides(output_stride)
        if backbone == "resnet50"
        else _mobilenetv2_overrides(output_stride)
    )

    def rebuild(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = {**layer.get_config(), **overrides.get(layer.name, {})}
        if isinstance(layer, keras.layers.BatchNormalization):
            if bn_momentum is not None:
                config["momentum"] = bn_momentum
            config["synchronized"] = sync_batch_norm
        return layer.__class__.from_config(config)

    dilated = keras.models.clone_model(truncated, clone_function=rebuild)
    dilated.name = f"{backbone}_os{output_stride}"
    for layer in dilated.layers:
        source = truncated.get_layer(layer.name)
        if source.weights:
            layer.set_weights(source.get_weights())
    return dilated
