"""The scientific point is the study's real grid: every swept config key is a point column, not
pooled with the seeds; lr and seed are nuisance; keys that do not vary are fixed."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from bsweep.analysis.load import grid_keys, grid_values, load_grid_keys, load_trials
from bsweep.analysis.metrics import aggregate_over_seeds, point_columns, summarize_trials, tuned_view
from bsweep.analysis.load import load_measurements
from bsweep.cli import app
from tests.conftest import TINY


def test_a_trial_config_flattens_to_its_grid_values_with_defaults_for_missing_keys():
    older = {"batch_size": 16, "lr": 0.1, "seed": 0, "model": {"name": "cnn", "width": 16},
             "device": "cpu", "threads": 1, "results_dir": "/x", "perf": {"amp": "off"},
             "noise": {"enabled": True}, "study": {"name": "s", "target": 0.8, "eval": {"growth": 1.1}}}
    grid = grid_values(older)
    assert grid["model.width"] == 16 and grid["batch_size"] == 16
    assert grid["model.depth"] == 3  # absent in the older trial: the schema default
    for gone in ("device", "threads", "results_dir", "perf.amp", "noise.enabled", "study.name", "study.eval.growth"):
        assert gone not in grid


def test_keys_are_scientific_nuisance_or_fixed():
    grids = [{"batch_size": b, "lr": lr, "seed": 0, "model.width": w, "optim.name": "sgd"}
             for b in (16, 64) for lr in (0.1, 0.2) for w in (16, 32)]
    keys = grid_keys(grids)
    assert keys.scientific == {"batch_size": [16, 64], "model.width": [16, 32]}
    assert keys.nuisance == {"lr": [0.1, 0.2]}
    assert keys.fixed == {"optim.name": "sgd", "seed": 0}


def test_point_columns_take_every_swept_key_and_end_with_batch_size():
    frame = pd.DataFrame(columns=["trial_id", "norm", "batch_size", "lr", "seed", "model.width", "lr_scaling",
                                  "final_test_acc"])
    assert point_columns(frame) == ["norm", "model.width", "lr_scaling", "batch_size"]


def test_a_swept_model_width_is_two_curves_not_two_seeds(results):
    out = CliRunner().invoke(app, ["sweep", *TINY, f"results_dir={results}", "model.width=16,32", "norm=batch"],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    study = results / "smoke"
    trials = load_trials(study)
    assert sorted(trials["model.width"]) == [16, 16, 32, 32]
    keys = load_grid_keys(study)
    assert list(keys.scientific) == ["batch_size", "model.width"] and keys.fixed["norm.kind"] == "batch"
    summary = summarize_trials(trials, load_measurements(study))
    fixed = aggregate_over_seeds(summary)
    assert "model.width" in fixed.columns and set(fixed["n_trials"]) == {1}  # n=1 per point, not 2
    assert len(tuned_view(fixed)) == 4  # 2 widths x 2 batch sizes
    # collect writes the column to trials.parquet, and the report runs on it
    assert CliRunner().invoke(app, ["collect", str(study)]).exit_code == 0
    assert "model.width" in pd.read_parquet(study / "trials.parquet").columns
    report = CliRunner().invoke(app, ["report", str(study)])
    assert report.exit_code == 0, report.output
    html = (study / "report" / "index.html").read_text()
    grid = html[html.index("<h2>Study grid</h2>"):]
    assert "model.width</td><td>scientific</td><td>16, 32" in grid.replace("\n", "")
    assert "norm.kind</td><td>fixed</td><td>batch" in grid.replace("\n", "")


def test_calibrated_seconds_use_each_swept_width_its_own_step_time():
    from bsweep.analysis.scaling import calibrate_times

    summary = pd.DataFrame({
        "trial_id": ["a", "b"], "status": ["complete"] * 2, "norm": ["batch"] * 2, "batch_size": [16, 16],
        "model.width": [16, 32], "steps_to_target": [100.0, 100.0], "seconds_to_target": [9.0, 9.0],
        "samples_per_second": [1.0, 1.0], "device": ["cpu"] * 2})
    bench = pd.DataFrame({"batch_size": [16, 16], "norm": ["batch"] * 2, "model_width": [16, 32],
                          "seconds_per_step": [0.001, 0.004], "fused_width": [1, 1], "device": ["cpu"] * 2})
    measurements = pd.DataFrame({"trial_id": ["a", "b"], "step": [100, 100], "train_seconds": [9.0, 9.0]})
    out, _, basis = calibrate_times(summary, measurements, bench)
    assert basis.startswith("calibrated")
    assert list(out["seconds_to_target"]) == pytest.approx([0.1, 0.4])
