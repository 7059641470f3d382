"""Statistics and output files of the per-frame latency benchmark (``python -m client bench``).

The benchmark streams frames to a model server and records one :class:`FrameTiming` per frame
it sent; this module turns those records into a JSON-able summary, a text table, JSON/CSV files
with every frame, a PNG plot and a live progress line.

    >>> timings = [
    ...     FrameTiming(index=i, ok=True, latency=0.02 + i / 1000, capture_wait=0.001,
    ...                 encode=0.002, rpc=0.015, decode=0.001, request_bytes=921_600,
    ...                 response_bytes=307_200, completed_at=0.05 * (i + 1))
    ...     for i in range(10)
    ... ]
    >>> summary = summarize(timings, dropped=0, wall_seconds=0.5, settings={"frames": 10})
    >>> summary["counts"], summary["fps"]
    ({'ok': 10, 'failed': 0, 'dropped': 0}, 20.0)
    >>> summary["stages_ms"]["latency"]["p50"]
    24.5

Latency statistics cover the frames that came back (``ok``); failed frames are counted and
listed, never averaged in, because a fast failure would make the latency look better.
Matplotlib and tqdm are imported where they are used: ``import client`` stays light, and the
client's own distribution works without either (``plot`` extra; a plain progress line).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, get_args

import numpy as np

from client.results import Source

# The timed stages, in the order the table and the summary list them. ``latency`` is the end
# to end time (capture → class map decoded). ``capture_wait`` is how long the stream waited for
# the frame (before its capture time); ``encode``, ``rpc`` and ``decode`` are the call's stages.
# With several frames in flight a frame can also wait for a free worker, which no stage counts.
STAGES = ("latency", "capture_wait", "encode", "rpc", "decode")
PERCENTILES = (50, 90, 99)
RESULT_SUFFIXES = (".json", ".csv")
SOURCES: tuple[str, ...] = get_args(Source)  # who answers a frame: remote, onboard


@dataclass(frozen=True)
class FrameTiming:
    """One frame the benchmark sent. Times in seconds; stages that did not run are ``nan``."""

    index: int  # source frame index (gaps are frames the camera dropped)
    ok: bool
    latency: float  # end to end: capture → class map decoded
    capture_wait: float
    encode: float
    rpc: float
    decode: float
    request_bytes: int
    response_bytes: int
    completed_at: float  # seconds since the benchmark started
    error: str = ""
    source: str = ""  # who answered: "remote" or "onboard" (rpc is then the inference)


def summarize(
    timings: Sequence[FrameTiming],
    *,
    dropped: int,
    wall_seconds: float,
    settings: Mapping[str, object],
) -> dict:
    """The benchmark's result as a JSON-able dict.

    Keys: ``settings`` (as given, values made JSON-able), ``counts`` (``ok``, ``failed``,
    ``dropped``), ``wall_seconds``, ``fps`` (ok frames per wall second), ``bytes_per_frame``
    (mean ``request``/``response`` bytes of the ok frames), ``stages_ms`` (per stage in
    :data:`STAGES`: ``p50``, ``p90``, ``p99``, ``max``, ``mean`` in ms over the ok frames,
    numpy's default linear percentiles; ``None`` where there is nothing to measure),
    ``errors`` (failed frames per error message, most frequent first) and ``sources`` (ok
    frames per answering side, ``remote`` and ``onboard``).
    """
    if dropped < 0:
        raise ValueError(f"dropped must be >= 0, got {dropped}")
    ok = [t for t in timings if t.ok]
    failed = [t for t in timings if not t.ok]
    fps = len(ok) / wall_seconds if wall_seconds > 0 else None
    return {
        "settings": _jsonable(dict(settings)),
        "counts": {"ok": len(ok), "failed": len(failed), "dropped": int(dropped)},
        "wall_seconds": float(wall_seconds),
        "fps": fps,
        "bytes_per_frame": {
            "request": _mean([t.request_bytes for t in ok]),
            "response": _mean([t.response_bytes for t in ok]),
        },
        "stages_ms": {stage: stage_stats_ms([getattr(t, stage) for t in ok]) for stage in STAGES},
        "errors": dict(Counter(t.error or "unknown error" for t in failed).most_common()),
        "sources": {side: sum(t.source == side for t in ok) for side in SOURCES},
    }


def stage_stats_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99/max/mean in ms of the finite values; all ``None`` when there are none."""
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    values = values[np.isfinite(values)]
    keys = [f"p{p}" for p in PERCENTILES] + ["max", "mean"]
    if values.size == 0:
        return dict.fromkeys(keys, None)
    stats = [float(v) for v in np.percentile(values, PERCENTILES)]
    stats += [float(values.max()), float(values.mean())]
    return dict(zip(keys, stats, strict=True))


def format_table(summary: Mapping[str, Any]) -> str:
    """A fixed-width text table of :func:`summarize`'s result: one row per stage (p50 p90 p99
    max in ms), then fps, bytes per frame, dropped and failed frames."""
    columns = ("p50", "p90", "p99", "max")
    name_width = max(len(stage) for stage in STAGES)
    lines = [f"{'stage (ms)':<{name_width}}" + "".join(f"{c:>10}" for c in columns)]
    for stage, stats in summary["stages_ms"].items():
        lines.append(f"{stage:<{name_width}}" + "".join(f"{_fmt(stats[c]):>10}" for c in columns))
    counts = summary["counts"]
    fps = summary["fps"]
    fps_text = "-" if fps is None else f"{fps:.2f}"
    lines.append(f"fps: {fps_text} ({counts['ok']} ok frames in {summary['wall_seconds']:.2f} s)")
    sizes = summary["bytes_per_frame"]
    lines.append(
        f"bytes/frame: request {_fmt_bytes(sizes['request'])}, "
        f"response {_fmt_bytes(sizes['response'])}"
    )
    output_size = summary.get("settings", {}).get("output_size")
    if output_size:
        lines.append(f"maps at: {output_size[0]}x{output_size[1]} (output_size)")
    lines.append(f"dropped frames: {counts['dropped']}")
    lines.append(f"failed frames: {counts['failed']}")
    for message, count in summary.get("errors", {}).items():
        lines.append(f"  {count} × {message}")
    sources, settings = summary.get("sources", {}), summary.get("settings", {})
    if sources.get("onboard") or settings.get("onboard") or settings.get("fallback"):
        # An onboard model answers or stands by: who answered how often, and what rpc means.
        answers = ", ".join(f"{side} {sources.get(side, 0)}" for side in SOURCES)
        lines.append(f"answers: {answers} (onboard: rpc is the inference on this machine)")
    return "\n".join(lines)


def frame_record(timing: FrameTiming) -> dict[str, Any]:
    """One frame as a JSON-able dict (``nan`` → ``None``)."""
    return _jsonable(dataclasses.asdict(timing))


def write_json(
    summary: Mapping[str, Any], timings: Sequence[FrameTiming], path: str | Path
) -> Path:
    """The summary plus a ``frames`` list with every frame; valid JSON (``nan`` → ``null``)."""
    path = Path(path)
    document = {**_jsonable(dict(summary)), "frames": [frame_record(t) for t in timings]}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, allow_nan=False)
        f.write("\n")
    return path


def write_csv(timings: Sequence[FrameTiming], path: str | Path) -> Path:
    """One row per frame under a header of :class:`FrameTiming`'s field names.

    Stages that did not run (``nan``) are empty cells, which spreadsheets and pandas read as
    missing; ``ok`` is ``True``/``False``.
    """
    path = Path(path)
    names = [field.name for field in dataclasses.fields(FrameTiming)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        for timing in timings:
            row = dataclasses.asdict(timing)
            writer.writerow({k: "" if _is_nan(v) else v for k, v in row.items()})
    return path


def write_results(
    summary: Mapping[str, Any], timings: Sequence[FrameTiming], path: str | Path
) -> Path:
    """Write JSON or CSV, chosen by the suffix of ``path``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return write_json(summary, timings, path)
    if suffix == ".csv":
        return write_csv(timings, path)
    raise ValueError(
        f"unsupported results file suffix {path.suffix or '(none)'!r} in {str(path)!r}: "
        f"use one of {', '.join(RESULT_SUFFIXES)}"
    )


def require_plotting() -> None:
    """Raises ImportError saying what to install where matplotlib is missing (the client's
    own distribution leaves it to its ``plot`` extra); checked before a benchmark runs."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib: pip install 'rc-segmentation-client[plot]'"
        ) from None


def write_plot(
    timings: Sequence[FrameTiming], path: str | Path, *, title: str = "Per-frame latency"
) -> Path:
    """A PNG: left, a histogram of end-to-end latency (ms) with p50 and p99 lines; right, the
    latency of each frame against when it completed, failed frames marked with a red ×."""
    require_plotting()
    # Figure + Agg canvas, not pyplot: no global backend switch, no GUI, safe in threads.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    ok = [t for t in timings if t.ok and math.isfinite(t.latency)]
    failed = [t for t in timings if not t.ok]
    latency_ms = np.array([t.latency for t in ok], dtype=np.float64) * 1000.0

    figure = Figure(figsize=(11, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    hist_axes, time_axes = figure.subplots(1, 2)

    hist_axes.set_title("End-to-end latency")
    hist_axes.set_xlabel("latency (ms)")
    hist_axes.set_ylabel("frames")
    if latency_ms.size:
        hist_axes.hist(latency_ms, bins=min(50, max(5, latency_ms.size // 4)), color="tab:blue")
        p50, p99 = np.percentile(latency_ms, [50, 99])
        hist_axes.axvline(p50, color="tab:green", linestyle="--", label=f"p50 {p50:.1f} ms")
        hist_axes.axvline(p99, color="tab:red", linestyle="--", label=f"p99 {p99:.1f} ms")
        hist_axes.legend()
    else:
        hist_axes.text(0.5, 0.5, "no successful frames", ha="center", transform=hist_axes.transAxes)

    time_axes.set_title("Latency over the run")
    time_axes.set_xlabel("completed at (s)")
    time_axes.set_ylabel("latency (ms)")
    if ok:
        time_axes.plot(
            [t.completed_at for t in ok],
            latency_ms,
            ".",
            markersize=3,
            label="ok",
            color="tab:blue",
        )
    if failed:
        # Failed frames sit at the bottom of the axes: their latency is often unknown (nan).
        time_axes.plot(
            [t.completed_at for t in failed],
            [0.02] * len(failed),
            "x",
            color="tab:red",
            label=f"failed ({len(failed)})",
            transform=time_axes.get_xaxis_transform(),
        )
    if ok or failed:
        time_axes.legend()
    else:
        time_axes.text(0.5, 0.5, "no frames", ha="center", transform=time_axes.transAxes)

    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


class ProgressLine:
    """A live progress line (tqdm): frames done/total, current fps, running p50 latency,
    dropped and failed counts.

        progress = ProgressLine(total=300)
        for timing in run():
            progress.update(timing, dropped=camera.dropped)
        progress.close()

    ``fps`` counts the ok frames that completed in the last ``window`` ones; p50 is over the
    last ``window`` ok latencies. Writes to stderr unless ``file`` is given; works on
    non-terminals (tqdm then prints plain lines) and can be turned off with ``disable``.
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        file: IO[str] | None = None,
        disable: bool = False,
        window: int = 100,
        description: str = "bench",
    ) -> None:
        self.done = 0
        self.failed = 0
        self.dropped = 0
        self._latencies: deque[float] = deque(maxlen=window)
        self._ok_times: deque[float] = deque(maxlen=window)
        self._bar = _progress_bar()(
            total=total,
            desc=description,
            unit="frame",
            file=file,
            disable=disable,
            dynamic_ncols=True,
        )

    @property
    def fps(self) -> float | None:
        """Ok frames per second over the recent window; ``None`` until two have completed."""
        if len(self._ok_times) < 2:
            return None
        span = self._ok_times[-1] - self._ok_times[0]
        return (len(self._ok_times) - 1) / span if span > 0 else None

    @property
    def p50_ms(self) -> float | None:
        """Median latency of the recent ok frames in ms; ``None`` before the first."""
        if not self._latencies:
            return None
        return float(np.median(np.asarray(self._latencies))) * 1000.0

    def update(self, timing: FrameTiming, *, dropped: int | None = None) -> None:
        """Count one finished frame; ``dropped`` is the total the camera has dropped so far."""
        self.done += 1
        if dropped is not None:
            self.dropped = dropped
        if timing.ok and math.isfinite(timing.latency):
            self._latencies.append(timing.latency)
            self._ok_times.append(timing.completed_at)
        elif not timing.ok:
            self.failed += 1
        self._bar.set_postfix_str(self.postfix(), refresh=False)
        self._bar.update(1)

    def postfix(self) -> str:
        """The text after the bar, e.g. ``29.8 fps, p50 31.2 ms, dropped 0, failed 1``."""
        fps = "-" if self.fps is None else f"{self.fps:.1f}"
        p50 = "-" if self.p50_ms is None else f"{self.p50_ms:.1f}"
        return f"{fps} fps, p50 {p50} ms, dropped {self.dropped}, failed {self.failed}"

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _PlainBar:
    """tqdm's few methods that ProgressLine uses, as a plain line every ``every`` frames: the
    client's own distribution does not depend on tqdm."""

    every = 50

    def __init__(self, *, total, desc, file, disable, **_):
        self.total, self.desc, self.disable = total, desc, disable
        self.file = sys.stderr if file is None else file
        self.count, self.postfix = 0, ""

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def update(self, n: int = 1) -> None:
        self.count += n
        if self.count % self.every == 0 or self.count == self.total:
            self._write()

    def _write(self) -> None:
        if not self.disable:
            total = "" if self.total is None else f"/{self.total}"
            print(f"{self.desc}: {self.count}{total} frames, {self.postfix}", file=self.file)

    def close(self) -> None:
        if self.count % self.every and self.count != self.total:
            self._write()


def _progress_bar():
    """tqdm where it is installed (the main project has it), else :class:`_PlainBar`."""
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar
    return tqdm


def _is_nan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _fmt_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("MB", 1e6), ("KB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _jsonable(value: Any) -> Any:
    """Plain JSON types all the way down: non-finite floats → None, numpy scalars → Python,
    tuples → lists, anything else unknown (paths, enums) → its ``str``."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return str(value)
