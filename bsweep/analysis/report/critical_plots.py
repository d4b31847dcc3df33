"""Plots of the critical-batch-size analysis: each takes frames of ``bsweep.analysis.critical``
and an ``ax``, and only draws (the fit, curves and predictions are computed there).

Colours follow ``plots.NORM_COLORS``, one per normalization, as in the other figures.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm

from bsweep.analysis.report.plots import NORM_COLORS, batch_size_axis, grid_and_legend, log_y_axis
from bsweep.analysis.critical import FIT_COLUMNS, PREDICTION_COLUMNS, select_rows

# Marker size of the measured points and of the optimum markers (points^2, matplotlib's unit).
POINT_SIZE = 30
OPTIMUM_SIZE = 180


def _conditions(fits: pd.DataFrame, exclude: tuple[str, ...] = FIT_COLUMNS) -> list[tuple[dict, str, str]]:
    """(values, label, colour) per row of a per-condition frame (fits, or predictions)."""
    by = [c for c in fits.columns if c not in exclude]
    out = []
    for _, fit in fits.iterrows():
        values = {c: fit[c] for c in by}
        shown = {k: v for k, v in values.items() if k == "norm"} or values
        label = ", ".join(str(v) for v in shown.values()) or "all"
        out.append((values, label, NORM_COLORS.get(str(values.get("norm")), "black")))
    return out


def empty_axes(ax: Axes, text: str) -> None:
    """Axes that say in words why there is nothing to draw (no ticks to suggest a scale)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _fitted(fits: pd.DataFrame, points: pd.DataFrame, curve: pd.DataFrame):
    """Per condition: (label, colour, its fit row, its measured points where every seed reached
    the target, its curve)."""
    for values, label, colour in _conditions(fits):
        measured = select_rows(points, values)
        measured = measured[measured["n_reached_target"] == measured["n_trials"]]
        yield label, colour, select_rows(fits, values).iloc[0], measured, select_rows(curve, values)


def plot_steps_fit(ax: Axes, points: pd.DataFrame, curve: pd.DataFrame, fits: pd.DataFrame) -> None:
    """Measured steps to target (tuned lr, mean ± std over seeds) and the fitted S(B), log-log.

    ``points``: the steps view (``critical.steps_view``); ``curve``: ``critical.model_curve``;
    ``fits``: ``critical.fit_critical_batch_size`` (B_crit drawn as a dotted vertical line, S_min
    as a dashed horizontal one: the two asymptotes meet at B = B_crit).
    """
    for label, colour, fit, measured, line in _fitted(fits, points, curve):
        ax.errorbar(measured["batch_size"].astype(float), measured["steps_to_target_mean"],
                    yerr=measured["steps_to_target_std"].fillna(0.0), fmt="o", color=colour,
                    markersize=4, capsize=2, label=f"{label}: measured")
        if line.empty:
            continue
        ax.plot(line["batch_size"], line["steps"], color=colour, linewidth=1.5,
                label=f"{label}: S_min={fit['s_min']:.3g}, B_crit={fit['b_crit']:.3g}")
        ax.axhline(fit["s_min"], color=colour, linestyle="--", linewidth=0.8, alpha=0.6)
        ax.axvline(fit["b_crit"], color=colour, linestyle=":", linewidth=1.0)
    batch_size_axis(ax, points["batch_size"] if len(points) else [])
    log_y_axis(ax)
    ax.set_ylabel("optimizer steps to target (steps)")
    ax.set_title("Steps to target, tuned lr: S(B) = S_min (1 + B_crit / B)")
    grid_and_legend(ax)


def plot_tradeoff(ax: Axes, points: pd.DataFrame, curve: pd.DataFrame, fits: pd.DataFrame) -> None:
    """Examples vs steps to target: the measured points and the fitted hyperbola
    (S / S_min - 1)(E / E_min - 1) = 1, log-log, each measured point labelled with its batch size."""
    for label, colour, fit, measured, line in _fitted(fits, points, curve):
        steps = measured["steps_to_target_mean"].astype(float)
        examples = steps * measured["batch_size"].astype(float)
        ax.scatter(steps, examples, color=colour, s=POINT_SIZE, zorder=3, label=f"{label}: measured")
        for b, x, y in zip(measured["batch_size"], steps, examples):
            ax.annotate(f"{int(b)}", (x, y), textcoords="offset points", xytext=(4, 2), fontsize="x-small")
        if line.empty:
            continue
        ax.plot(line["steps"], line["examples"], color=colour, linewidth=1.5,
                label=f"{label}: fit, E_min={fit['e_min']:.3g}")
        ax.axvline(fit["s_min"], color=colour, linestyle="--", linewidth=0.8, alpha=0.6)
        ax.axhline(fit["e_min"], color=colour, linestyle="--", linewidth=0.8, alpha=0.6)
        ax.scatter([2 * fit["s_min"]], [2 * fit["e_min"]], marker="x", color=colour, s=60,
                   zorder=4, label=f"{label}: B = B_crit (2 S_min, 2 E_min)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("optimizer steps to target (steps)")
    ax.set_ylabel("training examples to target (examples)")
    ax.set_title("Steps vs examples trade-off (dashed: S_min, E_min)")
    grid_and_legend(ax)


def plot_noise_scale(ax: Axes, noise_curves: pd.DataFrame, fits: pd.DataFrame) -> None:
    """Smoothed gradient noise scale B_simple vs samples seen, one line per trial coloured by
    batch size (log colour scale); the fitted B_crit of each condition as a dashed line."""
    if noise_curves.empty:
        empty_axes(ax, "no noise-scale measurements\n(noise tracking was off)")
        return
    sizes = noise_curves["batch_size"].astype(float)
    colours = LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 2))
    cmap = matplotlib.colormaps["viridis"]
    # Samples seen on a log axis: the step-0 point (0 samples) has no place on it and is left out.
    for _, trial in noise_curves[noise_curves["samples"] > 0].groupby("trial_id", sort=True):
        trial = trial.sort_values("samples")
        ax.plot(trial["samples"].astype(float), trial["noise_scale"], linewidth=1.0,
                alpha=0.8, color=cmap(colours(float(trial["batch_size"].iloc[0]))))
    for values, label, colour in _conditions(fits):
        fit = select_rows(fits, values).iloc[0]
        if np.isfinite(fit["b_crit"]):
            ax.axhline(fit["b_crit"], color=colour, linestyle="--", linewidth=1.2,
                       label=f"{label}: fitted B_crit = {fit['b_crit']:.3g}")
    mappable = matplotlib.cm.ScalarMappable(norm=colours, cmap=cmap)
    ax.figure.colorbar(mappable, ax=ax, label="batch size")
    ax.set_xscale("log")
    log_y_axis(ax)
    ax.set_xlabel("training samples seen")
    ax.set_ylabel("noise scale B_simple (examples)")
    ax.set_title("Gradient noise scale over training")
    grid_and_legend(ax)


def plot_time_optimal(ax: Axes, time_curve: pd.DataFrame, seconds_view: pd.DataFrame,
                      prediction: pd.DataFrame) -> None:
    """Predicted time to target S(B) t(B) (line) over the measured one (points, tuned by time),
    with the predicted (star) and measured (diamond) time-optimal batch sizes."""
    for values, label, colour in _conditions(prediction, PREDICTION_COLUMNS):
        line = select_rows(time_curve, values)
        if len(line):
            ax.plot(line["batch_size"], line["predicted_seconds"], color=colour, linewidth=1.5,
                    label=f"{label}: predicted S(B) t(B)")
        measured = select_rows(seconds_view, values)
        if len(measured):
            measured = measured[measured["n_reached_target"] == measured["n_trials"]]
            ax.errorbar(measured["batch_size"].astype(float), measured["seconds_to_target_mean"],
                        yerr=measured["seconds_to_target_std"].fillna(0.0), fmt="o", color=colour,
                        markersize=4, capsize=2, label=f"{label}: measured")
        row = select_rows(prediction, values).iloc[0]
        if np.isfinite(row["predicted_batch_size"]):
            ax.scatter([row["predicted_batch_size"]], [row["predicted_seconds"]], marker="*",
                       s=OPTIMUM_SIZE, color=colour, edgecolor="black", zorder=5,
                       label=f"{label}: predicted optimum {row['predicted_batch_size']:.3g}")
        if np.isfinite(row["measured_batch_size"]):
            ax.scatter([row["measured_batch_size"]], [row["measured_seconds"]], marker="D",
                       s=OPTIMUM_SIZE / 3, facecolor="none", edgecolor=colour, linewidth=2, zorder=6,
                       label=f"{label}: measured optimum {row['measured_batch_size']:g}")
    batch_size_axis(ax, seconds_view["batch_size"] if len(seconds_view) else [])
    log_y_axis(ax)
    ax.set_ylabel("training time to target (s)")
    ax.set_title("Time to target: predicted from the fit vs measured")
    grid_and_legend(ax)
