"""The figure of one `bsweep predict` prediction: predicted seconds to target T(B) = S(B) t(B)
against batch size with its band, the predicted time-optimal batch size B* with its interval,
and, where a grid measured the same setting, the grid's seconds to target beside it.

Drawn from predict.json alone (`predicted.load_predictions`), so `bsweep predict` draws it
without a grid and the report draws it with one (`measured`: `predicted.measured_seconds`).
Conventions as `critical_plots.plot_time_optimal`: log2 batch-size axis, log time axis, the
norm's colour, the optimum a star; the measured points are drawn as that figure draws them.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bsweep.analysis.predicted import MARK, setting_text
from bsweep.analysis.report.critical_plots import OPTIMUM_SIZE, empty_axes
from bsweep.analysis.report.figures import PANEL_INCHES, PNG_DPI
from bsweep.analysis.report.plots import NORM_COLORS, batch_size_axis, log_y_axis

# Characters of the title's second line (the setting) before it wraps: a setting of one's own
# model (its import path) ran off the panel's edge.
TITLE_CHARS = 70
# At most this many labelled batch-size ticks: the curve is dense, and a tick at each of its
# batch sizes would overprint.
MAX_TICKS = 12


def _frame(rows: object, columns: tuple[str, ...]) -> pd.DataFrame:
    """A list of dicts as a frame of `columns` (missing ones NaN), numeric, sorted by batch size."""
    frame = pd.DataFrame(rows if isinstance(rows, list) else [])
    frame = frame.reindex(columns=list(columns)).apply(pd.to_numeric, errors="coerce")
    return frame[frame["batch_size"] > 0].sort_values("batch_size")


def _ticks(sizes: list[float]) -> list[int]:
    """Batch sizes to label: those given (bench, grid), else powers of 2 over their range,
    thinned to powers of 4, 16, ... until at most MAX_TICKS remain."""
    sizes = sorted({int(round(s)) for s in sizes if np.isfinite(s) and s > 0})
    if len(sizes) <= MAX_TICKS:
        return sizes
    lo, hi = math.floor(math.log2(sizes[0])), math.ceil(math.log2(sizes[-1]))
    step = 1
    while (hi - lo) // step + 1 > MAX_TICKS:
        step *= 2
    return [2 ** e for e in range(lo, hi + 1, step)]


def short_setting(prediction: dict) -> str:
    """The setting as the figure's title names it: a `*.name` key by its value alone
    ("mnist1d, cnn, norm=batch, sgd"), others as key=value."""
    setting = prediction.get("setting") if isinstance(prediction.get("setting"), dict) else {}
    if not setting:
        return setting_text(prediction)
    parts = [str(v) if str(k).endswith(".name") else f"{str(k).removesuffix('.kind')}={v}" for k, v in setting.items()]
    return ", ".join(parts)


def _num(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _draw_optimum(ax: Axes, prediction: dict, colour: str) -> None:
    """B* as a star with its interval as a horizontal bar (and the seconds' band as a vertical
    one), the batch sizes within its interval shaded lightly."""
    best = prediction.get("optimum") if isinstance(prediction.get("optimum"), dict) else {}
    b, s = _num(best.get("batch_size")), _num(best.get("seconds"))
    if not (np.isfinite(b) and np.isfinite(s)):
        return
    lo, hi = _num(best.get("lo")), _num(best.get("hi"))
    s_lo, s_hi = _num(best.get("seconds_lo")), _num(best.get("seconds_hi"))
    if np.isfinite(lo) and np.isfinite(hi):
        ax.axvspan(lo, hi, color=colour, alpha=0.07, linewidth=0)
        ax.errorbar([b], [s], xerr=[[b - lo], [hi - b]], fmt="none", ecolor=colour, elinewidth=1.5, capsize=4,
                    zorder=4)
    if np.isfinite(s_lo) and np.isfinite(s_hi):
        ax.errorbar([b], [s], yerr=[[s - s_lo], [s_hi - s]], fmt="none", ecolor=colour, elinewidth=1.5, capsize=4,
                    zorder=4)
    interval = f" [{lo:g}, {hi:g}]" if np.isfinite(lo) and np.isfinite(hi) else ""
    ax.scatter([b], [s], marker="*", s=OPTIMUM_SIZE, color=colour, edgecolor="black", zorder=5,
               label=f"predicted B* = {b:g}{interval}")


def _draw_measured(ax: Axes, measured: pd.DataFrame, colour: str) -> None:
    """The grid's seconds to target per batch size (tuned lr, mean over seeds) with ±1 std bars,
    or lo/hi bars where the frame gives them; its fastest batch size a hollow diamond."""
    m = measured.copy()
    for column in ("seconds_std", "seconds_lo", "seconds_hi"):
        if column not in m:
            m[column] = np.nan
    m = m[(m["batch_size"] > 0) & np.isfinite(m["seconds"].astype(float))].sort_values("batch_size")
    if not len(m):
        return
    b, s = m["batch_size"].astype(float).to_numpy(), m["seconds"].astype(float).to_numpy()
    lo = np.where(np.isfinite(m["seconds_lo"].astype(float)), s - m["seconds_lo"].astype(float),
                  m["seconds_std"].astype(float).fillna(0.0))
    hi = np.where(np.isfinite(m["seconds_hi"].astype(float)), m["seconds_hi"].astype(float) - s,
                  m["seconds_std"].astype(float).fillna(0.0))
    lo = np.minimum(lo, s * 0.999)  # a bar below zero has no place on a log axis
    ax.errorbar(b, s, yerr=[lo, hi], fmt="o", color="black", markersize=4, capsize=2,
                label="grid: measured (tuned lr, mean ± std over seeds)")
    fastest = int(np.argmin(s))
    ax.scatter([b[fastest]], [s[fastest]], marker="D", s=OPTIMUM_SIZE / 3, facecolor="none", edgecolor="black",
               linewidth=2, zorder=6, label=f"grid: fastest batch {b[fastest]:g}")


def draw_prediction(ax: Axes, prediction: dict, measured: pd.DataFrame | None = None) -> None:
    """Draw one prediction on `ax` (see the module's docstring); a prediction without a curve
    gets a line of text saying so, not empty axes."""
    setting = prediction.get("setting") if isinstance(prediction.get("setting"), dict) else {}
    colour = NORM_COLORS.get(str(setting.get("norm.kind")), "tab:blue")
    curve = _frame(prediction.get("curve"), ("batch_size", "seconds", "seconds_lo", "seconds_hi"))
    curve = curve[np.isfinite(curve["seconds"]) & (curve["seconds"] > 0)]
    sizes = list(curve["batch_size"])
    wall = _num(prediction.get("wall_seconds"))
    cost = f" ({wall:.0f} s)" if np.isfinite(wall) else ""
    setting_line = "\n".join(textwrap.wrap(short_setting(prediction), TITLE_CHARS))
    ax.set_title(f"Time to target, {MARK}{cost}\n{setting_line}", fontsize="medium")
    if not len(curve) and (measured is None or not len(measured)):
        empty_axes(ax, "the prediction has no curve of seconds to target\n(its weak reasons say why)")
        return
    if len(curve):
        band = np.isfinite(curve["seconds_lo"]) & np.isfinite(curve["seconds_hi"])
        if band.any():
            ax.fill_between(curve["batch_size"][band], curve["seconds_lo"][band], curve["seconds_hi"][band],
                            color=colour, alpha=0.2, linewidth=0, label="predicted band")
        ax.plot(curve["batch_size"], curve["seconds"], color=colour, linewidth=1.8, label="predicted T(B) = S(B) t(B)")
    _draw_optimum(ax, prediction, colour)
    pilot = prediction.get("pilot") if isinstance(prediction.get("pilot"), dict) else {}
    if np.isfinite(_num(pilot.get("batch_size"))) and _num(pilot.get("seconds_to_target")) > 0:
        ax.scatter([_num(pilot.get("batch_size"))], [_num(pilot.get("seconds_to_target"))], marker="x", s=60,
                   color=colour, zorder=5, label=f"pilot run, batch {_num(pilot.get('batch_size')):g}")
    if measured is not None and len(measured):
        _draw_measured(ax, measured, colour)
        sizes += list(measured["batch_size"].astype(float))
    bench = _frame(prediction.get("bench"), ("batch_size", "step_seconds"))
    ticks = _ticks(list(bench["batch_size"]) + ([] if measured is None else list(measured["batch_size"].astype(float))))
    batch_size_axis(ax, ticks or _ticks(sizes))
    if sizes:
        ax.set_xlim(min(sizes) / 1.3, max(sizes) * 1.3)
    log_y_axis(ax)
    ax.set_ylabel("training time to target (s)")
    ax.grid(True, which="major", alpha=0.3)
    # Under the axes, not on them: the curve is a valley, and a legend in any corner covered
    # one of its arms or the grid's points there.
    if ax.get_legend_handles_labels()[0]:
        ax.figure.legend(loc="outside lower center", ncol=2, fontsize="small", frameon=False)


def plot_prediction(prediction: dict, measured: pd.DataFrame | None = None) -> Figure:
    """A Figure of one prediction (`draw_prediction`), one report panel in size. `measured`:
    the grid's seconds to target per batch size (columns batch_size, seconds, and seconds_std or
    seconds_lo / seconds_hi; `predicted.measured_seconds` makes it from a study)."""
    # Made directly, not through pyplot: never registered globally, nothing to close.
    fig = Figure(figsize=(PANEL_INCHES * 1.2, PANEL_INCHES * 0.8), layout="constrained")
    draw_prediction(fig.subplots(), prediction, measured)
    return fig


def write_prediction_figure(prediction: dict, path: Path, measured: pd.DataFrame | None = None,
                            svg: bool = False) -> Path:
    """Save `plot_prediction` as a PNG at `path` (its folder made), and as SVG beside it (same
    stem) when `svg`, as the report's figures are; return the PNG's path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_prediction(prediction, measured)
    fig.savefig(path, dpi=PNG_DPI)
    if svg:
        fig.savefig(path.with_suffix(".svg"))
    return path
