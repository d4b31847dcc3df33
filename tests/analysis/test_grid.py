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


@pytest.mark.slow
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
    from bsweep.analysis.timebase import calibrate_times

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


def _trial(lr: float, val: float, heldout: float, bs: int = 16) -> dict:
    return {"trial_id": f"{bs}-{lr}", "status": "complete", "norm": "batch", "batch_size": bs, "lr": lr,
            "seed": 0, "diverged": False, "final_test_acc": (val + heldout) / 2,
            "val_final_test_acc": val, "heldout_final_test_acc": heldout,
            **{f"{half}steps_to_target": 10.0 for half in ("", "val_", "heldout_")}}


def test_the_tuned_view_picks_lr_on_the_validation_half_and_reports_the_held_out_half():
    # lr 0.1 looks best on the validation half, lr 0.2 on the held-out half: the held-out
    # numbers must not choose, only be reported
    summary = pd.DataFrame([_trial(0.05, 0.70, 0.70), _trial(0.1, 0.90, 0.60), _trial(0.2, 0.80, 0.95)])
    best = tuned_view(aggregate_over_seeds(summary, metrics=["final_test_acc"]))
    assert best["best_lr"].tolist() == [0.1] and best["selected_on"].tolist() == ["validation half"]
    assert best["final_test_acc_mean"].tolist() == [0.60]  # the held-out half of lr 0.1
    assert best["test_final_test_acc_mean"].tolist() == [pytest.approx(0.75)]  # whole test set, kept beside
    # trials without the halves (older studies): chosen and reported on the whole test set, said so
    older = summary.drop(columns=[c for c in summary.columns if c.startswith(("val_", "heldout_"))])
    best = tuned_view(aggregate_over_seeds(older, metrics=["final_test_acc"]))
    assert best["best_lr"].tolist() == [0.2] and best["selected_on"].tolist() == ["test set"]


def test_summaries_have_the_halves_only_when_every_trial_recorded_them():
    trials = pd.DataFrame({"trial_id": ["a", "b"], "status": ["complete"] * 2, "target": [0.5, 0.5]})
    rows = [{"trial_id": t, "step": s, "samples": s, "epoch": s, "train_seconds": s, "train_loss": 1.0,
             "test_loss": 1.0, "test_acc": 0.6, "val_acc": 0.4, "val_loss": 1.0, "heldout_acc": 0.8,
             "heldout_loss": 1.0, "lr": 0.1} for t in "ab" for s in (0, 1, 2)]
    m = pd.DataFrame(rows)
    both = summarize_trials(trials, m)
    assert both["val_final_test_acc"].tolist() == [0.4, 0.4]
    assert both["heldout_steps_to_target"].tolist() == [0, 0] and both["val_steps_to_target"].isna().all()
    m.loc[m["trial_id"] == "b", ["val_acc", "heldout_acc"]] = float("nan")  # b predates the halves
    assert "val_final_test_acc" not in summarize_trials(trials, m).columns


@pytest.mark.slow
def test_a_nuisance_key_is_tuned_over_jointly_with_lr_not_made_a_curve(results):
    sweep = ["sweep", *TINY, f"results_dir={results}", "norm=batch", "optim.momentum=0,0.9", "lr=0.05,0.2",
             "study.nuisance=[lr,seed,optim.momentum]"]
    out = CliRunner().invoke(app, sweep, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    study = results / "smoke"
    trials = load_trials(study)
    assert "nuisance:optim.momentum" in trials.columns and "optim.momentum" not in trials.columns
    assert point_columns(trials) == ["data", "model", "optim", "schedule", "norm", "batch_size"]
    assert list(load_grid_keys(study).nuisance) == ["lr", "optim.momentum"]
    summary = summarize_trials(trials, load_measurements(study))
    fixed = aggregate_over_seeds(summary)
    assert len(fixed) == 8 and set(fixed["n_trials"]) == {1}  # each (lr, momentum) on its own
    tuned = tuned_view(fixed)
    assert len(tuned) == 2  # one best (lr, momentum) per batch size
    for _, row in tuned.iterrows():
        at = fixed[fixed["batch_size"] == row["batch_size"]]
        assert row["test_final_test_acc_mean"] in at["final_test_acc_mean"].tolist()
    # --nuisance adds keys at analysis time; a wrong one is a clear error
    plain = ["sweep", *TINY, f"results_dir={results}", "norm=batch", "optim.momentum=0,0.9", "lr=0.05,0.2"]
    assert CliRunner().invoke(app, plain).exit_code == 0
    bad = CliRunner().invoke(app, ["collect", str(study), "--nuisance", "optim.momentun"])
    assert bad.exit_code == 2 and "did you mean optim.momentum" in bad.output
    report = CliRunner().invoke(app, ["report", str(study), "--nuisance", "optim.momentum", "--no-figures"])
    assert report.exit_code == 0, report.output
    assert "best optim.momentum" in (study / "report" / "report.md").read_text()


def test_study_nuisance_is_checked_before_training(results):
    out = CliRunner().invoke(app, ["sweep", *TINY, f"results_dir={results}", "study.nuisance=[seed,batch_size]"])
    assert out.exit_code == 2
    assert "must include lr" in out.output and "batch_size names what a study compares" in out.output
    assert not (results / "smoke").exists()


def test_a_bench_that_does_not_tell_a_swept_step_key_apart_is_not_used():
    from bsweep.analysis.timebase import calibrate_times

    summary = pd.DataFrame({
        "trial_id": ["a", "b"], "status": ["complete"] * 2, "norm": ["batch"] * 2, "batch_size": [16, 16],
        "model.kernel_size": [3, 7], "steps_to_target": [100.0, 100.0], "seconds_to_target": [9.0, 9.0],
        "samples_per_second": [1.0, 1.0], "device": ["cpu"] * 2})
    bench = pd.DataFrame({"batch_size": [16], "norm": ["batch"], "seconds_per_step": [0.001],
                          "fused_width": [1], "device": ["cpu"]})
    measurements = pd.DataFrame({"trial_id": ["a", "b"], "step": [100, 100], "train_seconds": [9.0, 9.0]})
    out, _, basis = calibrate_times(summary, measurements, bench)
    assert basis.startswith("measured") and "model.kernel_size" in basis
    assert list(out["seconds_to_target"]) == [9.0, 9.0]
    bench = pd.concat([bench.assign(**{"model.kernel_size": 3}),
                       bench.assign(**{"model.kernel_size": 7, "seconds_per_step": 0.002})])
    out, _, basis = calibrate_times(summary, measurements, bench)
    assert basis.startswith("calibrated") and list(out["seconds_to_target"]) == pytest.approx([0.1, 0.2])
