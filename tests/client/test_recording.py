"""Drives recorded as MCAP: ``python -m client record`` and ``view --record`` in fresh
processes against the real embedded server, and ``DriveRecorder`` from Python; every file is
read back with the mcap reader (protobuf messages decoded from the schemas in the file)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_protobuf.decoder import DecoderFactory

from client import SegmentationClient, SegmentationStream
from client.cli import main
from client.recording import (
    CLASS_MAP_TOPIC,
    CONFIDENCE_TOPIC,
    COSTMAP_TOPIC,
    IMAGE_TOPIC,
    LATENCY_TOPIC,
    OVERLAY_TOPIC,
    DriveRecorder,
)
from client.stream import LatestFrameSource
from client.synthetic import synthetic_frames
from tests.client.test_cli import run_client
from tests.helpers import free_port

SCHEMAS = {
    IMAGE_TOPIC: ("foxglove.CompressedImage", "protobuf"),
    OVERLAY_TOPIC: ("foxglove.CompressedImage", "protobuf"),
    CLASS_MAP_TOPIC: ("foxglove.RawImage", "protobuf"),
    CONFIDENCE_TOPIC: ("foxglove.RawImage", "protobuf"),
    COSTMAP_TOPIC: ("foxglove.Grid", "protobuf"),
    LATENCY_TOPIC: ("rc_segmentation.FrameLatency", "jsonschema"),
}


def read_drive(path: Path) -> dict:
    """Channels (topic → schema name, schema encoding, count), metadata and every message
    decoded, by topic, in log-time order."""
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        counts = summary.statistics.channel_message_counts
        channels = {
            channel.topic: (
                summary.schemas[channel.schema_id].name,
                summary.schemas[channel.schema_id].encoding,
                counts[channel.id],
            )
            for channel in summary.channels.values()
        }
        metadata = {record.name: record.metadata for record in reader.iter_metadata()}
        messages: dict[str, list] = {}
        for _, channel, message in reader.iter_messages(log_time_order=True):
            messages.setdefault(channel.topic, []).append(message)
    decoded = {}
    with path.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, channel, _, proto in reader.iter_decoded_messages(
            topics=[t for t in channels if t != LATENCY_TOPIC], log_time_order=True
        ):
            decoded.setdefault(channel.topic, []).append(proto)
    latency = [json.loads(m.data) for m in messages.get(LATENCY_TOPIC, [])]
    return {
        "channels": channels,
        "metadata": metadata,
        "messages": messages,
        "decoded": decoded,
        "latency": latency,
    }


def test_record_writes_frames_maps_costmaps_and_latency_for_foxglove(target, tmp_path):
    out, picture = tmp_path / "drive.mcap", tmp_path / "costmaps.png"
    done = run_client(
        "record", "--target", target, "--source", "synthetic", "--size", "96x128",
        "--frames", "6", "--out", str(out), "--picture", str(picture),
        "--camera-height", "0.3", "--camera-pitch", "12", "--resolution", "0.1",
        "--ahead", "5", "--side", "2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "6 frames, 6 costmaps" in done.stdout
    drive = read_drive(out)
    assert drive["channels"] == {topic: (*schema, 6) for topic, schema in SCHEMAS.items()}

    # Every message of a frame is stamped with its capture time: log time = the message's own
    # timestamp; publish time = when the answer came back; frames in order.
    stamps = [m.log_time for m in drive["messages"][IMAGE_TOPIC]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 6
    for topic in SCHEMAS:
        assert [m.log_time for m in drive["messages"][topic]] == stamps, topic
    for topic, protos in drive["decoded"].items():
        assert [p.timestamp.ToNanoseconds() for p in protos] == stamps, topic
    for message, latency in zip(drive["messages"][LATENCY_TOPIC], drive["latency"], strict=True):
        assert latency["ok"] and latency["rpc_ms"] > 0
        publish_minus_log = (message.publish_time - message.log_time) / 1e6
        assert latency["latency_ms"] == pytest.approx(publish_minus_log, abs=0.01)

    image = drive["decoded"][IMAGE_TOPIC][0]
    assert image.format == "jpeg" and image.frame_id == "camera"
    frame = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape == (96, 128, 3)
    class_map = drive["decoded"][CLASS_MAP_TOPIC][0]
    assert (class_map.encoding, class_map.width, class_map.height, class_map.step) == (
        "mono8", 128, 96, 128,
    )  # fmt: skip
    assert len(class_map.data) == 96 * 128

    grid = drive["decoded"][COSTMAP_TOPIC][0]
    assert grid.frame_id == "base_link" and grid.column_count == 50  # 5 m at 0.1 m
    assert (grid.cell_size.x, grid.cell_size.y, grid.row_stride, grid.cell_stride) == (
        0.1, 0.1, 50, 1,
    )  # fmt: skip
    assert (grid.pose.position.x, grid.pose.position.y, grid.pose.orientation.w) == (0, -2, 1)
    [field] = grid.fields
    assert (field.name, field.offset, field.type) == ("cost", 0, field.INT8)
    cells = np.frombuffer(grid.data, np.int8)
    assert cells.size == 50 * 40 and set(np.unique(cells)) <= {-1, 0, 99, 100}

    model = drive["metadata"]["model"]
    with SegmentationClient(target) as client:
        assert json.loads(model["class_names"]) == list(client.metadata().class_names)
    setup = drive["metadata"]["costmap"]
    assert json.loads(setup["mount"])["height_m"] == 0.3
    assert json.loads(setup["image_size"]) == [96, 128]
    sheet = cv2.imread(str(picture))
    assert sheet is not None and sheet.shape[0] >= 4 * 240


def test_view_records_the_drive_it_shows(target, tmp_path):
    out, drive_path = tmp_path / "overlay.mp4", tmp_path / "drive.mcap"
    done = run_client(
        "view", "--target", target, "--source", "synthetic", "--size", "96x128",
        "--frames", "4", "--out", str(out), "--record", str(drive_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    channels = read_drive(drive_path)["channels"]
    assert channels[COSTMAP_TOPIC] == ("foxglove.Grid", "protobuf", 4)
    assert channels[IMAGE_TOPIC][2] == channels[CONFIDENCE_TOPIC][2] == 4


def test_a_drive_recorded_from_python_keeps_failed_frames(target, tmp_path):
    """Answered frames from the server, then a frame no server answered: it keeps its image
    and latency (with the error), and has no class map or costmap."""
    path = tmp_path / "drive.mcap"
    results = []
    with SegmentationClient(target) as client:
        metadata = client.metadata()
        with LatestFrameSource(synthetic_frames(2, size=(64, 80)), latest_only=False) as source:
            results += SegmentationStream(client, source, confidence=True)
    nobody = SegmentationClient(f"127.0.0.1:{free_port()}", timeout=0.3, connect_timeout=0.2)
    with nobody, LatestFrameSource(synthetic_frames(1, size=(64, 80))) as source:
        results += SegmentationStream(nobody, source)
    assert [r.ok for r in results] == [True, True, False]

    with DriveRecorder(path, metadata=metadata) as recorder:
        for result in results:
            recorder.write(result)  # no costmap: the costmap channel stays out
    drive = read_drive(path)
    counts = {topic: count for topic, (_, _, count) in drive["channels"].items()}
    assert counts == {
        IMAGE_TOPIC: 3, OVERLAY_TOPIC: 2, CLASS_MAP_TOPIC: 2, CONFIDENCE_TOPIC: 2, LATENCY_TOPIC: 3,
    }  # fmt: skip
    failed = drive["latency"][-1]
    assert failed["ok"] is False and failed["error"] and "rpc_ms" not in failed
    assert [m["frame"] for m in drive["latency"]] == [0, 1, 0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "drive.mp4"], "--out/--record drive.mp4: the drive is an MCAP file"),
        (["--out", "d.mcap", "--picture", "c.jpg"], "--picture c.jpg: the picture is a PNG"),
    ],
)
def test_record_names_bad_output_paths(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["record", "--target", "127.0.0.1:1", *args]) == 1
    assert message in capsys.readouterr().err


def test_record_names_a_bad_intrinsics_flag(capsys):
    with pytest.raises(SystemExit):
        main(["record", "--target", "127.0.0.1:1", "--out", "d.mcap", "--camera-k", "500,500,320"])
    assert "--camera-k: expected 4 comma-separated numbers, got '500,500,320'" in (
        capsys.readouterr().err
    )


def test_recorder_names_a_bad_jpeg_quality(tmp_path):
    with pytest.raises(ValueError, match="jpeg_quality=101"):
        DriveRecorder(tmp_path / "d.mcap", jpeg_quality=101)
