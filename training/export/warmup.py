"""Warmup records TF Serving replays when it loads a version, so no user request pays for it.

TF Serving reads ``assets.extra/tf_serving_warmup_requests``: a TFRecord file of
``PredictionLog`` messages (official ``tensorflow_serving.apis`` protos). Graph optimization,
oneDNN/cuDNN algorithm choice and memory pools happen per input shape and per set of
requested outputs, so the records hold camera-sized frames: one raw frame per size for
``serving_default`` (optionally batches of the first size, the sizes TF Serving's batching pads
to), one JPEG for ``segment_jpeg``, and each of those again with ``output_filter`` =
class_map (what the edge client asks for by default).

    write_warmup_requests("models/deeplabv3/.export-3/", "deeplabv3")
    [log.predict_log.request.model_spec.signature_name
     for log in read_warmup_requests("models/deeplabv3/3")]
    # → ['serving_default', 'serving_default', 'segment_jpeg',
    #    'serving_default', 'serving_default', 'segment_jpeg']
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from client import contract
from client.contract import SEGMENT
from training.config import ExportOptions, default_of
from training.data.synth import synthetic_frame

# VGA and 720p: what small robot cameras deliver (height, width).
DEFAULT_WARMUP_SIZES: tuple[tuple[int, int], ...] = ((480, 640), (720, 1280))
# Batches of the first size: none by default. Measured on this CPU with the book's model:
# after replaying batches of 2/4/8 VGA frames, batch-1 requests ran ~15 % slower for the rest of
# the process (benchmarks/serving_overhead.py: 1.17× in-process with them, 1.00× without).
# GPU servers that batch (models/batching.config) may want them: `export --warmup-batches 2,4,8`.
DEFAULT_WARMUP_BATCHES: tuple[int, ...] = default_of(ExportOptions, "warmup_batches")


def encode_rgb(frame: np.ndarray, extension: str = ".jpg") -> bytes:
    """An RGB uint8 frame as JPEG/PNG bytes (OpenCV encodes BGR, hence the conversion)."""
    ok, data = cv2.imencode(extension, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {frame.shape} frame as {extension}")
    return data.tobytes()


def _request(model_name: str, signature: str, name: str, tensor) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
    )
    request.inputs[name].CopyFrom(tf.make_tensor_proto(tensor))
    if len(tensor) > 1 and contract.OUTPUT_SIZE in contract.SIGNATURES[signature].inputs:
        # TF Serving's batching needs every input to have the frames' dimension 0; the
        # default output size has one row, so a batch sends one row per frame.
        rows = np.zeros((len(tensor), 2), np.int32)
        request.inputs[contract.OUTPUT_SIZE].CopyFrom(tf.make_tensor_proto(rows))
    return request


def _class_map_only(request: predict_pb2.PredictRequest) -> predict_pb2.PredictRequest:
    copy = predict_pb2.PredictRequest()
    copy.CopyFrom(request)
    copy.output_filter.append(contract.CLASS_MAP)
    return copy


def warmup_requests(
    model_name: str,
    sizes: Sequence[tuple[int, int]] = DEFAULT_WARMUP_SIZES,
    batch_sizes: Sequence[int] = DEFAULT_WARMUP_BATCHES,
) -> list[prediction_log_pb2.PredictionLog]:
    """One raw ``serving_default`` frame per size, batches of the first size, one JPEG of the
    first size, then each of those again asking for the class map alone."""
    frames = [synthetic_frame(height, width) for height, width in sizes]
    requests = [_request(model_name, SEGMENT.name, contract.IMAGES, f[None]) for f in frames]
    # Batching pads batches to its allowed sizes: each is a shape of its own to warm up.
    first = frames[0]
    requests += [
        _request(model_name, SEGMENT.name, contract.IMAGES, np.stack([first] * size))
        for size in batch_sizes
    ]
    jpeg = np.array([encode_rgb(first, ".jpg")], dtype=object)
    requests.append(_request(model_name, contract.SEGMENT_JPEG.name, contract.JPEG, jpeg))
    # The edge client asks for the class map alone (output_filter): another set of fetches,
    # which TF Serving and the embedded server prune and prepare separately.
    requests += [_class_map_only(request) for request in requests]
    return [
        prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
        for request in requests
    ]


def write_warmup_requests(
    saved_model_dir: str | Path,
    model_name: str,
    sizes: Sequence[tuple[int, int]] = DEFAULT_WARMUP_SIZES,
    batch_sizes: Sequence[int] = DEFAULT_WARMUP_BATCHES,
) -> Path:
    """Writes the records into ``<saved_model_dir>/assets.extra/``; returns the file."""
    path = Path(saved_model_dir) / contract.WARMUP_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for log in warmup_requests(model_name, sizes, batch_sizes):
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(saved_model_dir: str | Path) -> list[prediction_log_pb2.PredictionLog]:
    """The PredictionLog records of a version folder, in file order."""
    path = Path(saved_model_dir) / contract.WARMUP_PATH
    logs = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        logs.append(prediction_log_pb2.PredictionLog.FromString(record))
    return logs
