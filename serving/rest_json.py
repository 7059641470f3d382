"""TF Serving's JSON for tensors (its ``util/json_tensor.cc``): a predict body's ``instances``
(row form) or ``inputs`` (columnar form) → the PredictRequest's TensorProtos, and a
PredictResponse's outputs → ``predictions`` or ``outputs``, with TF Serving's rules and
messages, so that the gRPC handlers answer REST calls unchanged.

    doc = parse_json(b'{"instances": [[[[0, 0, 0]]]]}')
    form, inputs = request_inputs(doc, signature_def)   # "instances" → Form.ROW
    request.inputs["images"].CopyFrom(inputs["images"])  # uint8 [1,1,1,3]
    body = response_json(response.outputs, form)         # {"predictions": [...]}

The rules, TF Serving's: a value's shape is read along its first elements and every list must
have that length; integer inputs take JSON integers, float inputs any number (``NaN`` and
``Infinity`` too), ``DT_STRING`` inputs JSON strings (UTF-8) or ``{"b64": "..."}`` for bytes
(``segment_jpeg``'s JPEGs); string outputs named ``*_bytes`` are written as ``{"b64": ...}``.
A value that fits the JSON type but not the dtype (300 for uint8) travels as ``int_val``, so
``serving.inputs.check_inputs`` rejects it with the gRPC message.

Left out of the columnar ``inputs`` object, an input the signature has a default for gets it
(``{"signature_name": "metadata", "inputs": {}}``), as over gRPC; TF Serving asks for every one.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import math
import re
from collections.abc import Mapping

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving.errors import ServingError, echo, invalid

T = types_pb2
# The JSON integers each dtype takes (rapidjson's IsInt, IsInt64, IsUint, IsUint64), and the
# TensorProto field TF Serving writes them to.
INT32_JSON = (-(2**31), 2**31 - 1)
JSON_INTS = {
    T.DT_INT8: INT32_JSON,
    T.DT_INT16: INT32_JSON,
    T.DT_INT32: INT32_JSON,
    T.DT_UINT8: INT32_JSON,
    T.DT_INT64: (-(2**63), 2**63 - 1),
    T.DT_UINT32: (0, 2**32 - 1),
    T.DT_UINT64: (0, 2**64 - 1),
}
# Whole numbers a float type holds exactly (TF Serving's IsLosslessDecimal).
EXACT_INTS = {T.DT_FLOAT: 2**24 - 1, T.DT_DOUBLE: 2**53 - 1}
FLOAT_MAX = float(np.finfo(np.float32).max)
FIELDS = {
    T.DT_FLOAT: "float_val",
    T.DT_DOUBLE: "double_val",
    T.DT_INT8: "int_val",
    T.DT_INT16: "int_val",
    T.DT_INT32: "int_val",
    T.DT_UINT8: "int_val",
    T.DT_INT64: "int64_val",
    T.DT_UINT32: "uint32_val",
    T.DT_UINT64: "uint64_val",
    T.DT_BOOL: "bool_val",
    T.DT_STRING: "string_val",
}
# numpy caps arrays at 64 dimensions; deeper nesting is no tensor (and no deep recursion here).
MAX_RANK = 64
B64 = "b64"
BYTES_SUFFIX = "_bytes"
# A \uD800-\uDFFF escape: only then can a string hold an unpaired surrogate.
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# What absl's Base64Unescape skips inside the text (absl::ascii_isspace): `base64`'s line breaks.
B64_SPACE = re.compile(r"[ \t\n\v\f\r]")


class Form(enum.Enum):
    """The request's form, which decides the answer's: rows in, rows out."""

    ROW = ("instances", "predictions")
    COLUMNAR = ("inputs", "outputs")

    @property
    def request_key(self) -> str:
        return self.value[0]

    @property
    def response_key(self) -> str:
        return self.value[1]


class _Bad(Exception):
    """A value that cannot become the tensor; the caller says where it was."""


def dtype_name(dtype: int) -> str:
    """TensorFlow's DataTypeString: ``uint8``, ``float``, ``string``."""
    return T.DataType.Name(dtype).removeprefix("DT_").lower()


def show(value: object) -> str:
    """A JSON value as a message echoes it (bounded: it may be a whole frame)."""
    return echo(json.dumps(value, separators=(",", ":"), allow_nan=True))


def _json_type(value: object) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    return {dict: "Object", list: "Array", str: "String"}.get(type(value), "Number")


def _type_error(value: object, dtype: int) -> _Bad:
    return _Bad(
        f"JSON Value: {show(value)} Type: {_json_type(value)} is not of expected type: "
        f"{dtype_name(dtype)}"
    )


def parse_json(body: bytes) -> dict:
    """The request body as a JSON object, read as TF Serving's rapidjson reads it: UTF-8,
    ``NaN`` and ``Infinity`` allowed. What Python's reader alone would take (UTF-16 and UTF-32,
    unpaired surrogates, integers past its 4,300 digits) is a parse error too, so a body that
    TF Serving refuses gets INVALID_ARGUMENT here, not an exception later (500)."""
    if not body or body.isspace():
        raise invalid("JSON Parse error: The document is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid(
            f"JSON Parse error: Invalid encoding in string. ({error.reason}) at offset: "
            f"{error.start}"
        ) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as error:
        raise invalid(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
    except ValueError:  # int(): more digits than Python converts
        raise invalid("JSON Parse error: Number too big to be stored in double.") from None
    except RecursionError:
        raise invalid("JSON Parse error: nested too deeply") from None
    if SURROGATE_ESCAPE.search(text) and not _encodable(doc):
        raise invalid("JSON Parse error: The surrogate pair in string is invalid.")
    if not isinstance(doc, dict):
        raise invalid(f"JSON Value: {show(doc)} Is not object")
    return doc


def _encodable(doc: object) -> bool:
    """Whether every string of ``doc`` is UTF-8 (json.loads keeps an unpaired ``\\ud800``)."""
    try:
        json.dumps(doc, ensure_ascii=False, allow_nan=True).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def signature_name(doc: dict) -> str:
    """The optional ``signature_name`` ("" when absent: the handler's default)."""
    name = doc.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid(
            f"JSON Value: {show(doc)} not formatted correctly. 'signature_name' key must be a "
            "string value."
        )
    return name


def _is_b64(value: object) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(B64), str)


def _decode_b64(value: object) -> bytes:
    if not _is_b64(value):
        raise _Bad(f"JSON Value: {show(value)} not formatted correctly for base64 data")
    text = B64_SPACE.sub("", value[B64])
    try:  # padding may be left out, as absl's Base64Unescape allows
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _Bad("Unable to base64 decode") from None


def _lossless(value: int | float, dtype: int) -> bool:
    if isinstance(value, int):
        return abs(value) <= EXACT_INTS[dtype]
    return dtype == T.DT_DOUBLE or not math.isfinite(value) or abs(value) <= FLOAT_MAX


def _leaf(value: object, dtype: int) -> object:
    """One scalar of the tensor, checked as TF Serving's AddValueToTensor does."""
    if dtype == T.DT_STRING:
        if isinstance(value, dict):
            return _decode_b64(value)
        if isinstance(value, str):
            return value.encode()
        raise _type_error(value, dtype)
    if isinstance(value, dict):
        raise _type_error(value, dtype)
    if dtype == T.DT_BOOL:
        if isinstance(value, bool):
            return value
        raise _type_error(value, dtype)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(value, dtype)
    if dtype in EXACT_INTS:
        if not _lossless(value, dtype):
            raise _Bad(
                f"Cannot convert JSON value: {show(value)} to {dtype_name(dtype)} without loss "
                "of precision."
            )
        return value
    if dtype in JSON_INTS:
        low, high = JSON_INTS[dtype]
        if isinstance(value, int) and low <= value <= high:
            return value
        raise _type_error(value, dtype)
    raise ServingError(
        grpc.StatusCode.UNIMPLEMENTED,
        f"Conversion of JSON Value: {show(value)} to type: {dtype_name(dtype)}",
    )


def _dense_shape(value: object) -> list[int]:
    """The shape read along first elements (TF Serving's GetDenseTensorShape)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if len(shape) > MAX_RANK:
            raise _Bad(f"JSON Value: {show(value)} is nested deeper than {MAX_RANK} lists")
        if not value:
            break
        value = value[0]
    return shape


def _fill(value: object, level: int, shape: list[int], dtype: int, out: list) -> None:
    """Every scalar of ``value`` into ``out``, or TF Serving's message for the first that is
    at the wrong depth, in a list of the wrong length, or of the wrong type."""
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise _Bad(
                f"JSON Value: {show(value)} found at incorrect level: {level + 1} in the JSON "
                f"DOM. Expected at level: {rank}"
            )
        out.append(_leaf(value, dtype))
        return
    if level >= rank:
        raise _Bad(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise _Bad(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected "
            f"size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, out)


def _holder(dtype: int) -> type:
    """The numpy type that holds every JSON value ``dtype`` takes, exactly. Not numpy's own
    choice: it reads int64 and uint64 values mixed (``[0, 18446744073709551615]``) as float64,
    which rounds large integers, and rows read apart would stack into that too."""
    if dtype == T.DT_BOOL:
        return np.bool_
    if dtype == T.DT_UINT64:
        return np.uint64
    return np.int64 if dtype in JSON_INTS else np.float64


def _fits(array: np.ndarray, dtype: int) -> bool:
    """Whether numpy's reading of a JSON value holds only values ``dtype`` takes: booleans for
    bool, integers in the JSON range for integer types, for float types whole numbers they hold
    exactly and any other number within their range (``NaN`` and ``±Infinity`` too)."""
    kind = array.dtype.kind
    if dtype == T.DT_BOOL:
        return kind == "b"
    if dtype in JSON_INTS:
        low, high = JSON_INTS[dtype]
        return kind in "iu" and low <= array.min() and array.max() <= high
    if kind in "iu":
        return -EXACT_INTS[dtype] <= array.min() and array.max() <= EXACT_INTS[dtype]
    if kind != "f" or dtype == T.DT_DOUBLE:
        return kind == "f"
    finite = array[np.isfinite(array)]
    return finite.size == 0 or np.abs(finite).max() <= FLOAT_MAX


def _fast_numbers(value: object, dtype: int, shape: list[int]) -> np.ndarray | None:
    """numpy's reading of a numeric value when it is a well-formed one (a frame of a million
    numbers in a tenth of a second, where ``_fill`` takes a second); None sends it through
    ``_fill`` for the exact message."""
    if dtype not in JSON_INTS and dtype not in EXACT_INTS and dtype != T.DT_BOOL:
        return None
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError):  # ragged lists, mixed types
        return None
    if list(array.shape) != shape:
        return None
    if array.size and not _fits(array, dtype):
        return None
    return array.astype(_holder(dtype), copy=False)


def _values(value: object, dtype: int) -> np.ndarray:
    """The scalars of one JSON tensor, shaped: numbers in ``_holder(dtype)``, strings as bytes
    objects."""
    shape = _dense_shape(value)
    array = None if dtype == T.DT_STRING else _fast_numbers(value, dtype, shape)
    if array is not None:
        return array
    flat: list = []
    _fill(value, 0, shape, dtype, flat)
    if dtype == T.DT_STRING:
        return _objects(flat, shape)
    return np.array(flat, dtype=_holder(dtype)).reshape(shape)


def _objects(flat: list, shape) -> np.ndarray:
    """An object array of ``flat`` (bytes, dicts: numpy must not read them as sequences)."""
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _tensor(array: np.ndarray, dtype: int) -> tensor_pb2.TensorProto:
    """The TensorProto the handlers get: ``tensor_content`` when every value fits the dtype;
    otherwise TF Serving's typed field, whose out-of-range values the input checks name."""
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in array.shape]
    shape = tensor_shape_pb2.TensorShapeProto(dim=dims)
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape)
    if dtype == T.DT_STRING:
        proto.string_val.extend(array.reshape(-1).tolist())
        return proto
    target = tf.dtypes.as_dtype(dtype).as_numpy_dtype
    if array.dtype.kind in "iu" and array.size and np.dtype(target).kind in "iu":
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            getattr(proto, FIELDS[dtype]).extend(array.reshape(-1).tolist())
            return proto
    proto.tensor_content = np.ascontiguousarray(array, dtype=target).tobytes()
    return proto


def _plain_input(infos: Mapping[str, meta_graph_pb2.TensorInfo], defaults) -> str | None:
    """The input a plain (unnamed) value is for: the signature's one input, or, a leniency of
    ours, its one input without a default (``images`` beside an optional ``output_size``, so
    clients from before that input keep working; TF Serving refuses them)."""
    if len(infos) == 1:
        return next(iter(infos))
    required = [name for name in infos if name not in defaults]
    return required[0] if len(required) == 1 else None


def _columns(value: object, infos: Mapping[str, meta_graph_pb2.TensorInfo], defaults) -> dict:
    """The ``inputs`` value: one tensor (a signature of one input), or an object of them."""
    if not isinstance(value, dict) or _is_b64(value):
        name = _plain_input(infos, defaults)
        if name is None:
            raise invalid(
                "inputs is a plain value/list, but expecting an object as multiple input "
                "tensors required as per tensorinfo_map"
            )
        return {name: _converted(value, infos[name].dtype)}
    tensors = {}
    for name, info in sorted(infos.items()):
        if name not in value:
            if name in defaults:
                continue
            raise invalid(f"Missing named input: {echo(name)} in 'inputs' object.")
        tensors[name] = _converted(value[name], info.dtype)
    return tensors


def _converted(value: object, dtype: int) -> tensor_pb2.TensorProto:
    try:
        return _tensor(_values(value, dtype), dtype)
    except _Bad as error:
        raise invalid(str(error)) from None


def _is_named(value: object) -> bool:
    return isinstance(value, dict) and not _is_b64(value)


def _rows(instances: list, infos: Mapping[str, meta_graph_pb2.TensorInfo], defaults) -> dict:
    """The ``instances`` list: each item one row of every input (an object of named inputs,
    or the one input's value), all rows of an input the same shape; stacked on axis 0.
    Inputs with a default may be left out of every row (as of the ``inputs`` object)."""
    plain_name = _plain_input(infos, defaults)
    if not _is_named(instances[0]) and plain_name is None:
        raise invalid(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            "required as per tensorinfo_map"
        )
    named = _is_named(instances[0])
    rows: dict[str, list[np.ndarray]] = {}

    def add(item: object, name: str, index: int, key: str) -> None:
        where = f"Failed to process element: {index}{key} of 'instances' list. Error: "
        try:
            if name not in infos:
                raise _Bad(f"JSON object: does not have named input: {echo(name)}")
            array = _values(item, infos[name].dtype)
            seen = rows.setdefault(name, [])
            if seen and seen[0].size != array.size:
                raise _Bad(f"Expecting tensor size: {seen[0].size} but got: {array.size}")
            if seen and seen[0].shape != array.shape:
                raise _Bad(
                    f"Expecting shape {_shape_text(seen[0].shape)} but got: "
                    f"{_shape_text(array.shape)}"
                )
            seen.append(array)
        except _Bad as error:
            raise invalid(f"{where}INVALID_ARGUMENT: {error}") from None

    for index, item in enumerate(instances):
        if named != _is_named(item):
            got, wanted = ("list", "object") if named else ("object", "value/list")
            raise invalid(f"Expecting {wanted} but got {got} at item {index} of input list")
        if not named:
            add(item, plain_name, index, "")
            continue
        for key, value in item.items():
            add(value, key, index, f" key: {echo(key)}")
        keys = set(item)
        required = {n for n in infos if n not in defaults}
        if not required <= keys <= set(infos) or keys != set(instances[0]):
            raise invalid(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{show(item)} must only have keys: {','.join(sorted(infos))}"
            )
    return {name: _tensor(np.stack(arrays), infos[name].dtype) for name, arrays in rows.items()}


def request_inputs(
    doc: dict, signature: meta_graph_pb2.SignatureDef, name: str = ""
) -> tuple[Form, dict[str, tensor_pb2.TensorProto]]:
    """The request's form and its input tensors (TF Serving's FillPredictRequestFromJson);
    ``name`` is the signature's, for the message when it has no inputs."""
    infos = signature.inputs
    if not infos:
        raise invalid(f"Failed to get input map for signature: {echo(name or 'DEFAULT')}")
    has_rows, has_columns = "instances" in doc, "inputs" in doc
    if has_rows and has_columns:
        raise invalid(
            f"JSON Value: {show(doc)} Not formatted correctly expecting only one of 'inputs' or "
            "'instances' keys to exist "
        )
    if has_rows:
        instances = doc["instances"]
        if not isinstance(instances, list):
            raise invalid(f"JSON Value: {show(doc)} Excepting 'instances' to be an list/array")
        if not instances:
            raise invalid(f"JSON Value: {show(doc)} No values in 'instances' array")
        return Form.ROW, _rows(instances, infos, signature.defaults)
    if has_columns:
        return Form.COLUMNAR, _columns(doc["inputs"], infos, signature.defaults)
    raise invalid("Missing 'inputs' or 'instances' key")


def _json_values(name: str, proto: tensor_pb2.TensorProto) -> object:
    """An output tensor as nested lists of JSON values."""
    array = tf.make_ndarray(proto)
    if proto.dtype == T.DT_STRING:
        if name.endswith(BYTES_SUFFIX):
            convert = lambda b: {B64: base64.b64encode(b).decode("ascii")}  # noqa: E731
        else:
            convert = lambda b: b.decode("utf-8", "replace")  # noqa: E731
        return _objects([convert(b) for b in array.reshape(-1)], array.shape).tolist()
    if array.dtype == np.float32:  # float32's shortest form (0.2, not 0.20000000298023224)
        flat = [float(str(v)) for v in array.reshape(-1)]
        return np.array(flat, dtype=np.float64).reshape(array.shape).tolist()
    return array.tolist()


def response_json(outputs: Mapping[str, tensor_pb2.TensorProto], form: Form) -> dict:
    """``{"predictions": [...]}`` for rows (one output: its rows; several: an object per row),
    ``{"outputs": ...}`` for columns (one output: its value; several: an object of them)."""
    if not outputs:
        raise invalid("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if form is Form.COLUMNAR:
        values = {name: _json_values(name, outputs[name]) for name in names}
        return {form.response_key: values if len(names) > 1 else values[names[0]]}
    batch = 0
    for name in names:
        dims = [d.size for d in outputs[name].tensor_shape.dim]
        if not dims:
            raise invalid(f"Tensor name: {name} has no shape information ")
        if dims[0] < 1:
            raise invalid(f"Tensor name: {name} has invalid batch size: {dims[0]}")
        if batch and dims[0] != batch:
            raise invalid(
                f"Tensor name: {name} has inconsistent batch size: {dims[0]} expecting: {batch}"
            )
        batch = dims[0]
    values = {name: _json_values(name, outputs[name]) for name in names}
    if len(names) == 1:
        return {form.response_key: values[names[0]]}
    rows = [{name: values[name][row] for name in names} for row in range(batch)]
    return {form.response_key: rows}
