"""``import client`` stays light: no TensorFlow, no training/serving, no matplotlib.

Checked in a fresh interpreter, since this test process has long imported all of them. Every
module of the package is imported too (whatever exists when the test runs), so a stray
TensorFlow import anywhere in ``client`` is caught, not only in ``client/__init__.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = ("tensorflow", "tensorflow_serving", "keras", "training", "serving", "matplotlib")

CHILD = """
import json, pkgutil, sys

forbidden = set(sys.argv[1:])

def offending():  # the forbidden top-level packages loaded (any of their modules counts)
    loaded = {name.partition(".")[0] for name in sys.modules}
    return sorted(loaded & forbidden)

import client
after_package = offending()

modules = {}  # module -> the forbidden modules its import added
for info in pkgutil.walk_packages(client.__path__, prefix="client."):
    if info.name.endswith(".__main__"):
        continue  # the CLI may reach for heavier things when it runs a command
    before = set(offending())
    __import__(info.name)
    modules[info.name] = sorted(set(offending()) - before)

print(json.dumps({"after_package": after_package, "modules": modules}))
"""


def run_child() -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, *FORBIDDEN],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"importing client failed:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_client_imports_without_heavy_dependencies():
    report = run_child()
    assert not report["after_package"], (
        f"`import client` pulled in: {', '.join(report['after_package'])}"
    )
    culprits = {module: added for module, added in report["modules"].items() if added}
    assert not culprits, "client modules pulled in: " + "; ".join(
        f"{module} → {', '.join(added)}" for module, added in culprits.items()
    )
    assert "client.palette" in report["modules"]
