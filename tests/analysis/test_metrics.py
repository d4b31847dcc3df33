import numpy as np
import pandas as pd
import pytest

from bsweep.analysis.metrics import (
    aggregate_over_seeds,
    summarize_trials,
    time_optimal_batch_size,
    tuned_view,
)


def one_trial(trial_row_factory, measurement_factory, accs, batch_size=32, **overrides):
    trials = pd.DataFrame([trial_row_factory("t", batch_size=batch_size, **overrides)])
    measurements = pd.DataFrame(measurement_factory("t", batch_size, accs))
    return trials, measurements


def test_first_crossing_of_target(trial_row_factory, measurement_factory):
    # Reaches 0.8 first at the third measurement (200 samples), drops below, then rises again.
    trials, measurements = one_trial(
        trial_row_factory, measurement_factory, [0.1, 0.5, 0.85, 0.7, 0.9], target=0.8
    )
    row = summarize_trials(trials, measurements).iloc[0]
    assert row["samples_to_target"] == 200
    assert row["steps_to_target"] == 200 // 32
    assert row["epochs_to_target"] == pytest.approx(0.2)
    assert row["seconds_to_target"] == pytest.approx(0.2)
    assert row["best_test_acc"] == pytest.approx(0.9)


def test_target_reached_exactly_counts(trial_row_factory, measurement_factory):
    trials, measurements = one_trial(trial_row_factory, measurement_factory, [0.1, 0.8], target=0.8)
    assert summarize_trials(trials, measurements).iloc[0]["samples_to_target"] == 100


def test_never_reached_is_nan(trial_row_factory, measurement_factory):
    trials, measurements = one_trial(
        trial_row_factory, measurement_factory, [0.1, 0.5, 0.79], target=0.8
    )
    row = summarize_trials(trials, measurements).iloc[0]
    for column in ("steps_to_target", "epochs_to_target", "samples_to_target", "seconds_to_target"):
        assert np.isnan(row[column]), column


def test_final_accuracy_is_mean_of_last_window_after_step_zero(
    trial_row_factory, measurement_factory
):
    trials, measurements = one_trial(
        trial_row_factory, measurement_factory, [0.1, 0.5, 0.85, 0.7, 0.9]
    )
    assert summarize_trials(trials, measurements).iloc[0]["final_test_acc"] == pytest.approx(
        (0.85 + 0.7 + 0.9) / 3
    )
    assert summarize_trials(trials, measurements, final_window=2).iloc[0][
        "final_test_acc"
    ] == pytest.approx(0.8)
    # Only one trained measurement: the initial model (step 0) is not part of the window.
    trials, measurements = one_trial(trial_row_factory, measurement_factory, [0.1, 0.6])
    row = summarize_trials(trials, measurements).iloc[0]
    assert row["final_test_acc"] == pytest.approx(0.6)
    assert row["final_test_error"] == pytest.approx(0.4)


def test_measurement_order_does_not_matter(trial_row_factory, measurement_factory):
    trials, measurements = one_trial(
        trial_row_factory, measurement_factory, [0.1, 0.5, 0.85, 0.7, 0.9], target=0.8
    )
    shuffled = measurements.sample(frac=1.0, random_state=0)
    row = summarize_trials(trials, shuffled).iloc[0]
    assert row["samples_to_target"] == 200
    assert row["samples_per_second"] == pytest.approx(1000.0)


def test_throughput_from_last_measurement(trial_row_factory, measurement_factory):
    trials = pd.DataFrame([trial_row_factory("t", batch_size=8)])
    measurements = pd.DataFrame(measurement_factory("t", 8, [0.1, 0.2, 0.3], throughput=250.0))
    row = summarize_trials(trials, measurements).iloc[0]
    assert row["samples_per_second"] == pytest.approx(250.0)
    assert row["n_measurements"] == 3
    assert row["last_samples"] == 200


def test_trial_without_measurements_gets_nan(trial_row_factory, measurement_factory):
    trials = pd.DataFrame(
        [trial_row_factory("a"), trial_row_factory("b", status="failed", error="boom")]
    )
    measurements = pd.DataFrame(measurement_factory("a", 32, [0.1, 0.9]))
    out = summarize_trials(trials, measurements).set_index("trial_id")
    assert out.loc["b", "n_measurements"] == 0
    assert np.isnan(out.loc["b", "final_test_acc"])
    assert np.isnan(out.loc["b", "samples_per_second"])
    assert not out.loc["b", "diverged"]
    assert out.loc["a", "final_test_acc"] == pytest.approx(0.9)


def test_no_measurements_at_all(trial_row_factory, measurement_factory):
    trials = pd.DataFrame([trial_row_factory("a", status="running")])
    empty = pd.DataFrame(measurement_factory("x", 32, [])).reindex(
        columns=pd.DataFrame(measurement_factory("x", 32, [0.1])).columns
    )
    out = summarize_trials(trials, empty)
    assert out.iloc[0]["n_measurements"] == 0
    assert np.isnan(out.iloc[0]["steps_to_target"])


def test_diverged_from_status_or_nonfinite_loss(trial_row_factory, measurement_factory):
    trials = pd.DataFrame(
        [
            trial_row_factory("ok"),
            trial_row_factory("by_status", status="diverged"),
            trial_row_factory("by_loss"),
        ]
    )
    measurements = pd.DataFrame(
        measurement_factory("ok", 32, [0.1, 0.5])
        + measurement_factory("by_status", 32, [0.1, 0.5])
        + measurement_factory("by_loss", 32, [0.1, 0.5, 0.1])
    )
    measurements.loc[measurements.index[-1], "train_loss"] = np.inf
    out = summarize_trials(trials, measurements).set_index("trial_id")["diverged"]
    assert out.to_dict() == {"ok": False, "by_status": True, "by_loss": True}


def test_summarize_keeps_rows_and_index(trial_row_factory, measurement_factory):
    trials = pd.DataFrame(
        [trial_row_factory("b"), trial_row_factory("a")], index=[10, 20]
    )
    measurements = pd.DataFrame(
        measurement_factory("a", 32, [0.1, 0.2]) + measurement_factory("b", 32, [0.1, 0.9])
    )
    before = trials.copy()
    out = summarize_trials(trials, measurements)
    assert list(out.index) == [10, 20]
    assert list(out["trial_id"]) == ["b", "a"]
    assert list(out["final_test_acc"]) == pytest.approx([0.9, 0.2])
    pd.testing.assert_frame_equal(trials, before)


def summary_frame(rows):
    """A summary as summarize_trials would return it, from (bs, lr, seed, acc, steps, status)."""
    records = []
    for i, (bs, lr, seed, acc, steps, status) in enumerate(rows):
        records.append(
            {
                "trial_id": str(i),
                "status": status,
                "norm": "batch",
                "batch_size": bs,
                "lr": lr,
                "seed": seed,
                "final_test_acc": acc,
                "steps_to_target": steps,
                "seconds_to_target": steps,
                "diverged": status == "diverged",
            }
        )
    return pd.DataFrame(records)


def test_aggregate_over_seeds_mean_std_count():
    summary = summary_frame(
        [
            (32, 0.1, 0, 0.80, 10.0, "complete"),
            (32, 0.1, 1, 0.90, np.nan, "complete"),
            (32, 0.1, 2, 0.70, 30.0, "complete"),
            (32, 0.1, 3, 0.00, np.nan, "running"),  # not finished: left out
            (64, 0.1, 0, 0.50, np.nan, "diverged"),
        ]
    )
    agg = aggregate_over_seeds(summary, metrics=["final_test_acc", "steps_to_target"])
    row = agg[agg["batch_size"] == 32].iloc[0]
    assert row["n_trials"] == 3
    assert row["n_reached_target"] == 2
    assert row["final_test_acc_mean"] == pytest.approx(0.8)
    assert row["final_test_acc_std"] == pytest.approx(0.1)
    assert row["final_test_acc_sem"] == pytest.approx(0.1 / np.sqrt(3))
    assert row["steps_to_target_mean"] == pytest.approx(20.0)
    assert row["steps_to_target_count"] == 2
    other = agg[agg["batch_size"] == 64].iloc[0]
    assert other["n_diverged"] == 1
    assert np.isnan(other["final_test_acc_std"])  # one seed: no spread


def test_tuned_view_picks_best_lr_and_flags_edge():
    rows = []
    # bs 32: best lr is the middle one (0.1) -> not on edge.
    for lr, acc in [(0.01, 0.7), (0.1, 0.9), (1.0, 0.8)]:
        rows += [(32, lr, s, acc + 0.01 * s, 10.0, "complete") for s in range(2)]
    # bs 64: best lr is the largest -> on edge.
    for lr, acc in [(0.01, 0.6), (0.1, 0.7), (1.0, 0.85)]:
        rows += [(64, lr, s, acc, 10.0, "complete") for s in range(2)]
    tuned = tuned_view(aggregate_over_seeds(summary_frame(rows)), "final_test_acc").set_index(
        "batch_size"
    )
    assert tuned.loc[32, "best_lr"] == 0.1
    assert not tuned.loc[32, "lr_on_edge"]
    assert tuned.loc[64, "best_lr"] == 1.0
    assert tuned.loc[64, "lr_on_edge"]
    assert tuned.loc[64, "n_lr"] == 3
    assert tuned.loc[32, "final_test_acc_mean"] == pytest.approx(0.905)
    assert (tuned["tuned_by"] == "final_test_acc").all()


def test_tuned_view_single_lr_counts_as_edge():
    summary = summary_frame([(32, 0.1, s, 0.9, 10.0, "complete") for s in range(2)])
    tuned = tuned_view(aggregate_over_seeds(summary))
    assert tuned.iloc[0]["lr_on_edge"]
    assert tuned.iloc[0]["n_lr"] == 1


def test_tuned_view_has_no_edge_where_no_lr_has_a_value():
    # no seed reached the target at any lr: the "best" lr is only the first of a tie, so no
    # edge asks for lrs beyond it (neither the verdicts' caveat nor the bracketing sweeper)
    nan = float("nan")
    rows = [(32, lr, s, 0.5, nan, "complete") for lr in (0.01, 0.1) for s in range(2)]
    rows += [(64, lr, s, 0.9, steps, "complete") for lr, steps in ((0.01, 40.0), (0.1, 20.0)) for s in range(2)]
    tuned = tuned_view(aggregate_over_seeds(summary_frame(rows)), "steps_to_target").set_index("batch_size")
    assert not tuned.loc[32, "lr_on_edge"] and tuned.loc[32, "lr_edge"] == ""
    assert tuned.loc[64, "lr_on_edge"] and tuned.loc[64, "lr_edge"] == "upper"


def test_tuned_view_avoids_diverging_lr_and_seeds_missing_target():
    rows = [
        # lr 1.0: best accuracy on the seed that survives, but one seed diverged.
        (32, 1.0, 0, 0.99, 5.0, "complete"),
        (32, 1.0, 1, 0.99, np.nan, "diverged"),
        # lr 0.3: fastest mean, but one seed never reaches the target.
        (32, 0.3, 0, 0.95, 4.0, "complete"),
        (32, 0.3, 1, 0.95, np.nan, "complete"),
        # lr 0.1: both seeds reach the target.
        (32, 0.1, 0, 0.90, 20.0, "complete"),
        (32, 0.1, 1, 0.90, 30.0, "complete"),
    ]
    agg = aggregate_over_seeds(summary_frame(rows))
    assert tuned_view(agg, "final_test_acc").iloc[0]["best_lr"] == 0.3
    by_steps = tuned_view(agg, "steps_to_target").iloc[0]
    assert by_steps["best_lr"] == 0.1
    assert by_steps["steps_to_target_mean"] == pytest.approx(25.0)


def test_tuned_view_reads_rows_by_position_whatever_the_frames_labels():
    # the ranking takes rows by position: a frame filtered, shuffled or concatenated (repeated
    # labels) gives each point the same best row as a fresh one
    rows = []
    for bs, best in ((32, 0.1), (64, 1.0)):
        for lr in (0.01, 0.1, 1.0):
            rows += [(bs, lr, s, 0.9 if lr == best else 0.7, 10.0, "complete") for s in range(2)]
    agg = aggregate_over_seeds(summary_frame(rows))
    shuffled = agg.sample(frac=1, random_state=0)
    shuffled.index = [0, 1, 0, 1, 0, 1]
    expected = tuned_view(agg).set_index("batch_size")["best_lr"]
    pd.testing.assert_series_equal(tuned_view(shuffled).set_index("batch_size")["best_lr"], expected)
    assert expected.to_dict() == {32: 0.1, 64: 1.0}


def test_time_optimal_batch_size_interior_and_edge():
    rows = []
    for bs, steps in [(8, 40.0), (32, 10.0), (128, 30.0)]:
        rows += [(bs, 0.1, s, 0.9, steps + s, "complete") for s in range(2)]
    # At lr 1.0 time keeps falling with batch size: optimum on the edge of the grid.
    for bs, steps in [(8, 40.0), (32, 20.0), (128, 5.0)]:
        rows += [(bs, 1.0, s, 0.9, steps + s, "complete") for s in range(2)]
    # A batch size where one seed missed the target is not a candidate even if faster.
    rows += [(512, 0.1, 0, 0.9, 1.0, "complete"), (512, 0.1, 1, 0.9, np.nan, "complete")]
    agg = aggregate_over_seeds(summary_frame(rows))
    optimum = time_optimal_batch_size(agg).set_index("lr")
    assert optimum.loc[0.1, "batch_size"] == 32
    assert not optimum.loc[0.1, "on_edge"]
    assert optimum.loc[0.1, "seconds_to_target_mean"] == pytest.approx(10.5)
    assert optimum.loc[1.0, "batch_size"] == 128
    assert optimum.loc[1.0, "on_edge"]


def test_time_optimal_on_tuned_view_groups_by_condition_only(study_factory):
    trials, measurements = study_factory(
        ceiling=lambda norm, bs, lr, seed: 0.95,
        tau_epochs=lambda norm, bs, lr, seed: 1.0 * (bs / 8) ** 0.5 / (lr * 10),
        throughput=lambda norm, bs: 100.0 * bs,
        lrs=(0.1, 0.2),
        norms=("batch", "group"),
    )
    agg = aggregate_over_seeds(summarize_trials(trials, measurements))
    tuned = tuned_view(agg, "seconds_to_target")
    assert set(tuned["best_lr"]) == {0.2}
    optimum = time_optimal_batch_size(tuned)
    assert list(optimum["norm"]) == ["batch", "group"]
    assert "lr" not in optimum.columns
