"""Named presets and the train command's flags on top of them (no training here)."""

from __future__ import annotations

import pytest

from training.cli import build_parser
from training.cli.learning import train_config_from
from training.config import TrainConfig
from training.presets import PRESETS, train_config


def config_of(*flags: str) -> TrainConfig:
    return train_config_from(build_parser().parse_args(["train", "--data=d", "--out=o", *flags]))


def test_book_is_the_configs_own_defaults():
    assert config_of() == TrainConfig(data="d", out="o")
    assert config_of("--preset=book") == TrainConfig(data="d", out="o")


def test_a_preset_sets_its_values_and_given_flags_win():
    demo = config_of("--preset=demo")
    assert demo == TrainConfig(data="d", out="o", **PRESETS["demo"].values)
    assert (demo.backbone, demo.input_size, demo.epochs) == ("mobilenetv2", (128, 128), 15)
    changed = config_of("--preset=demo", "--epochs=3", "--input-size=160x96")
    assert (changed.epochs, changed.input_size, changed.lr) == (3, (96, 160), 2e-3)


def test_none_given_on_the_command_line_overrides_a_preset():
    """``--backbone-weights none`` is a value, not "not given"."""
    assert config_of("--backbone-weights=none").backbone_weights is None
    assert config_of("--preset=smoke", "--bn-momentum=0.9").bn_momentum == 0.9


def test_unknown_presets_and_values_are_named():
    with pytest.raises(
        ValueError, match="preset must be one of book, paper, demo, smoke; got 'fast'"
    ):
        train_config("fast", data="d", out="o")
    with pytest.raises(ValueError, match="loss must be one of ce, ce\\+dice, dice; got 'l2'"):
        train_config("smoke", data="d", out="o", loss="l2")
    with pytest.raises(SystemExit):
        config_of("--preset=fast")


def test_help_lists_every_preset(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    shown = capsys.readouterr().out
    for name, preset in PRESETS.items():
        assert f"{name}: {preset.purpose}" in " ".join(shown.split())
