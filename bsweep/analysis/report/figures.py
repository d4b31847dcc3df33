"""The report's figures: what each shows (its spec: name, title, caption, panels, how to draw
it) and drawing them to PNG (and SVG) files. The plotting itself is in `plots.py` and
`critical_plots.py`; each spec names the view it draws.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import bsweep.analysis.report.critical_plots as critical_plots
import bsweep.analysis.report.plots as plots
from bsweep.analysis import critical
from bsweep.analysis.claims.batch_size import cosine_batch_sizes
from bsweep.analysis.metrics import (
    DEFAULT_METRICS,
    FINISHED_STATUSES,
    aggregate_over_seeds,
    condition_columns,
    nuisance_columns,
    time_optimal_batch_size,
    tuned_view,
)

# Figure resolution for the PNGs (dots per inch): sharp on a laptop screen, ~100 kB a figure.
PNG_DPI = 110
# Width of one panel in inches; figures are this wide per column, 0.8 as tall per row.
PANEL_INCHES = 5.0

FigureSpec = tuple[str, str, str, tuple[int, int], Callable[[Figure], None]]


@dataclass(frozen=True)
class ReportFigure:
    """One figure as written to disk: file stem, title and caption (what to read off it)."""

    name: str
    title: str
    caption: str
    png: Path | None
    svg: Path | None
    error: str = ""


def _norm_order(summary: pd.DataFrame) -> list[str]:
    norms = [n for n in plots.NORM_COLORS if n in set(summary["norm"].dropna())]
    return norms + sorted(set(summary["norm"].dropna()) - set(norms))


def _learning_curve_trials(summary: pd.DataFrame, tuned_time: pd.DataFrame) -> pd.DataFrame:
    """Trials shown in the learning curves: per norm and batch size, the lr fastest to target
    (tuned by seconds), every seed."""
    keys = [*condition_columns(tuned_time), "batch_size", *nuisance_columns(tuned_time)]
    chosen = tuned_time[keys].drop_duplicates()
    finished = summary[summary["status"].isin(FINISHED_STATUSES)]
    return finished.merge(chosen, on=keys)[["trial_id", *keys]]


@dataclass(frozen=True)
class _Views:
    """The views of a study the report's figures draw, each computed once."""

    fixed: pd.DataFrame  # every lr on its own
    tuned_acc: pd.DataFrame
    tuned_time: pd.DataFrame
    tuned_epochs: pd.DataFrame
    tuned_steps: pd.DataFrame
    pooled: pd.DataFrame  # pooled over lr and seeds
    norms: list[str]
    target: float | None


def _views(summary: pd.DataFrame) -> _Views:
    fixed = aggregate_over_seeds(summary, metrics=[*DEFAULT_METRICS, "trained"])
    pooled = aggregate_over_seeds(summary, metrics=[*DEFAULT_METRICS, "step_memory_bytes"],
                                  by=[*condition_columns(fixed), "batch_size"])
    return _Views(
        fixed=fixed,
        tuned_acc=tuned_view(fixed, "final_test_acc"),
        tuned_time=tuned_view(fixed, "seconds_to_target"),
        tuned_epochs=tuned_view(fixed, "epochs_to_target"),
        tuned_steps=tuned_view(fixed, "steps_to_target"),
        pooled=pooled,
        norms=_norm_order(summary[summary["status"].isin(FINISHED_STATUSES)]),
        target=float(summary["target"].dropna().iloc[0]) if summary["target"].notna().any() else None,
    )


def _pair(draw_left: Callable, draw_right: Callable) -> Callable[[Figure], None]:
    """Draw two panels side by side."""
    def draw(fig: Figure) -> None:
        left, right = fig.subplots(1, 2)
        draw_left(left)
        draw_right(right)

    return draw


def _draw_seconds(fig: Figure, v: _Views) -> None:
    left, right = fig.subplots(1, 2)
    plots.plot_seconds_to_target(left, v.tuned_time, time_optimal_batch_size(v.tuned_time))
    left.set_title("Time to target, tuned lr (★ fastest batch size)")
    plots.plot_seconds_to_target(right, v.fixed)
    right.set_title("Time to target, each lr on its own")


def _draw_learning_curves(fig: Figure, v: _Views, summary: pd.DataFrame, measurements: pd.DataFrame) -> None:
    chosen = _learning_curve_trials(summary, v.tuned_time)
    curves = measurements.merge(chosen[["trial_id", "norm", "batch_size"]], on="trial_id")
    axes = fig.subplots(max(len(v.norms), 1), 2, squeeze=False)
    for row, norm in enumerate(v.norms or ["(none)"]):
        these = curves[curves["norm"] == norm]
        for col, x in enumerate(("train_seconds", "samples")):
            plots.plot_learning_curves(axes[row][col], these, x=x, target=v.target)
            axes[row][col].set_title(f"{axes[row][col].get_title()}, norm={norm}")


def _draw_heatmaps(fig: Figure, v: _Views) -> None:
    axes = fig.subplots(max(len(v.norms), 1), 3, squeeze=False)
    for row, norm in enumerate(v.norms):
        one = v.fixed[v.fixed["norm"] == norm]
        plots.plot_lr_batch_size_heatmap(axes[row][0], one)
        axes[row][0].set_title(f"Final test accuracy (%), norm={norm}")
        plots.plot_divergence_heatmap(axes[row][1], one)
        axes[row][1].set_title(f"Diverged seeds (%), norm={norm}")
        plots.plot_trained_heatmap(axes[row][2], one)
        axes[row][2].set_title(f"Seeds that trained (%), norm={norm}")



def _time_and_accuracy_specs(v: _Views) -> list[FigureSpec]:
    """C4, C1 and C5, the lr rule, C2, C3 and the steps-vs-batch-size view."""
    return [
        (
            "seconds_to_target", "Training time to target accuracy (C4)",
            "Seconds of training (evaluation excluded) until the first measurement at or above the "
            "target; batch sizes where some seed never reached it are left out. Left: best lr per "
            "batch size (fastest); right: each lr on its own. The star marks the time-optimal "
            "batch size per norm.",
            (1, 2), lambda fig: _draw_seconds(fig, v),
        ),
        (
            "final_accuracy", "Final test error vs batch size (C1, C5)",
            "Final test error = 1 - mean test accuracy of the last measurements. Left: each lr "
            "on its own (v.fixed-lr protocol); right: best lr per batch size (tuned protocol). "
            "Bars: ±1 std over seeds.",
            (1, 2),
            _pair(lambda ax: plots.plot_final_accuracy(ax, v.fixed), lambda ax: plots.plot_final_accuracy(ax, v.tuned_acc)),
        ),
        (
            "lr_scaling", "How the best learning rate scales with batch size",
            "Points: the most accurate lr per batch size (chosen on the validation half), as in "
            "the answer above. Solid: lr* ~ B^alpha fitted by least squares on log-log axes (the "
            "legend gives alpha and its 95 % interval; the lr grid's half-decade steps make it "
            "coarse). Dashed and dotted: the linear and square-root rules through the points' "
            "geometric mean.",
            (1, 1), lambda fig: plots.plot_best_lr(fig.subplots(), v.tuned_acc),
        ),
        (
            "throughput", "Throughput vs batch size (C2)",
            "Training samples per second at the end of each trial, v.pooled over lr and seeds.",
            (1, 1), lambda fig: plots.plot_throughput(fig.subplots(), v.pooled),
        ),
        (
            "epochs_to_target", "Epochs to target vs batch size (C3)",
            "Passes over the training set until the target. Left: each lr on its own; right: "
            "the lr with fewest epochs per batch size.",
            (1, 2),
            _pair(
                lambda ax: plots.plot_epochs_to_target(ax, v.fixed),
                lambda ax: plots.plot_epochs_to_target(ax, v.tuned_epochs),
            ),
        ),
        (
            "steps_to_target", "Steps to target vs batch size, log-log",
            "Dashed: perfect scaling (slope -1, doubling the batch halves the steps). Following "
            "it: perfect scaling; bending away: diminishing returns; flat: maximal parallelism. "
            "Left: best lr per batch size (fewest steps); right: each lr on its own.",
            (1, 2),
            _pair(
                lambda ax: plots.plot_steps_to_target(ax, v.tuned_steps),
                lambda ax: plots.plot_steps_to_target(ax, v.fixed),
            ),
        ),
    ]


def _curve_and_grid_specs(v: _Views, summary: pd.DataFrame, measurements: pd.DataFrame) -> list[FigureSpec]:
    """The learning curves, the lr x batch size grid (N4) and the loss jitter (C7)."""
    rows = max(len(v.norms), 1)
    return [
        (
            "learning_curves", "Learning curves",
            "Test accuracy vs training seconds (time-to-accuracy curves) and vs samples seen, "
            "one colour per batch size, each batch size at its fastest lr, every seed.",
            (rows, 2), lambda fig: _draw_learning_curves(fig, v, summary, measurements),
        ),
        (
            "heatmaps", "Learning rate x batch size (N4)",
            "Mean final test accuracy over seeds, the share of seeds that diverged, and the share "
            "that trained (final test loss below 0.9x its initial one, nothing non-finite: N4's "
            "lr range), for every lr and batch size of the grid.",
            (rows, 3), lambda fig: _draw_heatmaps(fig, v),
        ),
        (
            "loss_jitter", "Training-loss jitter vs batch size (C7)",
            "Root mean square of the step-to-step change of the training loss over the second "
            "half of the epoch budget (divided by sqrt 2: one step's spread for independent "
            "steps). Dashed: the B^-0.5 slope of a batch mean's sampling noise alone. Left: each "
            "lr on its own; right: the most accurate lr per batch size.",
            (1, 2),
            _pair(lambda ax: plots.plot_loss_jitter(ax, v.fixed), lambda ax: plots.plot_loss_jitter(ax, v.tuned_acc)),
        ),
    ]


def _memory_and_norm_specs(v: _Views) -> list[FigureSpec]:
    """Step memory (C8) and the error per normalization (N1)."""
    return [
        (
            "step_memory", "Memory per training step vs batch size (C8)",
            "Parameters, gradients, optimizer state and the tensors autograd saves for backward "
            "of one step of a trial alone, counted from shapes by `bsweep bench` (the same on "
            "every machine). Without a bench the panel is empty.",
            (1, 1), lambda fig: plots.plot_step_memory(fig.subplots(), v.pooled),
        ),
        (
            "error_by_norm", "Error vs batch size per normalization (N1)",
            "Final test error at the best lr per batch size, batch size decreasing to the right "
            "as in the GroupNorm paper. Bars: ±1 std over seeds.",
            (1, 1), lambda fig: plots.plot_error_by_norm(fig.subplots(), v.tuned_acc),
        ),
    ]


def _figure_specs(summary: pd.DataFrame, measurements: pd.DataFrame) -> list[FigureSpec]:
    """(name, title, caption, (rows, cols), draw) for each figure of the report, in its order."""
    v = _views(summary)
    return [
        *_time_and_accuracy_specs(v),
        *_curve_and_grid_specs(v, summary, measurements),
        *_cosine_specs(summary, measurements),
        *_memory_and_norm_specs(v),
    ]


def _cosine_specs(summary: pd.DataFrame, measurements: pd.DataFrame) -> list:
    """C6's figure: one panel per trial that measured gradient cosines (none: no figure)."""
    sizes = cosine_batch_sizes(measurements.columns)
    if not sizes:
        return []
    rows = measurements[measurements[[f"cosine_b{b}" for b in sizes]].notna().any(axis=1)]
    trials = sorted(set(rows["trial_id"]))
    if not trials:
        return []
    names = summary.set_index("trial_id")

    def draw(fig: Figure) -> None:
        for ax, trial in zip(np.atleast_1d(fig.subplots(1, len(trials))), trials):
            plots.plot_gradient_cosines(ax, rows[rows["trial_id"] == trial], sizes)
            if trial in names.index:
                t = names.loc[trial]
                ax.set_title(f"norm={t['norm']}, bs {int(t['batch_size'])}, lr {float(t['lr']):g}, seed {t['seed']}")

    return [(
        "gradient_cosines", "Descent direction vs batch size (C6)",
        "At checkpoints of the trials with noise.cosine_at: the mean cosine between mini-batch "
        "gradients and the full training-set gradient (bars: standard error over draws), and "
        "dashed the noise-scale model's (1 + B_simple / B)^(-1/2) from the same gradients.",
        (1, len(trials)), draw,
    )]


def draw_figures(
    summary: pd.DataFrame, measurements: pd.DataFrame, figures_dir: Path, svg: bool = False
) -> list[ReportFigure]:
    """Draw every report figure to ``figures_dir`` as PNG and SVG.

    A figure that fails to draw does not stop the report: it is listed with its error, so a
    half-finished study still gets the figures it can.
    """
    return draw_specs(_figure_specs(summary, measurements), figures_dir, svg)


def draw_specs(specs: list[FigureSpec], figures_dir: Path, svg: bool = False) -> list[ReportFigure]:
    """Draw each (name, title, caption, (rows, cols), draw) to PNG (+ SVG when `svg`); a failure
    is listed."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, title, caption, (rows, cols), draw in specs:
        # A Figure made directly (not through pyplot) is never registered globally, so nothing
        # leaks between figures and there is nothing to close.
        fig = Figure(figsize=(PANEL_INCHES * cols, PANEL_INCHES * 0.8 * rows), layout="constrained")
        try:
            draw(fig)
            png, vector = figures_dir / f"{name}.png", (figures_dir / f"{name}.svg" if svg else None)
            fig.savefig(png, dpi=PNG_DPI)
            if vector is not None:
                fig.savefig(vector)
            out.append(ReportFigure(name, title, caption, png, vector))
        except Exception as error:  # noqa: BLE001 - reported in the page, see docstring
            out.append(ReportFigure(name, title, caption, None, None, f"{type(error).__name__}: {error}"))
    return out


def critical_specs(result: critical.CriticalBatchSize) -> list[FigureSpec]:
    """The figures of the "Critical batch size" section (the noise scale's only when measured)."""
    def fit_and_tradeoff(fig: Figure) -> None:
        left, right = fig.subplots(1, 2)
        critical_plots.plot_steps_fit(left, result.points, result.curve, result.fits)
        critical_plots.plot_tradeoff(right, result.points, result.curve, result.fits)

    specs: list[FigureSpec] = [
        (
            "critical_batch_size", "Fitted steps vs batch size, and the steps-examples trade-off",
            "Left: steps to target at the best lr per batch size (points, ±1 std over seeds) and "
            "the fitted S(B) (line); dashed: S_min, dotted: B_crit, where the two asymptotes "
            "meet. Right: the same points as examples (B x steps) against steps, with the "
            "fitted hyperbola (S/S_min - 1)(E/E_min - 1) = 1; x marks B = B_crit.",
            (1, 2), fit_and_tradeoff,
        ),
        (
            "critical_time_optimal", "Predicted vs measured time to target",
            "Line: time to target predicted by the fitted S(B) times the step time t(B) (a "
            "calibrated benchmark when the study has one, else the trials' own seconds per "
            "step). Points: measured seconds to target at the fastest lr per batch size. Star: "
            "predicted time-optimal batch size; diamond: the measured one.",
            (1, 1),
            lambda fig: critical_plots.plot_time_optimal(
                fig.subplots(), result.time_curve, result.seconds_view, result.prediction),
        ),
    ]
    if len(result.noise_curves):
        specs.append((
            "critical_noise_scale", "Gradient noise scale over training",
            "The smoothed simple noise scale B_simple = tr(Sigma) / |G|^2 at the measurement "
            "points of each trial shown in the fit (one line per trial, coloured by batch size), "
            "against samples seen; dashed: the fitted B_crit. McCandlish et al. expect B_simple "
            "near the target to be of the order of B_crit.",
            (1, 1),
            lambda fig: critical_plots.plot_noise_scale(fig.subplots(), result.noise_curves, result.fits),
        ))
    return specs
