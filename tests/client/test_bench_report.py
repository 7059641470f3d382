"""The latency benchmark's statistics and output files, from hand-built timings."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from client.bench_report import (
    STAGES,
    FrameTiming,
    ProgressLine,
    format_table,
    summarize,
    write_csv,
    write_json,
    write_plot,
    write_results,
)

NAN = float("nan")
SETTINGS = {"target": "127.0.0.1:8500", "frames": 12, "size": (480, 640)}


def ok_frame(index: int, latency: float, completed_at: float | None = None) -> FrameTiming:
    return FrameTiming(
        index=index,
        ok=True,
        latency=latency,
        capture_wait=latency * 0.1,
        encode=latency * 0.2,
        rpc=latency * 0.6,
        decode=latency * 0.1,
        request_bytes=1000 + index,
        response_bytes=300 + index,
        completed_at=completed_at if completed_at is not None else 0.1 * (index + 1),
    )


def failed_frame(index: int, completed_at: float, error: str = "UNAVAILABLE: no server"):
    # A failure after encoding: the RPC ran until it failed, decode never ran.
    return FrameTiming(
        index=index,
        ok=False,
        latency=0.001,
        capture_wait=0.0001,
        encode=0.0004,
        rpc=0.0005,
        decode=NAN,
        request_bytes=5000,
        response_bytes=0,
        completed_at=completed_at,
        error=error,
    )


# Latencies chosen so the percentiles fall between samples (linear interpolation matters).
LATENCIES = [0.031, 0.012, 0.045, 0.020, 0.017, 0.090, 0.025, 0.014, 0.033, 0.060]


@pytest.fixture
def timings() -> list[FrameTiming]:
    frames = [ok_frame(i, latency) for i, latency in enumerate(LATENCIES)]
    frames.insert(3, failed_frame(100, 0.35))
    frames.append(failed_frame(101, 1.2, error="DEADLINE_EXCEEDED"))
    return frames


def test_percentiles_match_numpy_over_ok_frames(timings):
    summary = summarize(timings, dropped=2, wall_seconds=2.0, settings=SETTINGS)
    ms = np.array(LATENCIES) * 1000
    stats = summary["stages_ms"]["latency"]
    assert stats["p50"] == pytest.approx(np.percentile(ms, 50))
    assert stats["p90"] == pytest.approx(np.percentile(ms, 90))
    assert stats["p99"] == pytest.approx(np.percentile(ms, 99))
    assert stats["max"] == pytest.approx(90.0)
    assert stats["mean"] == pytest.approx(ms.mean())
    # Known values by hand: sorted [12,14,17,20,25,31,33,45,60,90]; p50 = (25+31)/2,
    # p90 at rank 8.1 = 60 + 0.1 * 30.
    assert stats["p50"] == pytest.approx(28.0)
    assert stats["p90"] == pytest.approx(63.0)
    assert stats["p99"] == pytest.approx(60 + 0.91 * 30)
    assert summary["stages_ms"]["rpc"]["p50"] == pytest.approx(np.percentile(ms * 0.6, 50))
    assert set(summary["stages_ms"]) == set(STAGES)


def test_failed_frames_counted_but_not_in_latency(timings):
    summary = summarize(timings, dropped=2, wall_seconds=2.0, settings=SETTINGS)
    assert summary["counts"] == {"ok": 10, "failed": 2, "dropped": 2}
    assert summary["fps"] == pytest.approx(10 / 2.0)
    # The failed frames' 1 ms latency would be the minimum; it must not pull p50 down.
    assert summary["stages_ms"]["latency"]["p50"] == pytest.approx(28.0)
    assert summary["bytes_per_frame"]["request"] == pytest.approx(1000 + 4.5)
    assert summary["bytes_per_frame"]["response"] == pytest.approx(300 + 4.5)
    assert summary["errors"] == {"UNAVAILABLE: no server": 1, "DEADLINE_EXCEEDED": 1}
    assert summary["settings"] == {"target": "127.0.0.1:8500", "frames": 12, "size": [480, 640]}
    json.dumps(summary, allow_nan=False)


def test_empty_input_gives_none_not_a_crash(tmp_path):
    summary = summarize([], dropped=0, wall_seconds=0.0, settings={})
    assert summary["counts"] == {"ok": 0, "failed": 0, "dropped": 0}
    assert summary["fps"] is None
    assert summary["bytes_per_frame"] == {"request": None, "response": None}
    for stage in STAGES:
        assert set(summary["stages_ms"][stage].values()) == {None}
    table = format_table(summary)
    assert "latency" in table and "failed frames: 0" in table
    json.loads(write_json(summary, [], tmp_path / "empty.json").read_text())
    assert write_csv([], tmp_path / "empty.csv").read_text().count("\n") == 1  # header only
    assert write_plot([], tmp_path / "empty.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_only_failed_frames(tmp_path):
    frames = [failed_frame(0, 0.1), failed_frame(1, 0.2)]
    summary = summarize(frames, dropped=0, wall_seconds=1.0, settings={})
    assert summary["counts"]["failed"] == 2 and summary["fps"] == 0.0
    assert summary["stages_ms"]["latency"]["p50"] is None
    assert "failed frames: 2" in format_table(summary)
    assert write_plot(frames, tmp_path / "failed.png").stat().st_size > 0


def test_negative_dropped_is_rejected():
    with pytest.raises(ValueError, match="dropped"):
        summarize([], dropped=-1, wall_seconds=1.0, settings={})


def test_format_table(timings):
    table = format_table(summarize(timings, dropped=2, wall_seconds=2.0, settings=SETTINGS))
    lines = table.splitlines()
    assert lines[0].split() == ["stage", "(ms)", "p50", "p90", "p99", "max"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1 : 1 + len(STAGES)]}
    assert list(rows) == list(STAGES)
    assert rows["latency"] == ["28.00", "63.00", "87.30", "90.00"]
    assert len({len(line) for line in lines[: 1 + len(STAGES)]}) == 1, "fixed width"
    assert "fps: 5.00" in table
    assert "bytes/frame: request 1.0 KB, response 304 B" in table
    assert "dropped frames: 2" in table and "failed frames: 2" in table


def test_json_nan_becomes_null_and_is_valid(timings, tmp_path):
    summary = summarize(timings, dropped=2, wall_seconds=2.0, settings=SETTINGS)
    path = write_json(summary, timings, tmp_path / "out" / "bench.json")
    text = path.read_text()
    assert "NaN" not in text
    document = json.loads(text)
    json.dumps(document, allow_nan=False)
    assert document["counts"] == summary["counts"]
    assert len(document["frames"]) == len(timings)
    failed = [f for f in document["frames"] if not f["ok"]]
    assert failed[0]["decode"] is None and failed[0]["rpc"] == pytest.approx(0.0005)
    assert failed[1]["error"] == "DEADLINE_EXCEEDED"
    assert document["frames"][0] == {
        "index": 0,
        "ok": True,
        "latency": 0.031,
        "capture_wait": pytest.approx(0.0031),
        "encode": pytest.approx(0.0062),
        "rpc": pytest.approx(0.0186),
        "decode": pytest.approx(0.0031),
        "request_bytes": 1000,
        "response_bytes": 300,
        "completed_at": pytest.approx(0.1),
        "error": "",
        "source": "",
    }


def test_csv_round_trip(timings, tmp_path):
    path = write_csv(timings, tmp_path / "bench.csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(timings)
    assert list(rows[0]) == [
        "index",
        "ok",
        "latency",
        "capture_wait",
        "encode",
        "rpc",
        "decode",
        "request_bytes",
        "response_bytes",
        "completed_at",
        "error",
        "source",
    ]

    def parse(row):
        def number(text):
            return NAN if text == "" else float(text)

        return FrameTiming(
            index=int(row["index"]),
            ok=row["ok"] == "True",
            latency=number(row["latency"]),
            capture_wait=number(row["capture_wait"]),
            encode=number(row["encode"]),
            rpc=number(row["rpc"]),
            decode=number(row["decode"]),
            request_bytes=int(row["request_bytes"]),
            response_bytes=int(row["response_bytes"]),
            completed_at=number(row["completed_at"]),
            error=row["error"],
        )

    for row, timing in zip(rows, timings, strict=True):
        back = parse(row)
        if timing.ok:
            assert back == timing  # floats written at full precision
        else:
            assert math.isnan(back.decode) and row["decode"] == ""
            assert back.error == timing.error and back.rpc == timing.rpc


def test_write_results_picks_format_by_suffix(timings, tmp_path):
    summary = summarize(timings, dropped=0, wall_seconds=1.0, settings={})
    json.loads(write_results(summary, timings, tmp_path / "r.json").read_text())
    json.loads(write_results(summary, timings, tmp_path / "R.JSON").read_text())
    assert write_results(summary, timings, tmp_path / "r.csv").read_text().startswith("index,ok,")
    with pytest.raises(ValueError, match=r"'\.txt'.*\.json, \.csv"):
        write_results(summary, timings, tmp_path / "r.txt")
    with pytest.raises(ValueError, match="none"):
        write_results(summary, timings, tmp_path / "results")
    assert not (tmp_path / "r.txt").exists()


def test_plot_is_a_real_png(timings, tmp_path):
    path = write_plot(timings, tmp_path / "plots" / "bench.png", title="test run")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.load()
        width, height = image.size
    assert 600 <= width <= 2000 and 200 <= height <= 1200 and width > height


def test_progress_line_without_a_tty(timings):
    stream = io.StringIO()  # not a terminal
    with ProgressLine(total=len(timings), file=stream, window=50) as progress:
        for i, timing in enumerate(timings):
            progress.update(timing, dropped=i // 4)
    assert progress.done == len(timings)
    assert progress.failed == 2
    assert progress.dropped == 2
    assert progress.p50_ms == pytest.approx(28.0)
    # 10 ok frames completed between 0.1 s and 1.0 s → 9 intervals in 0.9 s.
    assert progress.fps == pytest.approx(10.0)
    output = stream.getvalue()
    assert f"{len(timings)}/{len(timings)}" in output
    assert "10.0 fps, p50 28.0 ms, dropped 2, failed 2" in output


def test_progress_line_before_any_frames_and_disabled():
    progress = ProgressLine(total=None, disable=True)
    assert progress.fps is None and progress.p50_ms is None
    assert progress.postfix() == "- fps, p50 - ms, dropped 0, failed 0"
    progress.update(failed_frame(0, 0.1))
    assert progress.failed == 1 and progress.done == 1
    progress.close()


def test_answers_are_counted_by_source():
    timings = [
        FrameTiming(index=i, ok=True, latency=0.02, capture_wait=0.0, encode=0.0, rpc=0.01,
                    decode=0.0, request_bytes=0, response_bytes=0, completed_at=0.05 * i,
                    source="remote" if i < 3 else "onboard")
        for i in range(5)
    ]  # fmt: skip
    summary = summarize(timings, dropped=0, wall_seconds=1.0, settings={"fallback": "m.tflite"})
    assert summary["sources"] == {"remote": 3, "onboard": 2}
    assert "answers: remote 3, onboard 2 (onboard: rpc is the inference" in format_table(summary)
    remote_only = summarize(timings[:3], dropped=0, wall_seconds=1.0, settings={})
    assert "answers:" not in format_table(remote_only)


def test_progress_line_without_tqdm(timings, monkeypatch):
    """The client's own distribution has no tqdm: a plain line instead."""
    import sys

    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm → ImportError
    stream = io.StringIO()
    with ProgressLine(total=len(timings), file=stream) as progress:
        for timing in timings:
            progress.update(timing)
    assert f"bench: {len(timings)}/{len(timings)} frames, " in stream.getvalue()
    assert "failed 2" in stream.getvalue()
