"""The client's own protobuf messages are TF Serving's on the wire, in both directions.

``client/proto/serving_wire.proto`` copies the fields of TF Serving's messages into our own
package so the client runs without TensorFlow. These tests hold it to the official messages
(``tensorflow_serving.apis``, ``tf.make_tensor_proto``, ``tf.make_ndarray``): the same content
gives the same bytes, each side parses what the other writes to the same values, every field
has the official number, name and type, and the generated module matches the ``.proto``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import descriptor_pool, wrappers_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_pb2, predict_pb2, status_pb2

from client import wire
from client.proto import serving_wire_pb2 as pb

REPO = Path(__file__).resolve().parents[2]
PROTO = "client/proto/serving_wire.proto"
OUR_PACKAGE = "rc_segmentation.wire"
JPEG_LIKE = [
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) + b"\xff\xd9",
    b"\xff\xd8\xff\xdb\x00\x00\x80\xfe\xff\xd9",  # NUL and bytes that are not UTF-8
    b"",
]


# --- building the official messages ------------------------------------------------------------


def official_spec(
    model: str, *, version: int | None = None, label: str | None = None, signature: str = ""
) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=model, signature_name=signature)
    if version is not None:
        spec.version.CopyFrom(wrappers_pb2.Int64Value(value=version))
    elif label is not None:
        spec.version_label = label
    return spec


def official_shape(shape: tuple[int, ...]) -> tensor_shape_pb2.TensorShapeProto:
    return tf.TensorShape(shape).as_proto()


def official_content(array: np.ndarray) -> tensor_pb2.TensorProto:
    """``array`` as raw ``tensor_content``, the way TF Serving's ``--tensor_content`` sends it.

    Needed where ``tf.make_tensor_proto`` picks a typed field instead (bool, uint16 and
    single-element tensors go to ``bool_val``/``int_val``/``float_val``…), while our encoder
    always writes ``tensor_content``: same values, different bytes."""
    return tensor_pb2.TensorProto(
        dtype=tf.as_dtype(array.dtype).as_datatype_enum,
        tensor_shape=official_shape(array.shape),
        tensor_content=array.tobytes(),
    )


def official_typed(
    dtype, shape: tuple[int, ...], field: str, values: list
) -> tensor_pb2.TensorProto:
    """A TensorProto carrying its values in one of the typed repeated fields."""
    tensor = tensor_pb2.TensorProto(
        dtype=tf.as_dtype(dtype).as_datatype_enum, tensor_shape=official_shape(shape)
    )
    getattr(tensor, field).extend(values)
    return tensor


def official_request(
    spec: model_pb2.ModelSpec,
    inputs: dict[str, tensor_pb2.TensorProto],
    output_filter: list[str] = (),
) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(model_spec=spec, output_filter=output_filter)
    for key, tensor in inputs.items():
        request.inputs[key].CopyFrom(tensor)
    return request


def reparse(message, cls):
    """``message`` serialized and parsed as ``cls`` (one side of the wire to the other)."""
    parsed = cls()
    parsed.ParseFromString(message.SerializeToString())
    return parsed


def assert_same_array(ours: np.ndarray, expected: np.ndarray) -> None:
    assert ours.dtype == expected.dtype
    assert ours.shape == expected.shape
    assert np.array_equal(ours, expected)


# --- test data ---------------------------------------------------------------------------------


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


def frame(height: int, width: int, batch: int = 1) -> np.ndarray:
    return _rng().integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


# Each case builds its input on demand (the 1080p frame is 6.2 MB).
NUMERIC_INPUTS: dict[str, Callable[[], np.ndarray]] = {
    "uint8-480p": lambda: frame(480, 640),
    "uint8-1080p": lambda: frame(1080, 1920),
    "uint8-odd-7x13": lambda: frame(7, 13),
    "uint8-batch-3x1x5": lambda: frame(1, 5, batch=3),
    "float32": lambda: _rng().standard_normal((1, 4, 5, 3)).astype(np.float32),
    "int32": lambda: _rng().integers(-(2**31), 2**31, (2, 3), dtype=np.int32),
    "int64": lambda: np.array([-(2**62), -1, 0, 2**40, 2**63 - 1], dtype=np.int64),
    "float16": lambda: np.array([1.5, -2.0, 65504.0], dtype=np.float16),
}

# Dtypes and sizes for which make_tensor_proto uses a typed field rather than tensor_content.
HAND_BUILT_INPUTS: dict[str, Callable[[], np.ndarray]] = {
    "bool": lambda: np.array([[True, False, True], [False, False, True]]),
    "uint16": lambda: np.array([0, 1, 65535], dtype=np.uint16),
    "uint8-single-value": lambda: np.full((1, 1, 1, 1), 9, dtype=np.uint8),
}


# --- 1. the same content gives the same bytes --------------------------------------------------


@pytest.mark.parametrize("case", NUMERIC_INPUTS, ids=str)
def test_numeric_request_bytes_match_make_tensor_proto(case):
    array = NUMERIC_INPUTS[case]()
    ours = wire.predict_request(
        wire.model_spec("deeplabv3", version=3, signature="serving_default"),
        {"images": array},
        output_filter=["class_map"],
    )
    official = official_request(
        official_spec("deeplabv3", version=3, signature="serving_default"),
        {"images": tf.make_tensor_proto(array)},
        ["class_map"],
    )
    assert official.inputs["images"].tensor_content  # the representation compared here
    # One input: the plain serialization is already canonical.
    assert ours.SerializeToString() == official.SerializeToString()
    assert ours.SerializeToString(deterministic=True) == official.SerializeToString(
        deterministic=True
    )


@pytest.mark.parametrize("case", HAND_BUILT_INPUTS, ids=str)
def test_numeric_request_bytes_match_tensor_content(case):
    array = HAND_BUILT_INPUTS[case]()
    ours = wire.predict_request(wire.model_spec("deeplabv3"), {"x": array})
    official = official_request(official_spec("deeplabv3"), {"x": official_content(array)})
    assert ours.SerializeToString() == official.SerializeToString()


def test_string_request_bytes_match_make_tensor_proto():
    ours = wire.predict_request(
        wire.model_spec("deeplabv3", label="stable", signature="segment_jpeg"),
        {"jpeg": JPEG_LIKE},
    )
    official = official_request(
        official_spec("deeplabv3", label="stable", signature="segment_jpeg"),
        {"jpeg": tf.make_tensor_proto(JPEG_LIKE)},
    )
    assert list(official.inputs["jpeg"].string_val) == JPEG_LIKE
    assert ours.SerializeToString() == official.SerializeToString()


SPECS = {
    "name-only": {},
    "version": {"version": 12, "signature": "serving_default"},
    "version-zero": {"version": 0},
    "large-version": {"version": 2**40},
    "label": {"label": "canary", "signature": "metadata"},
}


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_model_spec_and_output_filter_bytes_match(spec):
    kwargs = SPECS[spec]
    filters = ["class_map", "confidence"]
    ours = wire.predict_request(wire.model_spec("deeplabv3", **kwargs), {}, filters)
    official = official_request(official_spec("deeplabv3", **kwargs), {}, filters)
    assert ours.SerializeToString() == official.SerializeToString()
    assert reparse(ours, predict_pb2.PredictRequest).model_spec == official.model_spec


def test_multi_input_request_bytes_match_deterministically():
    images, floats = frame(31, 17, batch=2), np.linspace(-1, 1, 12, dtype=np.float32)
    spec_kwargs = {"version": 4, "signature": "serving_default"}
    filters = ["confidence", "class_map"]
    # Insertion order differs between the two sides on purpose: only map order may differ.
    ours = wire.predict_request(
        wire.model_spec("deeplabv3", **spec_kwargs),
        {"images": images, "jpeg": JPEG_LIKE, "scale": floats},
        filters,
    )
    official = official_request(
        official_spec("deeplabv3", **spec_kwargs),
        {
            "scale": tf.make_tensor_proto(floats),
            "jpeg": tf.make_tensor_proto(JPEG_LIKE),
            "images": tf.make_tensor_proto(images),
        },
        filters,
    )
    assert ours.SerializeToString(deterministic=True) == official.SerializeToString(
        deterministic=True
    )


# --- 2. official -> ours -----------------------------------------------------------------------


TENSOR_CONTENT_CASES = [
    pytest.param(make, id=case)
    for case, make in NUMERIC_INPUTS.items()
    if case != "uint8-1080p"  # its round trip is test_1080p_frame_round_trip_is_exact
]


@pytest.mark.parametrize("make", TENSOR_CONTENT_CASES)
def test_official_request_decodes_like_make_ndarray(make):
    array = make()
    official = official_request(
        official_spec("deeplabv3", version=7, signature="serving_default"),
        {"images": tf.make_tensor_proto(array), "jpeg": tf.make_tensor_proto(JPEG_LIKE)},
        ["class_map"],
    )
    ours = reparse(official, pb.PredictRequest)

    assert ours.model_spec.name == "deeplabv3"
    assert ours.model_spec.WhichOneof("version_choice") == "version"
    assert ours.model_spec.version.value == 7
    assert ours.model_spec.signature_name == "serving_default"
    assert list(ours.output_filter) == ["class_map"]
    for key in ("images", "jpeg"):
        decoded = wire.decode_tensor(ours.inputs[key], key)
        assert_same_array(decoded, tf.make_ndarray(official.inputs[key]))
    assert_same_array(wire.decode_tensor(ours.inputs["images"]), array)


def test_official_version_label_parses():
    official = official_spec("deeplabv3", label="stable", signature="segment_jpeg")
    ours = reparse(official, pb.ModelSpec)
    assert ours.WhichOneof("version_choice") == "version_label"
    assert ours.version_label == "stable"
    assert not ours.HasField("version")


def _half_bits(values: list[float]) -> list[int]:
    return np.array(values, dtype=np.float16).view(np.uint16).tolist()


# Tensors as TF Serving sends them without --tensor_content (Tensor::AsProtoField), plus the
# "a short value list is padded with its last value" rule of TF.
TYPED_TENSORS: dict[str, Callable[[], tensor_pb2.TensorProto]] = {
    "uint8-int_val": lambda: official_typed(np.uint8, (1, 2, 3), "int_val", [0, 1, 15, 20, 0, 255]),
    "int32-int_val": lambda: official_typed(np.int32, (2, 2), "int_val", [-(2**31), -1, 0, 7]),
    "int8-int_val": lambda: official_typed(np.int8, (3,), "int_val", [-128, 0, 127]),
    "int16-int_val": lambda: official_typed(np.int16, (2,), "int_val", [-32768, 32767]),
    "uint16-int_val": lambda: official_typed(np.uint16, (2,), "int_val", [0, 65535]),
    "float32-float_val": lambda: official_typed(
        np.float32, (2, 2), "float_val", [0.5, -1, 3e38, 0]
    ),
    "float64-double_val": lambda: official_typed(np.float64, (2,), "double_val", [1e-300, -2.5]),
    "int64-int64_val": lambda: official_typed(np.int64, (3,), "int64_val", [-(2**63), 0, 2**62]),
    "uint32-uint32_val": lambda: official_typed(np.uint32, (2,), "uint32_val", [0, 2**32 - 1]),
    "uint64-uint64_val": lambda: official_typed(np.uint64, (2,), "uint64_val", [1, 2**64 - 1]),
    "bool-bool_val": lambda: official_typed(
        np.bool_, (2, 2), "bool_val", [True, False, False, True]
    ),
    "float16-half_val": lambda: official_typed(
        np.float16, (2, 2), "half_val", _half_bits([1.5, -2.0, 65504.0, 2**-24])
    ),
    "string-string_val": lambda: official_typed(tf.string, (3,), "string_val", JPEG_LIKE),
    "scalar-int_val": lambda: official_typed(np.int32, (), "int_val", [42]),
    "empty-shape": lambda: official_typed(np.uint8, (0, 3), "int_val", []),
    "fill-uint8-single": lambda: official_typed(np.uint8, (2, 3), "int_val", [7]),
    "fill-float-last": lambda: official_typed(np.float32, (5,), "float_val", [1.0, 2.5]),
    "fill-half-single": lambda: official_typed(np.float16, (2, 2), "half_val", _half_bits([0.25])),
    "fill-string-single": lambda: official_typed(tf.string, (2, 2), "string_val", [b"\xff\xd8"]),
    # make_tensor_proto's own typed output: single elements and bool.
    "make_tensor_proto-uint8-single": lambda: tf.make_tensor_proto(np.full((1, 1, 1), 3, np.uint8)),
    "make_tensor_proto-float16-single": lambda: tf.make_tensor_proto(np.float16(-0.5)),
    "make_tensor_proto-bool": lambda: tf.make_tensor_proto(np.array([[True], [False]])),
    "make_tensor_proto-uint16": lambda: tf.make_tensor_proto(np.arange(6, dtype=np.uint16)),
}


@pytest.mark.parametrize("case", TYPED_TENSORS, ids=str)
def test_official_typed_fields_decode_like_make_ndarray(case):
    official = predict_pb2.PredictResponse(model_spec=official_spec("deeplabv3", version=1))
    official.outputs["out"].CopyFrom(TYPED_TENSORS[case]())
    assert not official.outputs["out"].tensor_content  # the typed fields are what is tested

    outputs = wire.decode_outputs(reparse(official, pb.PredictResponse))

    assert list(outputs) == ["out"]
    assert_same_array(outputs["out"], tf.make_ndarray(official.outputs["out"]))


def test_single_value_fills_the_shape():
    official = official_typed(np.uint8, (2, 3), "int_val", [7])
    decoded = wire.decode_tensor(reparse(official, pb.TensorProto))
    assert_same_array(decoded, np.full((2, 3), 7, np.uint8))
    assert_same_array(decoded, tf.make_ndarray(official))


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.float32, tf.string], ids=["uint8", "float32", "string"]
)
def test_no_values_reads_as_zeros_like_tf(dtype):
    official = official_typed(dtype, (2, 3), "int_val", [])
    expected = tf.make_ndarray(official)
    if dtype is tf.string:  # TF's Python fills with str ''; string tensors hold bytes
        assert expected.tolist() == [[""] * 3] * 2
        expected = np.full((2, 3), b"", dtype=object)
    assert_same_array(wire.decode_tensor(reparse(official, pb.TensorProto)), expected)


def test_official_response_decodes_like_make_ndarray():
    class_map = _rng().integers(0, 21, (1, 48, 64), dtype=np.uint8)
    confidence = _rng().integers(0, 256, (1, 48, 64), dtype=np.uint8)
    official = predict_pb2.PredictResponse(
        model_spec=official_spec("deeplabv3", version=5, signature="serving_default")
    )
    official.outputs["class_map"].CopyFrom(tf.make_tensor_proto(class_map))
    official.outputs["confidence"].CopyFrom(tf.make_tensor_proto(confidence))

    ours = reparse(official, pb.PredictResponse)
    outputs = wire.decode_outputs(ours)

    assert ours.model_spec.version.value == 5
    assert ours.model_spec.signature_name == "serving_default"
    assert sorted(outputs) == ["class_map", "confidence"]
    assert_same_array(outputs["class_map"], class_map)
    assert_same_array(outputs["confidence"], tf.make_ndarray(official.outputs["confidence"]))


def test_official_model_status_parses():
    official = get_model_status_pb2.GetModelStatusResponse()
    official.model_version_status.add(
        version=3,
        state=get_model_status_pb2.ModelVersionStatus.AVAILABLE,
        status=status_pb2.StatusProto(error_code=error_codes_pb2.OK),
    )
    official.model_version_status.add(
        version=2,
        state=get_model_status_pb2.ModelVersionStatus.END,
        status=status_pb2.StatusProto(
            error_code=error_codes_pb2.NOT_FOUND, error_message="version 2 was unloaded"
        ),
    )

    ours = reparse(official, pb.GetModelStatusResponse)

    available, ended = ours.model_version_status
    assert (available.version, available.state) == (3, pb.ModelVersionStatus.AVAILABLE)
    assert available.status.error_code == pb.OK
    assert (ended.version, ended.state) == (2, pb.ModelVersionStatus.END)
    assert ended.status.error_code == pb.NOT_FOUND
    assert ended.status.error_message == "version 2 was unloaded"


def test_official_model_status_request_parses():
    official = get_model_status_pb2.GetModelStatusRequest(
        model_spec=official_spec("deeplabv3", version=9)
    )
    ours = reparse(official, pb.GetModelStatusRequest)
    assert (ours.model_spec.name, ours.model_spec.version.value) == ("deeplabv3", 9)


# --- 3. ours -> official -----------------------------------------------------------------------


ROUND_TRIP_INPUTS = {**NUMERIC_INPUTS, **HAND_BUILT_INPUTS}


@pytest.mark.parametrize("case", ROUND_TRIP_INPUTS, ids=str)
def test_our_request_parses_as_official(case):
    array = ROUND_TRIP_INPUTS[case]()
    ours = wire.predict_request(
        wire.model_spec("deeplabv3", version=2, signature="serving_default"),
        {"images": array, "jpeg": JPEG_LIKE},
        ["class_map", "confidence"],
    )

    official = reparse(ours, predict_pb2.PredictRequest)

    assert official.model_spec.name == "deeplabv3"
    assert official.model_spec.version.value == 2
    assert official.model_spec.signature_name == "serving_default"
    assert list(official.output_filter) == ["class_map", "confidence"]
    assert_same_array(tf.make_ndarray(official.inputs["images"]), array)
    assert tf.make_ndarray(official.inputs["jpeg"]).tolist() == JPEG_LIKE


def test_our_response_parses_as_official():
    class_map = _rng().integers(0, 21, (2, 9, 11), dtype=np.uint8)
    ours = pb.PredictResponse(model_spec=wire.model_spec("deeplabv3", version=6))
    wire.fill_tensor(ours.outputs["class_map"], class_map)
    wire.fill_tensor(ours.outputs["input_size"], np.array([513, 513], np.int32))
    wire.fill_tensor(ours.outputs["class_names"], [b"background", b"aeroplane"])

    official = reparse(ours, predict_pb2.PredictResponse)

    assert official.model_spec.version.value == 6
    assert_same_array(tf.make_ndarray(official.outputs["class_map"]), class_map)
    assert tf.make_ndarray(official.outputs["input_size"]).tolist() == [513, 513]
    assert tf.make_ndarray(official.outputs["class_names"]).tolist() == [
        b"background",
        b"aeroplane",
    ]


def test_our_model_status_parses_as_official():
    ours = pb.GetModelStatusResponse()
    ours.model_version_status.add(
        version=4,
        state=pb.ModelVersionStatus.AVAILABLE,
        status=pb.StatusProto(error_code=pb.FAILED_PRECONDITION, error_message="warming up"),
    )

    (official,) = reparse(ours, get_model_status_pb2.GetModelStatusResponse).model_version_status

    assert official.version == 4
    assert official.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert official.status.error_code == error_codes_pb2.FAILED_PRECONDITION
    assert official.status.error_message == "warming up"
    request = pb.GetModelStatusRequest(model_spec=wire.model_spec("deeplabv3", label="stable"))
    parsed = reparse(request, get_model_status_pb2.GetModelStatusRequest)
    assert parsed.model_spec.version_label == "stable"


# --- 4. descriptors: every field and enum value is the official one ----------------------------


# Our names whose official counterpart is not tensorflow.serving.<same name>.
OFFICIAL_NAMES = {
    "DataType": "tensorflow.DataType",
    "TensorShapeProto": "tensorflow.TensorShapeProto",
    "TensorProto": "tensorflow.TensorProto",
    "ErrorCode": "tensorflow.error.Code",
}


def official_name(full_name: str) -> str:
    """The official full name for one of our types (others, e.g. Int64Value, are shared)."""
    if not full_name.startswith(OUR_PACKAGE + "."):
        return full_name
    top, _, nested = full_name.removeprefix(OUR_PACKAGE + ".").partition(".")
    base = OFFICIAL_NAMES.get(top, f"tensorflow.serving.{top}")
    return f"{base}.{nested}" if nested else base


def _messages(descriptors) -> Iterator:
    for message in descriptors:
        yield message
        yield from _messages(message.nested_types)


OUR_MESSAGES = list(_messages(pb.DESCRIPTOR.message_types_by_name.values()))
OUR_ENUMS = list(pb.DESCRIPTOR.enum_types_by_name.values()) + [
    enum for message in OUR_MESSAGES for enum in message.enum_types
]
# Importing the official modules above put their descriptors in the default pool.
POOL = descriptor_pool.Default()


def test_every_message_is_checked():
    # Map entries and nested messages are compared too, not only the top-level messages.
    assert {message.full_name for message in OUR_MESSAGES} == {
        f"{OUR_PACKAGE}.{name}"
        for name in (
            "TensorShapeProto",
            "TensorShapeProto.Dim",
            "TensorProto",
            "ModelSpec",
            "PredictRequest",
            "PredictRequest.InputsEntry",
            "PredictResponse",
            "PredictResponse.OutputsEntry",
            "StatusProto",
            "GetModelStatusRequest",
            "ModelVersionStatus",
            "GetModelStatusResponse",
        )
    }
    assert {enum.full_name for enum in OUR_ENUMS} == {
        f"{OUR_PACKAGE}.{name}" for name in ("DataType", "ErrorCode", "ModelVersionStatus.State")
    }


@pytest.mark.parametrize("ours", OUR_MESSAGES, ids=lambda message: message.full_name)
def test_fields_match_official(ours):
    official = POOL.FindMessageTypeByName(official_name(ours.full_name))
    assert bool(ours.GetOptions().map_entry) == bool(official.GetOptions().map_entry)
    for field in ours.fields:
        theirs = official.fields_by_number.get(field.number)
        assert theirs is not None, f"{official.full_name} has no field number {field.number}"
        where = f"{ours.full_name}.{field.name} (#{field.number})"
        assert field.name == theirs.name, where
        assert field.type == theirs.type, where
        assert field.is_repeated == theirs.is_repeated, where
        assert field.is_packed == theirs.is_packed, where
        assert field.has_presence == theirs.has_presence, where
        oneof = field.containing_oneof
        their_oneof = theirs.containing_oneof
        assert (oneof and oneof.name) == (their_oneof and their_oneof.name), where
        if field.message_type is not None:
            assert official_name(field.message_type.full_name) == theirs.message_type.full_name
        if field.enum_type is not None:
            assert official_name(field.enum_type.full_name) == theirs.enum_type.full_name


def test_official_enum_modules_are_the_ones_compared():
    # The names official_name maps to are the enums of TensorFlow's own modules.
    assert POOL.FindEnumTypeByName("tensorflow.DataType") is types_pb2.DataType.DESCRIPTOR
    assert POOL.FindEnumTypeByName("tensorflow.error.Code") is error_codes_pb2.Code.DESCRIPTOR
    status_code = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type
    assert status_code is error_codes_pb2.Code.DESCRIPTOR


@pytest.mark.parametrize("ours", OUR_ENUMS, ids=lambda enum: enum.full_name)
def test_enum_values_match_official(ours):
    official = POOL.FindEnumTypeByName(official_name(ours.full_name))
    for value in ours.values:
        theirs = official.values_by_name.get(value.name)
        assert theirs is not None, f"{official.full_name} has no value {value.name}"
        assert value.number == theirs.number, value.name


# --- 5. no clash with TensorFlow's descriptors -------------------------------------------------


def _official_files() -> set[str]:
    seen: set[str] = set()
    stack = [
        module.DESCRIPTOR
        for module in (predict_pb2, get_model_status_pb2, model_pb2, status_pb2, tensor_pb2)
    ]
    while stack:
        file = stack.pop()
        if file.name not in seen:
            seen.add(file.name)
            stack.extend(file.dependencies)
    return seen


def test_our_descriptors_live_in_our_package():
    assert pb.DESCRIPTOR.package == OUR_PACKAGE
    assert pb.DESCRIPTOR.name == PROTO
    assert PROTO not in _official_files()
    assert "tensorflow/core/framework/tensor.proto" in _official_files()  # the walk works
    names = [d.full_name for d in OUR_MESSAGES + OUR_ENUMS]
    # (Enum values are scoped by their enum's package, so they are ours too.)
    assert all(name.startswith(OUR_PACKAGE + ".") for name in names)
    # Both sets are in the one default pool, each under its own name.
    assert POOL.FindFileByName(PROTO) is pb.DESCRIPTOR
    assert POOL.FindMessageTypeByName("tensorflow.TensorProto") is tensor_pb2.TensorProto.DESCRIPTOR


BOTH_IMPORTS = """
import sys
order = sys.argv[1:]
modules = {
    "ours": "client.proto.serving_wire_pb2",
    "official": "tensorflow_serving.apis.predict_pb2",
}
for which in order:
    __import__(modules[which])
from google.protobuf import descriptor_pool
pool = descriptor_pool.Default()
pool.FindMessageTypeByName("rc_segmentation.wire.PredictRequest")
pool.FindMessageTypeByName("tensorflow.serving.PredictRequest")
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("order", [("ours", "official"), ("official", "ours")], ids="-".join)
def test_one_process_imports_ours_and_tensorflows(order):
    result = subprocess.run(
        [sys.executable, "-c", BOTH_IMPORTS, *order],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


# --- 6. the generated module matches the .proto ------------------------------------------------


def test_generated_module_is_up_to_date(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            PROTO,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for suffix in ("_pb2.py", "_pb2.pyi"):
        generated = PROTO.removesuffix(".proto") + suffix
        fresh = (tmp_path / generated).read_bytes()
        committed = (REPO / generated).read_bytes()
        assert fresh == committed, f"{generated} is stale: run make protos"


# --- 7. errors name the problem ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "shape", "content", "message"),
    [
        (pb.DT_UINT8, (2, 3), b"\x00" * 5, "holds 5 bytes, expected 6"),
        (pb.DT_FLOAT, (2, 2), b"\x00" * 15, "holds 15 bytes, expected 16"),
        (pb.DT_INT64, (1,), b"\x00" * 16, "holds 16 bytes, expected 8"),
    ],
)
def test_wrong_tensor_content_length_names_the_byte_counts(dtype, shape, content, message):
    tensor = pb.TensorProto(
        dtype=dtype,
        tensor_shape=pb.TensorShapeProto(dim=[pb.TensorShapeProto.Dim(size=s) for s in shape]),
        tensor_content=content,
    )
    with pytest.raises(wire.WireError, match=f"images: tensor_content {message}"):
        wire.decode_tensor(tensor, "images")


@pytest.mark.parametrize(
    ("official", "name"),
    [
        (lambda: tf.make_tensor_proto(np.array([1 + 2j, 3j], np.complex64)), "#8"),
        (lambda: tf.make_tensor_proto(np.ones(3, tf.bfloat16.as_numpy_dtype)), "#14"),
        (lambda: tensor_pb2.TensorProto(dtype=types_pb2.DT_INVALID), "DT_INVALID"),
    ],
    ids=["complex64", "bfloat16", "invalid"],
)
def test_unknown_dtype_is_a_wire_error(official, name):
    ours = reparse(official(), pb.TensorProto)
    with pytest.raises(wire.WireError, match=f"dtype {name} is not one this client decodes"):
        wire.decode_tensor(ours)


def test_too_many_values_is_a_wire_error():
    ours = reparse(official_typed(np.uint8, (2, 3), "int_val", list(range(7))), pb.TensorProto)
    with pytest.raises(wire.WireError, match=r"int_val holds 7 values, shape \[2, 3\] has 6"):
        wire.decode_tensor(ours)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.array([b"jpeg", 3], dtype=object), "cannot send dtype object"),
        (np.zeros(2, np.complex64), "cannot send dtype complex64"),
        (["not bytes"], "expected a numpy array or a sequence of bytes"),
    ],
    ids=["object-array", "complex64", "str-list"],
)
def test_unencodable_values_are_wire_errors(value, message):
    with pytest.raises(wire.WireError, match=message):
        wire.encode_tensor(value)


def test_version_and_label_together_is_a_wire_error():
    with pytest.raises(wire.WireError, match="not both"):
        wire.model_spec("deeplabv3", version=1, label="stable")


# --- 8. the 1080p frame -------------------------------------------------------------------------


def test_1080p_frame_round_trip_is_exact():
    array = frame(1080, 1920)
    data = wire.predict_request(wire.model_spec("deeplabv3"), {"images": array}).SerializeToString()
    assert len(data) > 4 * 1024 * 1024  # why clients raise gRPC's default receive limit

    parsed = pb.PredictRequest()
    parsed.ParseFromString(data)
    decoded = wire.decode_tensor(parsed.inputs["images"], "images")

    assert decoded.shape == (1, 1080, 1920, 3)
    assert decoded.dtype == np.uint8
    assert np.array_equal(decoded, array)
    # A view of the message's bytes, not a copy: read-only and owning no memory.
    assert not decoded.flags.owndata
    assert not decoded.flags.writeable
    base = decoded
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, bytes)
    assert len(base) == array.nbytes


def test_typed_values_outside_the_dtype_are_a_wire_error():
    tensor = pb.TensorProto(dtype=pb.DT_UINT8, int_val=[300])
    tensor.tensor_shape.dim.add(size=1)
    with pytest.raises(wire.WireError, match="int_val holds values outside uint8"):
        wire.decode_tensor(tensor)


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [((1, 1080, 1920, 3), np.uint8), ((1, 37, 53, 3), np.uint8), ((0, 4), np.int64),
     ((2, 3), ">f4"), ((), np.int32), ((4,), np.bool_), ((2, 2), np.float16)],
)  # fmt: skip
def test_the_fast_request_encoder_writes_the_official_bytes(shape, dtype):
    """``encode_predict_request`` joins the pixels in by hand; the bytes must stay exactly what
    protobuf (ours and TF Serving's) writes, and the official message must parse them."""
    array = np.asarray(np.random.default_rng(0).random(shape) * 100).astype(dtype)
    spec = wire.model_spec("deeplabv3", version=3, signature="serving_default")
    inputs = {"images": array, "jpeg": [b"\xff\xd8 not really", b""]}
    fast = wire.encode_predict_request(spec, inputs, ["class_map", "confidence"])
    slow = wire.predict_request(spec, inputs, ["class_map", "confidence"])
    assert fast == slow.SerializeToString(deterministic=True)
    official = predict_pb2.PredictRequest.FromString(fast)
    np.testing.assert_array_equal(tf.make_ndarray(official.inputs["images"]), array)
    assert official.model_spec.version.value == 3


def test_the_fast_request_encoder_takes_views_and_no_inputs():
    frame = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(1, 6, 8, 3)[:, ::2, :, ::-1]
    spec = wire.model_spec("m")
    assert wire.encode_predict_request(spec, {"images": frame}) == (
        wire.predict_request(spec, {"images": frame}).SerializeToString()
    )
    empty = pb.PredictRequest(model_spec=spec).SerializeToString()
    assert wire.encode_predict_request(spec, {}) == empty
