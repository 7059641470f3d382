"""Training in fresh processes, for the tests that kill, resume and distribute runs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from training.learning.run_folder import RunFolder

REPO = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

# Kills the process inside RunState.save of epoch N: after the CSV row, before the state.
KILL_BEFORE_SAVING = """
import os, signal
from training.learning import resume
_save = resume.RunState.save
def save(self, epochs_done):
    if epochs_done == {epoch}:
        os.kill(os.getpid(), signal.SIGKILL)
    _save(self, epochs_done)
resume.RunState.save = save
"""

# Two logical CPUs stand in for two GPUs (MirroredStrategy, one process).
TWO_CPUS_MIRRORED = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from training.learning import train
train.distribution_strategy = lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
"""


def read_log(run: RunFolder) -> list[dict[str, float]]:
    """The rows of a run's log.csv, as numbers."""
    with open(run.log, newline="") as file:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]


def train_command(args: list[str], *, before: str = "") -> list[str]:
    """``python -m training`` with ``args``; with ``before``, the same through ``python -c``,
    ``before`` run first."""
    if not before:
        return [sys.executable, "-m", "training", *args]
    script = f"import sys\n{before}\nfrom training.cli import main\nsys.exit(main({args!r}))"
    return [sys.executable, "-c", script]


def train_in_subprocess(
    args: list[str], *, before: str = "", timeout: int = 600
) -> subprocess.CompletedProcess:
    """``python -m training`` with ``args`` in a fresh process, ``before`` run first."""
    return subprocess.run(
        train_command(args, before=before),
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
