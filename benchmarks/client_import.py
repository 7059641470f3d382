"""What the edge client costs to import, next to TF Serving's own Python API.

Each case runs once in a fresh interpreter (``sys.executable -c``): the child times its import
with ``time.perf_counter`` and reads its peak RSS from ``getrusage(RUSAGE_SELF).ru_maxrss``
(KiB on Linux). The cases: the bare interpreter (``import sys``), ``import client``, and
``from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc``, which pulls
in TensorFlow. A fresh process per case means no module is already cached in ``sys.modules``;
the OS file cache is warm after the first run, so run it twice if a cold first number matters.

    python benchmarks/client_import.py
    python benchmarks/client_import.py --repeat 3    # best of three fresh processes per case

Prints a markdown table (import time in ms, peak RSS in MiB per case) and the ratios
TF Serving API / client for time and for peak memory (also for the memory each adds to the
bare interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CASES = {
    "baseline (import sys)": "import sys",
    "import client": "import client",
    "TF Serving API": (
        "from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc"
    ),
}

# Runs in the child: times the statement, then reports peak RSS of the whole process.
CHILD = """
import json, resource, sys, time
start = time.perf_counter()
exec(sys.argv[1])
seconds = time.perf_counter() - start
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_kib": peak_kib}))
"""


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_mib: float


def measure(statement: str) -> Measurement:
    """Import time and peak RSS of ``statement`` in a fresh interpreter."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, statement],
        cwd=REPO,  # so `client` resolves to this checkout
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{statement!r} failed:\n{result.stderr}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return Measurement(seconds=report["seconds"], peak_mib=report["peak_kib"] / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="fresh processes per case; the fastest (and its memory) is reported",
    )
    args = parser.parse_args()

    results: dict[str, Measurement] = {}
    for name, statement in CASES.items():
        runs = [measure(statement) for _ in range(max(1, args.repeat))]
        results[name] = min(runs, key=lambda m: m.seconds)

    print("| case | import time (ms) | peak RSS (MiB) |\n| --- | ---: | ---: |")
    for name, m in results.items():
        print(f"| {name} | {m.seconds * 1000:.1f} | {m.peak_mib:.1f} |")

    client = results["import client"]
    serving_api = results["TF Serving API"]
    print()
    print(f"TF Serving API / client, import time: {serving_api.seconds / client.seconds:.1f}×")
    print(f"TF Serving API / client, peak RSS:    {serving_api.peak_mib / client.peak_mib:.1f}×")
    base = results["baseline (import sys)"].peak_mib
    added = (serving_api.peak_mib - base) / max(client.peak_mib - base, 1e-9)
    print(f"  (RSS above the bare interpreter: {added:.1f}×)")
    print(f"\n{sys.executable} {' '.join(sys.argv)}  (Python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
