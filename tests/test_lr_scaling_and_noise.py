"""Issue 6 wiring: lr scaling rules reach the optimizer and the records; noise tracking runs in
a real trial without changing it and lands in the measurement table."""

import math

import pytest
from typer.testing import CliRunner

from bsweep.analysis.load import load_measurements
from bsweep.cli import app
from bsweep.config import effective_lr
from bsweep.train.data import load_data
from tests.conftest import TINY, compose, train_alone


@pytest.mark.parametrize("rule,expected", [("none", 0.1), ("linear", 0.4), ("sqrt", 0.2)])
def test_effective_lr_follows_the_rule(rule, expected):
    cfg = compose([*TINY, "lr=0.1", "batch_size=128", "base_batch_size=32", f"lr_scaling={rule}"])
    assert effective_lr(cfg) == pytest.approx(expected)


def test_measurements_record_the_effective_lr(tiny_config):
    tiny_config.lr, tiny_config.batch_size, tiny_config.base_batch_size = 0.01, 64, 16
    tiny_config.lr_scaling = "linear"
    rows = train_alone(tiny_config, load_data(tiny_config.data)).measurements
    assert rows[-1]["lr"] == pytest.approx(0.04)


def test_noise_tracking_adds_columns_and_leaves_training_unchanged(tiny_config):
    data = load_data(tiny_config.data)
    plain = train_alone(tiny_config, data).measurements
    tiny_config.noise.enabled = True
    tiny_config.noise.b_small, tiny_config.noise.b_big, tiny_config.noise.every = 8, 64, 1
    tracked = train_alone(tiny_config, data).measurements
    assert [r["test_loss"] for r in tracked] == [r["test_loss"] for r in plain]
    values = [r["noise_scale"] for r in tracked if not math.isnan(r["noise_scale"])]
    assert values and all(v > 0 for v in values)


def test_noise_columns_reach_the_tables(results):
    out = CliRunner().invoke(app, ["run", *TINY, f"results_dir={results}", "noise.enabled=true",
                                   "noise.b_small=8", "noise.b_big=64"])
    assert out.exit_code == 0, out.output
    m = load_measurements(results / "smoke")
    assert "noise_scale" in m.columns and m["noise_scale"].notna().any()


def test_bad_noise_and_scaling_settings_are_clear_errors(results):
    out = CliRunner().invoke(app, ["run", *TINY, f"results_dir={results}", "noise.enabled=true",
                                   "noise.b_small=64", "noise.b_big=8", "lr_scaling=cubic"])
    assert out.exit_code == 2
    assert "1 <= b_small < b_big" in out.output and "lr_scaling='cubic'" in out.output
