"""Plots: each function takes a tidy frame and a matplotlib ``ax`` and only draws.

The frames come from ``bsweep.analysis.metrics`` (aggregated fixed-lr or tuned views, the
per-trial summary) or from ``load_measurements`` joined with trial columns. Nothing here
computes a metric or chooses a learning rate: the caller decides what to show.

Batch size is always on a log2 axis (the grids double it); quantities that span decades (time,
steps, throughput) are on log axes too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only, never a window; must precede any pyplot import anywhere

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from bsweep.analysis.load import config_key
from bsweep.analysis.metrics import condition_columns, nuisance_columns

# One colour per normalization, the same in every figure (matplotlib's tab10 palette).
NORM_COLORS: dict[str, str] = {
    "none": "tab:gray",
    "batch": "tab:blue",
    "group": "tab:orange",
    "layer": "tab:green",
    "instance": "tab:red",
    "weight": "tab:purple",
    "lrn": "tab:brown",
}
# Marker per lr value in the fixed-lr view, in order of increasing lr.
LR_MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
# Line styles for the values of swept keys other than norm and lr (model.width=16 vs 32, ...).
LINE_STYLES: tuple[str, ...] = ("-", ":", "-.", (0, (5, 1)), (0, (1, 3)))
# On a line of its own under a title: beside a long title it pushed the title past a narrow
# panel's edge (clipped in two-panel figures whose left panel has its legend beside it).
SPREAD_NOTE = "bars: ±1 std over seeds"


# --------------------------------------------------------------------------- helpers


def batch_size_axis(ax: Axes, batch_sizes: Sequence[float], axis: str = "x") -> None:
    """log2 axis with a tick at each batch size, labelled as a plain integer."""
    sizes = sorted({int(b) for b in batch_sizes if pd.notna(b)})
    set_scale = ax.set_xscale if axis == "x" else ax.set_yscale
    target = ax.xaxis if axis == "x" else ax.yaxis
    set_scale("log", base=2)
    if sizes:
        target.set_major_locator(FixedLocator(sizes))
        target.set_major_formatter(FuncFormatter(lambda v, _: f"{int(round(v))}"))
        target.set_minor_locator(NullLocator())
    (ax.set_xlabel if axis == "x" else ax.set_ylabel)("batch size (samples per step)")


# A legend of more entries than this goes beside the axes, in columns, instead of over the data.
LEGEND_INSIDE = 10
# A figure with more curves than this names each colour, marker and line style once (a key)
# instead of each curve: norm_quick's fixed-lr panels had 35 entries (5 norms x 7 lrs), which
# squeezed the axes to nothing.
MAX_CURVE_ENTRIES = 10


def _legend(ax: Axes) -> None:
    """The axes' legend, small; beside the axes when it is long."""
    n = len(ax.get_legend_handles_labels()[0])
    if n > LEGEND_INSIDE:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), ncol=1 + n // 16)
    elif n:
        ax.legend(fontsize="small")


def grid_and_legend(ax: Axes) -> None:
    """Major grid lines, and a small legend when anything on the axes has a label."""
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax)


def log_y_axis(ax: Axes) -> None:
    """log y axis labelled 0.2, 0.5, 1, 2, 5, ... rather than 2x10^-1 (readable at a glance)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    # Label the minor ticks at 2 and 5 times a power of ten, so a range under a decade still
    # gets numbers; the others stay unlabelled to avoid clutter.
    ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))


def _two_and_five(value: float, _: int) -> str:
    if value <= 0:
        return ""
    leading = value / 10 ** np.floor(np.log10(value))
    return f"{value:g}" if np.isclose(leading, 2) or np.isclose(leading, 5) else ""


class Curve(NamedTuple):
    label: str
    color: str
    marker: str
    style: Any  # a matplotlib line style
    frame: pd.DataFrame  # its rows, sorted by batch size
    norm: str  # what the colour says ("" when the view has no norm)
    lr: str  # what the marker says ("lr=0.01" on a fixed-lr view, else "")
    other: str  # what the line style says (the other swept keys' values, "" when none vary)


def _curves(view: pd.DataFrame) -> list[Curve]:
    """Split a view into curves over batch size.

    One curve per condition (norm, and every other swept key such as ``model.width``), and per
    lr when the view is the fixed-lr view (an ``lr`` column and no ``best_lr``). Colour says
    the norm, the marker the lr, the line style the other swept keys' values.
    """
    columns = condition_columns(view)
    fixed_lr = "lr" in view.columns and "best_lr" not in view.columns
    if fixed_lr:
        columns = [*columns, *nuisance_columns(view)]
    lrs = sorted(view["lr"].dropna().unique()) if fixed_lr else []
    varying = [c for c in columns if view[c].nunique(dropna=False) > 1 or c == "norm"]
    others = [c for c in varying if c not in ("norm", "lr")]
    styles = sorted(view[others].drop_duplicates().itertuples(index=False, name=None)) if others else [()]
    out = []
    groups = view.groupby(columns, sort=True, dropna=False) if columns else [((), view)]
    for key, frame in groups:
        key = key if isinstance(key, tuple) else (key,)
        values = dict(zip(columns, key))
        label = ", ".join(
            f"lr={values[c]:g}" if c == "lr" else (str(values[c]) if c == "norm" else f"{config_key(c)}={values[c]}")
            for c in varying
        )
        color = NORM_COLORS.get(str(values.get("norm")), "black")
        marker = LR_MARKERS[lrs.index(values["lr"]) % len(LR_MARKERS)] if fixed_lr else "o"
        style = LINE_STYLES[styles.index(tuple(values[c] for c in others)) % len(LINE_STYLES)]
        out.append(Curve(label or "all", color, marker, style, frame.sort_values("batch_size"),
                         str(values["norm"]) if "norm" in values else "",
                         f"lr={values['lr']:g}" if fixed_lr else "",
                         ", ".join(f"{config_key(c)}={values[c]}" for c in others)))
    return out


def _label_curves(ax: Axes, curves: list[Curve]) -> bool:
    """Where there are more curves than MAX_CURVE_ENTRIES, put a key on the axes (unlabelled
    stand-ins: each colour's norm, each marker's lr, each line style's other values, once) and
    return False: the curves themselves go unlabelled. Else True: label each curve."""
    if len(curves) <= MAX_CURVE_ENTRIES:
        return True
    seen: set[str] = set()
    for kind in ("norm", "lr", "other"):  # the norms first, then the lrs, then the rest
        for c in curves:
            name = getattr(c, kind)
            look = {"norm": dict(color=c.color), "lr": dict(color="grey", marker=c.marker, linestyle="none"),
                    "other": dict(color="grey", linestyle=c.style)}[kind]
            if name and name not in seen:
                seen.add(name)
                ax.plot([], [], label=name, **look)
    return False


def _plot_metric_vs_batch_size(
    ax: Axes,
    view: pd.DataFrame,
    metric: str,
    ylabel: str,
    spread: str = "std",
    scale: float = 1.0,
    require_all_seeds: bool = False,
    log_y: bool = False,
) -> None:
    """Mean of ``metric`` over seeds vs batch size, one line per curve, error bars = spread."""
    curves = _curves(view)
    labelled = _label_curves(ax, curves)
    for label, color, marker, style, frame, *_ in curves:
        if require_all_seeds:
            # A to-target mean over only the seeds that got there would flatter the point.
            frame = frame[frame["n_reached_target"] == frame["n_trials"]]
        if frame.empty:
            continue
        mean = frame[f"{metric}_mean"].astype(float) * scale
        err = frame[f"{metric}_{spread}"].astype(float).fillna(0.0) * scale
        ax.errorbar(
            frame["batch_size"].astype(float), mean, yerr=err, label=label if labelled else None, color=color,
            marker=marker, markersize=4, capsize=2, linewidth=1.2, linestyle=style,
        )
    batch_size_axis(ax, view["batch_size"])
    if log_y:
        log_y_axis(ax)
    ax.set_ylabel(ylabel)
    grid_and_legend(ax)


# --------------------------------------------------------------------------- 1-5: over batch size


def plot_seconds_to_target(
    ax: Axes, view: pd.DataFrame, optimum: pd.DataFrame | None = None
) -> None:
    """(C4) Training seconds to target vs batch size, with the time-optimal batch size marked.

    ``view``: aggregated view (tuned by seconds_to_target, or fixed-lr); only batch sizes where
    every seed reached the target are drawn. ``optimum``: ``time_optimal_batch_size(view)``.
    """
    _plot_metric_vs_batch_size(
        ax, view, "seconds_to_target", "training time to target (s)",
        spread="std", require_all_seeds=True, log_y=True,
    )
    if optimum is not None:
        found = optimum.dropna(subset=["batch_size"])
        for row in found.itertuples():
            color = NORM_COLORS.get(str(getattr(row, "norm", "")), "black")
            ax.scatter(
                [float(row.batch_size)], [row.seconds_to_target_mean], marker="*", s=180,
                color=color, edgecolor="black", zorder=5,
                label="time-optimal" if row.Index == found.index[0] else None,
            )
        if len(found):
            _legend(ax)
    # the star is named only where it is drawn
    ax.set_title(f"Time to target accuracy\n({SPREAD_NOTE}{'; ★ fastest' if optimum is not None else ''})")


def plot_final_accuracy(ax: Axes, view: pd.DataFrame, as_error: bool = True) -> None:
    """(C1, C5) Final test error (or accuracy) vs batch size, spread over seeds as error bars."""
    if as_error:
        _plot_metric_vs_batch_size(ax, view, "final_test_error", "final test error (%)", scale=100.0)
    else:
        _plot_metric_vs_batch_size(ax, view, "final_test_acc", "final test accuracy (%)", scale=100.0)
    tuned = "best_lr" in view.columns
    ax.set_title(f"Final test {'error' if as_error else 'accuracy'}, {'tuned lr' if tuned else 'fixed lr'}\n({SPREAD_NOTE})")


def plot_throughput(ax: Axes, view: pd.DataFrame) -> None:
    """(C2) Training throughput (samples per second) vs batch size, log-log."""
    _plot_metric_vs_batch_size(
        ax, view, "samples_per_second", "throughput (training samples / s)", log_y=True
    )
    ax.set_title(f"Throughput\n({SPREAD_NOTE})")


def plot_epochs_to_target(ax: Axes, view: pd.DataFrame) -> None:
    """(C3) Epochs to target vs batch size (batch sizes where every seed reached it)."""
    _plot_metric_vs_batch_size(
        ax, view, "epochs_to_target", "epochs to target (passes over the training set)",
        require_all_seeds=True,
    )
    ax.set_title(f"Epochs to target accuracy\n({SPREAD_NOTE})")


def plot_steps_to_target(ax: Axes, view: pd.DataFrame) -> None:
    """Steps to target vs batch size, log-log, with perfect-scaling lines (slope -1).

    Each curve gets its own dashed reference line through its smallest batch size: where the
    curve follows it, doubling the batch halves the steps (perfect scaling); where it bends
    away, returns diminish; where it goes flat, more parallelism no longer helps.
    """
    _plot_metric_vs_batch_size(
        ax, view, "steps_to_target", "optimizer steps to target (steps)",
        require_all_seeds=True, log_y=True,
    )
    first_line = True
    for _, color, _, _, frame, *_ in _curves(view):
        frame = frame[(frame["n_reached_target"] == frame["n_trials"]) & frame["steps_to_target_mean"].notna()]
        if frame.empty:
            continue
        b0, s0 = float(frame["batch_size"].iloc[0]), float(frame["steps_to_target_mean"].iloc[0])
        b = np.array(sorted(view["batch_size"].dropna().astype(float).unique()))
        b = b[b >= b0]
        ax.plot(b, s0 * b0 / b, linestyle="--", color=color, alpha=0.5, linewidth=1,
                label="perfect scaling (slope -1)" if first_line else None)
        first_line = False
    if not first_line:
        _legend(ax)
    ax.set_title("Steps to target (log-log)")


# --------------------------------------------------------------------------- 6: learning curves


def plot_learning_curves(
    ax: Axes,
    curves: pd.DataFrame,
    x: str = "train_seconds",
    target: float | None = None,
) -> None:
    """Test accuracy vs ``x`` ("train_seconds" or "samples"), one colour per batch size.

    ``curves``: measurements joined with the trials' ``batch_size`` (one line per trial_id;
    the caller chooses which trials, e.g. the tuned lr of one norm, every seed).
    """
    sizes = sorted(curves["batch_size"].dropna().astype(int).unique())
    # Colour by log batch size; a single batch size still needs a non-empty range.
    colour_scale = Normalize()
    if sizes:
        colour_scale = LogNorm(vmin=min(sizes), vmax=max(max(sizes), 2 * min(sizes)))
    cmap = matplotlib.colormaps["viridis"]
    labelled: set[int] = set()
    # Trials in order of batch size, so the legend reads 2, 4, 8, ...
    order = curves.groupby("trial_id")["batch_size"].first().sort_values(kind="stable")
    for trial_id in order.index:
        frame = curves[curves["trial_id"] == trial_id].sort_values("step")
        bs = int(frame["batch_size"].iloc[0])
        xs = frame[x].astype(float)
        if x == "train_seconds":
            # A log time axis cannot show t = 0 (the initial model).
            keep = xs > 0
            frame, xs = frame[keep], xs[keep]
        ax.plot(xs, frame["test_acc"].astype(float) * 100.0, color=cmap(colour_scale(bs)),
                linewidth=1, alpha=0.8, label=f"bs {bs}" if bs not in labelled else None)
        labelled.add(bs)
    if target is not None and np.isfinite(target):
        ax.axhline(target * 100.0, color="black", linestyle=":", linewidth=1, label=f"target {target:.0%}")
    if x == "train_seconds":
        ax.set_xscale("log")
        ax.set_xlabel("training time (s, evaluation excluded)")
        ax.set_title("Test accuracy vs training time")
    else:
        ax.set_xlabel("training samples seen")
        ax.set_title("Test accuracy vs samples seen")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    if labelled:
        ax.legend(fontsize="small", ncol=2)


# --------------------------------------------------------------------------- 7: heat maps


def plot_lr_batch_size_heatmap(
    ax: Axes,
    view: pd.DataFrame,
    value: str = "final_test_acc_mean",
    label: str = "final test accuracy (%)",
    scale: float = 100.0,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
) -> None:
    """Heat map of ``value`` over lr (rows) x batch size (columns) of a fixed-lr view.

    ``view`` must hold one row per (lr, batch size): filter it to one norm first. Cells with
    no trial are left blank; every cell is annotated with its number.
    """
    if view.duplicated(["lr", "batch_size"]).any():
        raise ValueError("heat map needs one row per (lr, batch_size); filter to one norm first")
    grid = view.pivot(index="lr", columns="batch_size", values=value).sort_index(ascending=False)
    data = grid.to_numpy(dtype=float) * scale
    image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(grid.shape[1]), [str(int(b)) for b in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [f"{lr:g}" for lr in grid.index])
    ax.set_xlabel("batch size (samples per step)")
    ax.set_ylabel("learning rate")
    for (i, j), number in np.ndenumerate(data):
        if np.isfinite(number):
            ax.text(j, i, f"{number:.3g}", ha="center", va="center", fontsize="x-small",
                    color=_text_colour(image.cmap(image.norm(number))))
    ax.figure.colorbar(image, ax=ax, label=label)


def _text_colour(rgba: tuple[float, ...]) -> str:
    """White text on dark cells, black on light ones (perceived luminance, ITU-R BT.601)."""
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "white" if luminance < 0.5 else "black"


def plot_divergence_heatmap(ax: Axes, view: pd.DataFrame) -> None:
    """Share of seeds that diverged, over lr x batch size (one norm's fixed-lr view)."""
    share = view.assign(diverged_share=view["n_diverged"] / view["n_trials"])
    plot_lr_batch_size_heatmap(
        ax, share, value="diverged_share", label="diverged seeds (%)", cmap="Reds", vmin=0.0, vmax=100.0
    )


def plot_trained_heatmap(ax: Axes, view: pd.DataFrame) -> None:
    """(N4) Share of seeds that trained (``metrics.TRAINED_LOSS_SHARE``) over lr x batch size."""
    plot_lr_batch_size_heatmap(ax, view, value="trained_mean", label="seeds that trained (%)", cmap="Greens",
                               vmin=0.0, vmax=100.0)


def plot_best_lr(ax: Axes, view: pd.DataFrame) -> None:
    """The best lr per batch size (a tuned view), log-log, per norm, with the fitted lr* ~ B^alpha
    (`answer.lr_exponent`, solid) and the linear and square-root rules through the same middle
    point (dashed, dotted)."""
    from bsweep.analysis.answer import LINEAR, SQRT, grid_step, lr_exponent

    for label, color, marker, style, frame, *_ in _curves(view):
        frame = frame[np.isfinite(frame["best_lr"].astype(float))]
        if frame.empty:
            continue
        b, lr = frame["batch_size"].astype(float).to_numpy(), frame["best_lr"].astype(float).to_numpy()
        alpha, lo, hi = lr_exponent(b, lr, grid_step(frame))
        interval = f" [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else ""
        ax.plot(b, lr, color=color, marker=marker, linestyle="none", markersize=6,
                label=f"{label}: B^{alpha:.2f}{interval}" if np.isfinite(alpha) else label)
        if np.isfinite(alpha):
            centre_b, centre_lr = np.exp(np.log(b).mean()), np.exp(np.log(lr).mean())
            grid = np.array([b.min(), b.max()])
            ax.plot(grid, centre_lr * (grid / centre_b) ** alpha, color=color, linestyle=style, linewidth=1.2)
            for slope, dash in ((LINEAR, "--"), (SQRT, ":")):
                ax.plot(grid, centre_lr * (grid / centre_b) ** slope, color=color, linestyle=dash,
                        linewidth=0.7, alpha=0.6)
    ax.plot([], [], color="grey", linestyle="--", linewidth=0.7, label="linear rule (B^1)")
    ax.plot([], [], color="grey", linestyle=":", linewidth=0.7, label="square-root rule (B^0.5)")
    batch_size_axis(ax, view["batch_size"])
    log_y_axis(ax)
    ax.set_ylabel("best learning rate")
    ax.set_title("Best lr per batch size")
    grid_and_legend(ax)


def plot_loss_jitter(ax: Axes, view: pd.DataFrame) -> None:
    """(C7) The training loss's step-to-step jitter vs batch size, log-log, with the slope a
    batch mean's sampling noise alone would have."""
    _plot_metric_vs_batch_size(ax, view, "loss_jitter", "training-loss jitter (nats per step)", log_y=True)
    usable = view[np.isfinite(view["loss_jitter_mean"].astype(float)) & (view["loss_jitter_mean"] > 0)]
    if len(usable):
        b = usable["batch_size"].astype(float)
        anchor = usable.loc[b.idxmin(), "loss_jitter_mean"]
        grid = np.array([b.min(), b.max()])
        ax.plot(grid, anchor * (grid / b.min()) ** -0.5, color="black", linestyle="--", linewidth=0.8,
                label="B^-0.5 (sampling noise alone)")
        _legend(ax)
    tuned = "best_lr" in view.columns
    ax.set_title(f"Training-loss jitter, {'tuned lr' if tuned else 'fixed lr'}\n({SPREAD_NOTE})")


def plot_gradient_cosines(ax: Axes, rows: pd.DataFrame, sizes: Sequence[int]) -> None:
    """(C6) One trial's checkpoints: mean cosine (bars: standard error over draws) between
    mini-batch gradients and the full training-set gradient vs batch size, with the noise-scale
    model's prediction (1 + B_simple / B)^(-1/2) dashed in the same colour."""
    colors = matplotlib.colormaps["viridis"](np.linspace(0.0, 0.85, max(len(rows), 1)))
    for color, (_, row) in zip(colors, rows.sort_values("step").iterrows()):
        b = np.array([s for s in sizes if np.isfinite(float(row.get(f"cosine_b{s}", np.nan)))], dtype=float)
        if not len(b):
            continue
        mean = np.array([row[f"cosine_b{int(s)}"] for s in b], dtype=float)
        err = np.array([row[f"cosine_sd_b{int(s)}"] for s in b], dtype=float) / np.sqrt(float(row["cosine_draws"]))
        ax.errorbar(b, mean, yerr=err, color=color, marker="o", markersize=4, capsize=2, linewidth=1.2,
                    label=f"step {int(row['step'])} (epoch {float(row['epoch']):.2g})")
        noise = float(row.get("cosine_noise_scale", np.nan))
        if np.isfinite(noise) and noise > 0:
            grid = np.geomspace(b.min(), b.max(), 50)
            ax.plot(grid, (1 + noise / grid) ** -0.5, color=color, linestyle="--", linewidth=0.8)
    batch_size_axis(ax, list(sizes))
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
    ax.set_ylabel("cosine with the full-set gradient")
    grid_and_legend(ax)


def plot_step_memory(ax: Axes, view: pd.DataFrame) -> None:
    """(C8) Memory of one training step vs batch size (from the bench), log-log."""
    _plot_metric_vs_batch_size(ax, view, "step_memory_bytes", "memory of one step (MiB)", scale=1 / 2**20,
                               log_y=True)
    ax.set_title("Memory per training step (accounted)")


# --------------------------------------------------------------------------- 8: error per norm


def plot_error_by_norm(ax: Axes, view: pd.DataFrame) -> None:
    """(N1) Final test error vs batch size for each normalization, GroupNorm-paper style.

    Batch size decreases to the right, as in Wu & He (2018) figure 1, so a rise at small batch
    reads as a rise to the right. ``view``: tuned view (or one lr of the fixed-lr view).
    """
    _plot_metric_vs_batch_size(ax, view, "final_test_error", "final test error (%)", scale=100.0)
    ax.invert_xaxis()
    ax.set_xlabel("batch size (samples per step), decreasing →")
    ax.set_title(f"Error vs batch size per normalization\n({SPREAD_NOTE})")
