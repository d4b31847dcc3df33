"""Learning-rate bracketing: the next lr (1-3 grid), the decisions per point and side, and the
`hydra/sweeper=bsweep_bracket` sweeper end to end (real trials, real Hydra)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from bsweep.records import BRACKET_FILE, bracket_settings, bracket_summary, bracket_table
from bsweep.sweep.bracket import decide, half_decade_beyond, settings_problems, with_lr
from bsweep.cli import app
from tests.conftest import TINY


@pytest.mark.parametrize("lr, side, expected", [
    (0.3, "upper", 1.0), (1.0, "upper", 3.0), (0.1, "upper", 0.3), (0.001, "lower", 0.0003),
    (0.0003, "lower", 0.0001), (0.003, "lower", 0.001), (0.05, "upper", 0.1), (0.05, "lower", 0.01),
    (3e-5, "lower", 1e-5),
])
def test_the_next_lr_is_half_a_decade_beyond_on_the_1_3_grid(lr, side, expected):
    got = half_decade_beyond(lr, side)
    assert got == expected and repr(got) == repr(expected)  # 0.0003, not 0.00030000000000000003


def test_the_next_lr_is_always_strictly_beyond():
    for lr in (1e-4, 2e-4, 3e-4, 5e-4, 0.01, 0.02, 0.3, 0.7):
        assert half_decade_beyond(lr, "upper") > lr and half_decade_beyond(lr, "lower") < lr
    with pytest.raises(ValueError, match="positive"):
        half_decade_beyond(0.0, "upper")


def summary(rows: list[tuple]) -> pd.DataFrame:
    """A summarize_trials-like frame: (batch_size, lr, seed, final acc, steps to target, diverged)."""
    out = []
    for i, (bs, lr, seed, acc, steps, diverged) in enumerate(rows):
        out.append({"trial_id": f"t{i}", "status": "diverged" if diverged else "complete", "batch_size": bs,
                    "lr": lr, "seed": seed, "diverged": diverged, "final_test_acc": acc,
                    "steps_to_target": steps})
    return pd.DataFrame(out)


def seeds(bs, lr, acc, steps=math.nan, diverged=False):
    return [(bs, lr, s, acc + 0.001 * s, steps, diverged) for s in (0, 1)]


def test_it_extends_on_the_side_where_the_best_lr_sits():
    frame = summary([
        # batch 1: best at the lowest lr -> lower; batch 64: best at the highest -> upper;
        # batch 16: interior -> nothing
        *seeds(1, 0.01, 0.90), *seeds(1, 0.03, 0.80), *seeds(1, 0.1, 0.50),
        *seeds(16, 0.01, 0.80), *seeds(16, 0.03, 0.90), *seeds(16, 0.1, 0.85),
        *seeds(64, 0.01, 0.70), *seeds(64, 0.03, 0.80), *seeds(64, 0.1, 0.90),
    ])
    got = {(d.label, d.side): d.next_lr for d in decide(frame, 1e-5, 10.0, 3, criteria=["final_test_acc"])}
    assert got == {("batch_size=1", "lower"): 0.003, ("batch_size=64", "upper"): 0.3}


def test_a_diverged_lr_beyond_the_edge_brackets_it():
    frame = summary([*seeds(64, 0.03, 0.80), *seeds(64, 0.1, 0.90),
                     *seeds(64, 0.3, math.nan, diverged=True)])  # every seed of 0.3 diverged
    assert decide(frame, 1e-5, 10.0, 3, criteria=["final_test_acc"]) == []
    # one seed of 0.3 diverging is enough: an lr that sometimes diverges is never the best
    frame = summary([*seeds(64, 0.03, 0.80), *seeds(64, 0.1, 0.90), (64, 0.3, 0, 0.95, math.nan, False),
                     (64, 0.3, 1, math.nan, math.nan, True)])
    assert decide(frame, 1e-5, 10.0, 3, criteria=["final_test_acc"]) == []


def test_the_range_criterion_extends_up_while_every_seed_at_the_top_lr_trained():
    frame = summary([*seeds(8, 0.03, 0.90), *seeds(8, 0.1, 0.85), *seeds(64, 0.03, 0.80), *seeds(64, 0.1, 0.90)])
    # batch 8: one seed at 0.1 failed, so its range is bracketed; batch 64 trained at every seed
    frame["trained"] = [1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    got = {(d.label, d.side): (d.next_lr, d.reason) for d in decide(frame, 1e-5, 10.0, 3, criteria=["trained"])}
    assert got == {("batch_size=64", "upper"): (0.3, "every seed trained at the upper edge, 0.1: trying 0.3")}
    assert settings_problems(1e-5, 10, 3, ["final_test_acc", "trained"]) == []


def test_a_side_stops_at_the_bounds_and_after_max_rounds():
    frame = summary([*seeds(64, 0.3, 0.80), *seeds(64, 1.0, 0.90)])
    [d] = decide(frame, 1e-5, 2.0, 3, criteria=["final_test_acc"])
    assert d.next_lr is None and "3 is outside [1e-05, 2]" in d.reason
    [d] = decide(frame, 1e-5, 10.0, 3, {((64,), "upper"): 3}, criteria=["final_test_acc"])
    assert d.next_lr is None and "3 extra rounds allowed are spent" in d.reason
    [d] = decide(frame, 1e-5, 10.0, 3, {((64,), "upper"): 2}, criteria=["final_test_acc"])
    assert d.next_lr == 3.0


def test_one_lr_tried_extends_both_ways_and_no_target_reached_extends_nothing():
    frame = summary(seeds(16, 0.03, 0.9))
    got = {(d.side, d.next_lr) for d in decide(frame, 1e-5, 10.0, 3, criteria=["final_test_acc"])}
    assert got == {("lower", 0.01), ("upper", 0.1)}
    # steps to target: no seed reached it at any lr -> no best lr on that criterion
    frame = summary([*seeds(16, 0.01, 0.5), *seeds(16, 0.03, 0.6)])
    assert decide(frame, 1e-5, 10.0, 3, criteria=["steps_to_target"]) == []
    # ... and the fastest to target at the highest lr -> upper
    frame = summary([*seeds(16, 0.01, 0.9, steps=400), *seeds(16, 0.03, 0.9, steps=200)])
    [d] = decide(frame, 1e-5, 10.0, 3, criteria=["steps_to_target"])
    assert (d.side, d.next_lr, d.criteria) == ("upper", 0.1, ("steps_to_target",))


def test_a_job_gets_its_new_lr_in_place_or_appended():
    assert with_lr(["batch_size=4", "lr=0.3", "seed=1"], 1.0) == ["batch_size=4", "lr=1", "seed=1"]
    assert with_lr(["batch_size=4", "seed=1"], 3e-05) == ["batch_size=4", "seed=1", "lr=3e-05"]


def test_bad_sweeper_settings_are_named():
    found = "\n".join(settings_problems(1.0, 0.1, -1, ["final_acc"]))
    assert "0 < lr_min < lr_max" in found and "max_rounds=-1" in found and "final_acc" in found
    assert settings_problems(1e-5, 10.0, 3, ["final_test_acc"]) == []


# --- the sweeper, end to end ------------------------------------------------------------------

SWEEP = [*TINY, "study.target=0.2", "batch_size=16", "norm=batch", "lr=0.03,0.1", "seed=0,1",
         "hydra/sweeper=bsweep_bracket", "hydra.sweeper.max_rounds=1", "hydra.sweeper.criteria=[final_test_acc]"]


@pytest.mark.slow
def test_the_sweeper_adds_a_round_records_it_and_a_resumed_sweep_trains_nothing_twice(tmp_path):
    results = tmp_path / "results"
    out = CliRunner().invoke(app, ["sweep", *SWEEP, f"results_dir={results}"])
    assert out.exit_code == 0, out.output
    study = results / "smoke"
    record = json.loads((study / BRACKET_FILE).read_text())
    assert record["done"] and record["max_rounds"] == 1 and record["criteria"] == ["final_test_acc"]
    trials = {p.name for p in (study / "trials").iterdir()}
    [round1] = record["rounds"]  # the grid's best lr sits on an edge: one round on that side
    [added] = round1["added"]
    assert added["side"] in ("lower", "upper") and added["jobs"] == 2
    assert added["lr"] == (0.01 if added["side"] == "lower" else 0.3)
    assert len(trials) == 4 + 2 and set(round1["trial_ids"]) <= trials
    for tid in round1["trial_ids"]:
        config = (study / "trials" / tid / "config.yaml").read_text()
        assert f"lr: {added['lr']}" in config
    # the summary and the time line count the added trials with the planned ones
    assert "6 trials (4 planned, 2 added by lr bracketing): 6 complete (6 trained by this run; 0 finished before)" in out.output
    assert "over 6 trained models" in out.output
    # again: the grid and the round are on disk, the same decisions follow, nothing trains
    stamps = {q: q.stat().st_mtime_ns for q in study.glob("trials/*/measurements.parquet")}
    again = CliRunner().invoke(app, ["sweep", *SWEEP, f"results_dir={results}"])
    assert again.exit_code == 0, again.output
    assert {q: q.stat().st_mtime_ns for q in study.glob("trials/*/measurements.parquet")} == stamps
    assert {p.name for p in (study / "trials").iterdir()} == trials
    assert json.loads((study / BRACKET_FILE).read_text())["rounds"][0]["trial_ids"] == round1["trial_ids"]
    # the report says where the grid was extended, and the sweep's summary line too
    assert "lr bracketing: 1 lr(s) added at 1 point(s), 2 trial(s)" in again.output
    assert "6 trials (4 planned, 2 added by lr bracketing): 6 complete (0 trained by this run; 6 finished before)" in again.output
    assert CliRunner().invoke(app, ["report", str(study), "--no-figures"]).exit_code == 0
    report = (study / "report" / "report.md").read_text()
    assert "## Learning-rate bracketing" in report
    assert "batch_size=16" in added["point"] and f"| 1 | {added['point']} | {added['side']} |" in report


@pytest.mark.slow
def test_under_the_fused_launcher_a_point_brackets_as_soon_as_its_own_trials_end(tmp_path):
    # two points (batch 16 and 64), two lrs each: each point's best lr is on an edge, and its
    # next lr trains in the same launch, as soon as that point's group has ended (no round)
    results = tmp_path / "results"
    args = [*TINY, "norm=batch", "lr=0.03,0.1", "seed=0,1", "hydra/sweeper=bsweep_bracket",
            "hydra.sweeper.max_rounds=1", "hydra.sweeper.criteria=[final_test_acc]",
            "hydra/launcher=bsweep_fused", "hydra.launcher.n_jobs=2", f"results_dir={results}"]
    out = CliRunner().invoke(app, ["sweep", *args])
    assert out.exit_code == 0, out.output
    study = results / "smoke"
    record = json.loads((study / BRACKET_FILE).read_text())
    added = [a for r in record["rounds"] for a in r["added"]]
    assert sorted(a["point"].split()[-1] for a in added) == ["batch_size=16", "batch_size=64"]
    assert all(a["round"] == 1 and a["jobs"] == 2 for a in added)
    assert len(list((study / "trials").iterdir())) == 8 + 4
    # one launch: the launcher logged one batch of jobs, the added trials came through its hook
    assert out.output.count("bsweep_fused: 8 jobs") == 1 and "bsweep_fused: 2 jobs" not in out.output
    stamps = {q: q.stat().st_mtime_ns for q in study.glob("trials/*/measurements.parquet")}
    again = CliRunner().invoke(app, ["sweep", *args])
    assert again.exit_code == 0, again.output
    assert {q: q.stat().st_mtime_ns for q in study.glob("trials/*/measurements.parquet")} == stamps
    assert len(list((study / "trials").iterdir())) == 12


def test_the_record_reads_as_a_table_of_rounds_and_open_edges():
    record = {"lr_min": 1e-5, "lr_max": 10.0, "max_rounds": 1, "criteria": ["final_test_acc"], "done": True,
              "rounds": [{"round": 1, "added": [{"point": "batch_size=1", "side": "lower", "edge_lr": 0.001,
                                                 "lr": 0.0003, "criteria": ["final_test_acc"], "jobs": 2}],
                          "trial_ids": ["a", "b"]}],
              "open_edges": [{"point": "batch_size=1", "side": "lower", "edge_lr": 0.0003, "next_lr": None,
                              "criteria": ["final_test_acc"], "reason": "not bracketed, the 1 extra rounds allowed are spent"}]}
    table = bracket_table(record)
    assert list(table["lr added"]) == [0.0003, "-"] and list(table["trials"]) == [2, 0]
    assert "spent" in table["why"].iloc[1]
    assert "1 edge(s) not bracketed (batch_size=1 lower)" in bracket_summary(record)
    assert "at most 1 lr(s) added" in bracket_settings(record)


def test_bad_sweeper_settings_stop_the_sweep_before_training(tmp_path):
    results = tmp_path / "results"
    out = CliRunner().invoke(app, ["sweep", *SWEEP[:-2], "hydra.sweeper.lr_min=1", "hydra.sweeper.lr_max=0.1",
                                   f"results_dir={results}"])
    assert out.exit_code != 0
    assert "0 < lr_min < lr_max" in out.output and "Traceback" not in out.output
    assert not (results / "smoke" / "trials").exists() or not any((results / "smoke" / "trials").iterdir())
