"""Training curves (loss, mean IoU, accuracies, learning rate) drawn from the run's CSV log.

    plot_training_curves("runs/voc/log.csv", "runs/voc/curves.png")

:class:`CurvesCallback` redraws the PNG after every epoch, so an interrupted run still has it.
"""

from __future__ import annotations

import csv
from pathlib import Path

import keras
from matplotlib.figure import Figure


def read_log(path: str | Path) -> dict[str, list[float]]:
    """Columns of a Keras CSVLogger file as float lists (empty dict when there are no rows)."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    if not rows:
        return {}
    return {key: [float(row[key]) for row in rows] for key in rows[0] if key}


def plot_training_curves(csv_log: str | Path, out: str | Path) -> Path | None:
    """Writes the curves PNG; returns its path, or None when the log has no epochs yet."""
    columns = read_log(csv_log)
    if not columns:
        return None
    epochs = [int(epoch) + 1 for epoch in columns["epoch"]]
    figure = Figure(figsize=(18, 4))  # no pyplot: no GUI backend, no global state
    axes = figure.subplots(1, 4)
    for axis, metric in zip(axes[:3], ("loss", "mean_iou", "pixel_accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + metric in columns:
                axis.plot(epochs, columns[prefix + metric], style, label=prefix + metric)
        if metric == "pixel_accuracy" and "mean_accuracy" in columns:
            axis.plot(epochs, columns["mean_accuracy"], "-", label="mean_accuracy")
            if "val_mean_accuracy" in columns:
                axis.plot(epochs, columns["val_mean_accuracy"], "--", label="val_mean_accuracy")
        axis.set_title(metric.replace("_", " "))
        axis.set_xlabel("epoch")
        axis.legend()
        axis.grid(alpha=0.3)
    if "learning_rate" in columns:
        axes[3].semilogy(epochs, columns["learning_rate"])
    axes[3].set_title("learning rate")
    axes[3].set_xlabel("epoch")
    axes[3].grid(alpha=0.3)
    figure.tight_layout()
    out = Path(out)
    figure.savefig(out, dpi=80)
    return out


class CurvesCallback(keras.callbacks.Callback):
    """Redraws the curves after each epoch; place it after the CSVLogger."""

    def __init__(self, csv_log: str | Path, out: str | Path):
        super().__init__()
        self.csv_log, self.out = Path(csv_log), Path(out)

    def on_epoch_end(self, epoch, logs=None):
        plot_training_curves(self.csv_log, self.out)
