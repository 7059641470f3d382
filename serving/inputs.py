"""Request inputs checked against the signature before TensorFlow runs.

Every problem becomes INVALID_ARGUMENT with a message that names the input and says what was
expected and what came: missing or extra inputs (TF Serving's wording), dtype, rank, fixed
dimensions (3 colour channels), empty tensors, a batch or pixel count over the server's limits,
a ``tensor_content`` of the wrong length, and encoded images that are not JPEG/PNG/GIF/BMP or
whose header is unreadable. Inputs left out that the signature has a default for get it.

    arrays = check_inputs(signature_def, request.inputs, Limits())
    arrays["images"].shape
    # → (1, 480, 640, 3)
"""

from __future__ import annotations

import io
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.errors import echo_set, invalid
from serving.options import Limits

# The contract's formats, as PIL names them. MPO is a JPEG followed by more JPEGs (what phone
# cameras write for Ultra HDR and multi-picture photos): TensorFlow decodes the first, whose
# size PIL reads. (TensorFlow would also decode GIF, every frame of it, whatever the header
# says: a pixel limit read from headers cannot hold for GIFs.)
ENCODED_FORMATS = ("JPEG", "MPO", "PNG")


def _dtype_name(dtype: int) -> str:
    return types_pb2.DataType.Name(dtype)


def _shape(proto: tensor_pb2.TensorProto) -> list[int]:
    return [d.size for d in proto.tensor_shape.dim]


def _check_shape(name: str, proto: tensor_pb2.TensorProto, info: meta_graph_pb2.TensorInfo):
    shape = _shape(proto)
    if info.tensor_shape.unknown_rank:
        return
    expected = [d.size for d in info.tensor_shape.dim]
    wanted = "[" + ",".join("?" if d < 0 else str(d) for d in expected) + "]"
    if len(shape) != len(expected):
        raise invalid(f"input {name}: expected rank {len(expected)} {wanted}, got shape {shape}")
    for axis, (got, want) in enumerate(zip(shape, expected, strict=True)):
        if want >= 0 and got != want:
            what = " (RGB channels)" if axis == len(expected) - 1 and want == 3 else ""
            raise invalid(f"input {name}: dimension {axis} must be {want}{what}, got shape {shape}")
    if any(d == 0 for d in shape):
        raise invalid(f"input {name}: empty tensor (shape {shape})")


def _to_array(name: str, proto: tensor_pb2.TensorProto) -> np.ndarray:
    try:
        return tf.make_ndarray(proto)
    except (ValueError, TypeError) as error:
        raise invalid(
            f"input {name}: content does not match shape {_shape(proto)} ({error})"
        ) from None
    except OverflowError as error:  # e.g. int_val 300 for a uint8 input
        raise invalid(
            f"input {name}: a value does not fit {_dtype_name(proto.dtype)} ({error})"
        ) from None


def _encoded_image_pixels(name: str, data: np.ndarray, limits: Limits) -> int:
    """Pixels of every encoded image, from their headers (nothing is decoded here)."""
    total = 0
    for index, blob in enumerate(data.reshape(-1)):
        try:
            with Image.open(io.BytesIO(blob)) as image:
                if image.format not in ENCODED_FORMATS:
                    raise UnidentifiedImageError(f"format {image.format}")
                width, height = image.size
        except Image.DecompressionBombError:
            raise invalid(
                f"input {name}[{index}]: its header declares more pixels than this server "
                f"accepts ({limits.max_pixels:,}, --max-pixels)"
            ) from None
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise invalid(
                f"input {name}[{index}]: not a decodable JPEG or PNG image "
                f"({len(blob)} bytes: {error})"
            ) from None
        total += width * height
    return total


def _too_many_pixels(name: str, pixels: int, limits: Limits) -> None:
    if pixels > limits.max_pixels:
        raise invalid(
            f"input {name}: {pixels:,} pixels in one request exceed this server's limit of "
            f"{limits.max_pixels:,} (--max-pixels)"
        )


def _check_declared_size(name: str, shape: list[int], limits: Limits) -> None:
    """Limits read from the declared shape, before anything is allocated: a proto may declare
    a huge shape with no content, which TensorFlow's conversion fills (with zeros)."""
    if any(d < 0 for d in shape):
        raise invalid(f"input {name}: dimension sizes must be ≥ 0, got shape {shape}")
    if shape and shape[0] > limits.max_batch:
        raise invalid(
            f"input {name}: a batch of {shape[0]} exceeds this server's limit of "
            f"{limits.max_batch} (--max-batch)"
        )
    if len(shape) == 4:
        _too_many_pixels(name, int(np.prod(shape[:3], dtype=np.int64)), limits)
    elif int(np.prod(shape, dtype=np.int64)) > 4 * limits.max_pixels:
        raise invalid(f"input {name}: shape {shape} is larger than this server accepts")


def check_inputs(
    signature: meta_graph_pb2.SignatureDef,
    inputs: Mapping[str, tensor_pb2.TensorProto],
    limits: Limits,
) -> dict[str, np.ndarray]:
    """The request's inputs as arrays, checked; defaults filled in for left-out inputs."""
    sent, expected = set(inputs), set(signature.inputs)
    missing = expected - sent - set(signature.defaults)
    if sent - expected or missing:
        raise invalid(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({echo_set(sent)}) != len({echo_set(expected)}). "
            f"Sent extra: {echo_set(sent - expected)}. "
            f"Missing but required: {echo_set(missing)}."
        )
    arrays = {}
    for name in sorted(expected):
        if name not in inputs:
            arrays[name] = tf.make_ndarray(signature.defaults[name])
            continue
        proto, info = inputs[name], signature.inputs[name]
        if proto.dtype != info.dtype:
            raise invalid(
                f"input {name}: expected dtype {_dtype_name(info.dtype)}, "
                f"got {_dtype_name(proto.dtype)}"
            )
        _check_shape(name, proto, info)
        _check_declared_size(name, _shape(proto), limits)
        array = _to_array(name, proto)
        if array.dtype == object:  # encoded images: their sizes from their headers
            _too_many_pixels(name, _encoded_image_pixels(name, array, limits), limits)
        arrays[name] = array
    return arrays
