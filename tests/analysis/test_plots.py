import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure

from bsweep.analysis.report import plots
from bsweep.analysis.metrics import (
    aggregate_over_seeds,
    summarize_trials,
    time_optimal_batch_size,
    tuned_view,
)


@pytest.fixture(scope="module")
def study():
    from tests.analysis.conftest import make_study

    trials, measurements = make_study(
        ceiling=lambda n, bs, lr, s: 0.95 - 0.002 * s - (0.3 if n == "batch" and bs <= 4 else 0),
        tau_epochs=lambda n, bs, lr, s: 0.3 * max(1.0, bs / 16) * (0.1 / lr),
        batch_sizes=(2, 8, 32, 128),
        lrs=(0.05, 0.1),
        norms=("batch", "group"),
        seeds=(0, 1),
        diverges=lambda n, bs, lr, s: bs == 2 and lr == 0.1 and s == 1,
    )
    summary = summarize_trials(trials, measurements)
    fixed = aggregate_over_seeds(summary)
    return {
        "trials": trials,
        "measurements": measurements,
        "summary": summary,
        "fixed": fixed,
        "tuned_acc": tuned_view(fixed, "final_test_acc"),
        "tuned_time": tuned_view(fixed, "seconds_to_target"),
        "tuned_steps": tuned_view(fixed, "steps_to_target"),
        "pooled": aggregate_over_seeds(summary, by=["norm", "batch_size"]),
    }


def new_ax():
    return Figure(figsize=(5, 4)).add_subplot()


def drawn(ax) -> int:
    return len(ax.lines) + len(ax.collections) + len(ax.images)


def test_seconds_to_target_marks_optimum(study):
    ax = new_ax()
    optimum = time_optimal_batch_size(study["tuned_time"])
    plots.plot_seconds_to_target(ax, study["tuned_time"], optimum)
    assert drawn(ax) > 0
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "(s)" in ax.get_ylabel()
    assert "time-optimal" in ax.get_legend_handles_labels()[1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "8", "32", "128"]


@pytest.mark.parametrize("view_name", ["fixed", "tuned_acc"])
def test_final_accuracy_fixed_and_tuned(study, view_name):
    ax = new_ax()
    plots.plot_final_accuracy(ax, study[view_name])
    labels = ax.get_legend_handles_labels()[1]
    if view_name == "fixed":
        assert "batch, lr=0.05" in labels and "group, lr=0.1" in labels
    else:
        assert labels == ["batch", "group"]
    assert "error (%)" in ax.get_ylabel()


def test_many_curves_get_a_key_not_a_legend_entry_each():
    # five norms x six lrs: 30 curves. One legend entry each squeezed norm_quick's panels to
    # nothing; the legend names each colour (norm) and each marker (lr) once, beside the axes
    import warnings

    from tests.analysis.conftest import make_study

    norms, lrs = ("batch", "group", "lrn", "none", "weight"), (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    trials, measurements = make_study(
        ceiling=lambda n, bs, lr, s: 0.9, tau_epochs=lambda n, bs, lr, s: 0.3 * (0.1 / lr),
        batch_sizes=(8, 64, 512), lrs=lrs, norms=norms, seeds=(0, 1))
    fixed = aggregate_over_seeds(summarize_trials(trials, measurements))
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    plots.plot_final_accuracy(left, fixed)
    plots.plot_final_accuracy(right, tuned_view(fixed, "final_test_acc"))
    assert left.get_legend_handles_labels()[1] == [*norms, *(f"lr={lr:g}" for lr in lrs)]
    assert right.get_legend_handles_labels()[1] == list(norms)
    assert sum(1 for line in left.lines if line.get_xydata().size) >= len(norms) * len(lrs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied ... collapsed to zero"
        fig.savefig(__import__("io").BytesIO(), format="png")


def test_throughput(study):
    ax = new_ax()
    plots.plot_throughput(ax, study["pooled"])
    assert drawn(ax) > 0 and ax.get_yscale() == "log"
    assert "samples / s" in ax.get_ylabel()


def test_epochs_to_target_skips_points_missing_seeds(study):
    ax = new_ax()
    plots.plot_epochs_to_target(ax, study["fixed"])
    # batch norm at bs 2 never reaches the target: that curve starts at 8.
    xs = {c.get_label(): list(c.lines[0].get_xdata()) for c in ax.containers}
    assert xs["batch, lr=0.1"][0] == 8.0
    assert xs["group, lr=0.05"][0] == 2.0


def test_steps_to_target_has_slope_minus_one_line(study):
    ax = new_ax()
    plots.plot_steps_to_target(ax, study["tuned_steps"])
    reference = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert reference
    x, y = (np.asarray(v, dtype=float) for v in reference[0].get_data())
    slope = np.polyfit(np.log(x), np.log(y), 1)[0]
    assert slope == pytest.approx(-1.0)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


@pytest.mark.parametrize("x", ["train_seconds", "samples"])
def test_learning_curves(study, x):
    curves = study["measurements"].merge(
        study["trials"][["trial_id", "batch_size", "norm"]], on="trial_id"
    )
    curves = curves[(curves["norm"] == "group") & (curves["lr"] == 0.05)]
    ax = new_ax()
    plots.plot_learning_curves(ax, curves, x=x, target=0.8)
    assert len(ax.lines) == curves["trial_id"].nunique() + 1  # + the target line
    assert {"bs 2", "bs 128", "target 80%"} <= set(ax.get_legend_handles_labels()[1])


def test_heatmaps(study):
    one_norm = study["fixed"][study["fixed"]["norm"] == "batch"]
    ax = new_ax()
    plots.plot_lr_batch_size_heatmap(ax, one_norm)
    assert len(ax.images) == 1
    assert ax.images[0].get_array().shape == (2, 4)
    assert len(ax.texts) == 8
    ax = new_ax()
    plots.plot_divergence_heatmap(ax, one_norm)
    cells = {t.get_text() for t in ax.texts}
    assert "50" in cells  # one of two seeds diverged at bs 2, lr 0.1


def test_heatmap_refuses_several_norms(study):
    with pytest.raises(ValueError, match="one norm"):
        plots.plot_lr_batch_size_heatmap(new_ax(), study["fixed"])


def test_error_by_norm_reads_decreasing_batch(study):
    ax = new_ax()
    plots.plot_error_by_norm(ax, study["tuned_acc"])
    assert ax.xaxis_inverted()
    assert set(ax.get_legend_handles_labels()[1]) == {"batch", "group"}


def test_empty_view_draws_without_error(study):
    empty = study["tuned_time"].iloc[0:0]
    ax = new_ax()
    plots.plot_seconds_to_target(ax, empty, time_optimal_batch_size(empty))
    assert drawn(ax) == 0
