"""Critical batch size: a fitted model of steps vs batch size, and what it predicts.

McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training") model the optimizer steps
S and training examples E = B S needed to reach a target, at batch size B with the learning rate
tuned per batch size, as

    S(B) = S_min (1 + B_crit / B),        E(B) = E_min (1 + B / B_crit),    E_min = S_min B_crit,

equivalently (S / S_min - 1)(E / E_min - 1) = 1: a hyperbola trading steps for examples.
B_crit separates three regimes (Shallue et al. 2018 see the same three in measured curves):

- **perfect scaling** (B << B_crit): doubling the batch nearly halves the steps, at nearly no
  extra examples;
- **diminishing returns** (B ~ B_crit): a larger batch still saves steps but costs examples;
  at B = B_crit both are twice their minimum;
- **maximal parallelism** (B >> B_crit): steps cannot fall below S_min; a larger batch only
  spends more examples.

The fit is to steps-to-target in the **tuned view** (``metrics.tuned_view`` with criterion
``steps_to_target``: per batch size, the lr with fewest steps), over the batch sizes at which
every seed reached the target. S is linear in 1/B (S = S_min + S_min B_crit / B), so the fit is
weighted linear least squares with relative-error weights, and its uncertainty is the fit's
covariance (residual scatter, t quantile with n - 2 degrees of freedom), carried to B_crit and
E_min by the delta method in log space (they are positive and their errors multiplicative).

With a step-time model t(B) (``timebase.step_times``: from ``bench.parquet``, a calibrated
benchmark, when given; else seconds per step measured in the trials), the fitted S(B) predicts time to target
T(B) = S(B) t(B) and so the time-optimal batch size, compared with the measured one
(``metrics.time_optimal_batch_size``). When the trials carry a ``noise_scale`` column (the
smoothed B_simple of ``bsweep.train.gradient_noise``), the noise scale near the target is compared with the
fitted B_crit: McCandlish et al. find B_crit ~ B_noise, and B_simple within an order of
magnitude of it.

Pure pandas / numpy: frames in, frames out; no torch, no scipy. Every function that can fail on
thin data returns NaN and a ``reason`` instead of raising.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bsweep.analysis.metrics import (
    FINISHED_STATUSES,
    aggregate_over_seeds,
    condition_columns,
    nuisance_columns,
    time_optimal_batch_size,
    tuned_view,
)
from bsweep.analysis.timebase import step_times
from bsweep.analysis.views import SeedViews

# Batch sizes needed for a fit: two determine the two parameters exactly, leaving no residual
# to test the model or to estimate its uncertainty; three is the least that does both.
MIN_BATCH_SIZES = 3
# Regime boundaries, as a factor of B_crit. At B = B_crit / 4, doubling the batch divides the
# steps by (1 + 4) / (1 + 2) = 1.67 (of an ideal 2): still "perfect scaling" in practice. At
# B = 4 B_crit, doubling divides them by only 1.25 / 1.125 = 1.11: "maximal parallelism".
REGIME_FACTOR = 4.0
REGIMES: tuple[str, ...] = ("perfect scaling", "diminishing returns", "maximal parallelism")
# Points of the log-spaced batch-size grid on which curves and the predicted optimum are
# evaluated: 200 points over a few decades resolve the optimum within ~3 %.
CURVE_POINTS = 200
# Curves are drawn this factor beyond the fitted batch sizes on each side, to show the model's
# asymptotes without pretending to know much outside the data.
CURVE_MARGIN = 2.0
# Iterations of reweighting: weights 1 / fitted S^2 (relative errors). The first fit weights
# by the observed S; re-weighting by the fitted S removes the bias that noise-correlated weights
# give. Three iterations change the fit by < 1e-6 relative on the synthetic tests.
IRLS_ITERATIONS = 3
# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom; beyond, the normal
# 1.96 (off by < 4 % at 31). A table, so the analysis needs no scipy.
T95: tuple[float, ...] = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
CONFIDENCE = 0.95  # of the intervals below (T95)
# A fitted parameter smaller than this share of the data's own scale is zero (rounding only).
NUMERICAL_ZERO = 1e-9

FIT_COLUMNS: tuple[str, ...] = (
    "n_batch_sizes", "b_min", "b_max", "s_min", "s_min_lo", "s_min_hi", "b_crit", "b_crit_lo",
    "b_crit_hi", "e_min", "e_min_lo", "e_min_hi", "rms_rel_residual", "n_lr_on_edge", "reason",
)


def t95(dof: int) -> float:
    """Two-sided 95 % quantile of Student's t with ``dof`` degrees of freedom (NaN if < 1)."""
    if dof < 1:
        return float("nan")
    return T95[dof - 1] if dof <= len(T95) else 1.96


# --------------------------------------------------------------------------- the model


def model_steps(batch_size: np.ndarray | float, s_min: float, b_crit: float) -> np.ndarray:
    """S(B) = S_min (1 + B_crit / B): steps to target at batch size B (tuned lr)."""
    return s_min * (1.0 + b_crit / np.asarray(batch_size, dtype=float))


def model_examples(batch_size: np.ndarray | float, s_min: float, b_crit: float) -> np.ndarray:
    """E(B) = B S(B) = E_min (1 + B / B_crit): training examples to target."""
    b = np.asarray(batch_size, dtype=float)
    return b * model_steps(b, s_min, b_crit)


def regime(batch_size: float, b_crit: float, factor: float = REGIME_FACTOR) -> str:
    """Which regime of the model batch size B is in; "" when B_crit is unknown."""
    if not (np.isfinite(b_crit) and b_crit > 0):
        return ""
    if batch_size <= b_crit / factor:
        return REGIMES[0]
    if batch_size >= b_crit * factor:
        return REGIMES[2]
    return REGIMES[1]


def _nan_fit(reason: str, n: int = 0, b_min: float = np.nan, b_max: float = np.nan) -> dict:
    row: dict = {c: np.nan for c in FIT_COLUMNS}
    row.update(n_batch_sizes=n, b_min=b_min, b_max=b_max, n_lr_on_edge=0, reason=reason)
    return row


def fit_steps_model(batch_sizes: Sequence[float], steps: Sequence[float]) -> dict:
    """Fit S(B) = S_min (1 + B_crit / B) to (batch size, steps to target) points.

    Weighted least squares of S = a + b / B (a = S_min, b = S_min B_crit = E_min) with weights
    1 / S^2: the errors of steps to target are relative (seed scatter and the geometric
    evaluation grid both scale with S), and the points span decades. The covariance is the
    residual variance (n - 2 degrees of freedom) times (X'WX)^-1; intervals (``_lo``/``_hi``,
    95 %) are t intervals in log space by the delta method.

    Returns a dict with ``FIT_COLUMNS`` (``n_lr_on_edge`` 0 here). Degenerate inputs give NaN
    estimates and a ``reason``; ``reason`` is "" for a good fit.
    """
    b = np.asarray(batch_sizes, dtype=float)
    s = np.asarray(steps, dtype=float)
    keep = np.isfinite(b) & np.isfinite(s) & (b > 0) & (s > 0)
    b, s = b[keep], s[keep]
    n = len(np.unique(b))
    b_min = float(b.min()) if len(b) else np.nan
    b_max = float(b.max()) if len(b) else np.nan
    if n < MIN_BATCH_SIZES:
        return _nan_fit(
            f"{n} batch size(s) with steps to target; the fit needs at least {MIN_BATCH_SIZES}",
            n, b_min, b_max,
        )
    design = np.column_stack([np.ones_like(b), 1.0 / b])
    scale = s.copy()  # first pass: relative to the observed steps
    for _ in range(IRLS_ITERATIONS):
        weighted = design / scale[:, None]
        coef, *_ = np.linalg.lstsq(weighted, s / scale, rcond=None)
        fitted = design @ coef
        if not np.all(fitted > 0):
            break
        scale = fitted
    a, slope = (float(c) for c in coef)
    # Rounding leaves ~1e-16 relative where a parameter is exactly zero (e.g. steps exactly
    # proportional to 1/B); anything below this share of the data's scale counts as zero.
    if a <= NUMERICAL_ZERO * s.max():
        return _nan_fit(
            f"fitted S_min = {a:.3g}, i.e. zero or below: steps fall as fast as 1/B or faster up to the largest "
            f"batch size ({b_max:g}), so B_crit is beyond the grid", n, b_min, b_max,
        )
    if slope <= NUMERICAL_ZERO * (s * b).max():
        return _nan_fit(
            f"steps do not fall with batch size (fitted S_min B_crit = {slope:.3g}, zero or below): "
            f"B_crit is below the smallest batch size ({b_min:g})", n, b_min, b_max,
        )
    weighted = design / scale[:, None]
    residual = s / scale - weighted @ coef  # relative residuals
    dof = len(s) - 2
    sigma2 = float(residual @ residual) / dof if dof > 0 else np.nan
    cov = sigma2 * np.linalg.inv(weighted.T @ weighted)
    var_log_a = cov[0, 0] / a**2
    var_log_slope = cov[1, 1] / slope**2
    var_log_crit = var_log_a + var_log_slope - 2 * cov[0, 1] / (a * slope)
    t = t95(dof)

    def interval(value: float, var_log: float) -> tuple[float, float]:
        half = t * np.sqrt(max(var_log, 0.0))
        return value * np.exp(-half), value * np.exp(half)

    b_crit = slope / a
    row = dict(n_batch_sizes=n, b_min=b_min, b_max=b_max, s_min=a, b_crit=b_crit, e_min=slope)
    row["s_min_lo"], row["s_min_hi"] = interval(a, var_log_a)
    row["b_crit_lo"], row["b_crit_hi"] = interval(b_crit, var_log_crit)
    row["e_min_lo"], row["e_min_hi"] = interval(slope, var_log_slope)
    row["rms_rel_residual"] = float(np.sqrt(np.mean(residual**2)))
    row["n_lr_on_edge"] = 0
    row["reason"] = ""
    return row


# --------------------------------------------------------------------------- frames


def _groups(frame: pd.DataFrame, by: list[str]) -> Iterator[tuple[dict, pd.DataFrame]]:
    if not by:
        yield {}, frame
        return
    for key, group in frame.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        yield dict(zip(by, key)), group


def select_rows(frame: pd.DataFrame, values: dict) -> pd.DataFrame:
    """Rows whose columns equal `values` (columns the frame lacks are ignored)."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in values.items():
        if column in frame.columns:
            mask &= (frame[column] == value).to_numpy()
    return frame[mask]


def steps_view(summary: pd.DataFrame) -> pd.DataFrame:
    """The tuned view by steps to target: per scientific point, the lr with fewest steps."""
    return tuned_view(aggregate_over_seeds(summary), "steps_to_target")


def fit_points(view: pd.DataFrame) -> pd.DataFrame:
    """Rows of a steps view the fit uses: every seed reached the target (a mean over the lucky
    seeds would flatter a batch size), with a positive mean."""
    ok = (view["n_reached_target"] == view["n_trials"]) & (view["steps_to_target_mean"] > 0)
    return view[ok & view["steps_to_target_mean"].notna()].sort_values("batch_size")


def fit_critical_batch_size(view: pd.DataFrame) -> pd.DataFrame:
    """Per condition (norm, ...) of a steps view, the fitted S_min, B_crit, E_min with 95 % intervals.

    ``view``: ``steps_view(summary)`` (tuned by steps to target). Output: the condition columns
    and ``FIT_COLUMNS``; ``n_lr_on_edge`` counts fitted batch sizes whose best lr was at the
    edge of the lr grid (their steps may be overestimated). A condition with no usable batch
    size still gets a row, with NaN and its ``reason``; an empty view gives one such row.
    """
    by = condition_columns(view) if len(view.columns) else []
    if view.empty:
        return pd.DataFrame([_nan_fit("no finished trial")], columns=list(FIT_COLUMNS))
    rows = []
    for values, group in _groups(view, by):
        points = fit_points(group)
        if points.empty:
            reached = int(group["n_reached_target"].sum())
            why = ("no trial reached the target" if reached == 0 else
                   "no batch size at which every seed reached the target")
            row = _nan_fit(why)
        else:
            row = fit_steps_model(points["batch_size"].astype(float), points["steps_to_target_mean"])
            if "lr_on_edge" in points.columns:
                row["n_lr_on_edge"] = int(points["lr_on_edge"].astype(bool).sum())
        rows.append({**values, **row})
    return pd.DataFrame(rows, columns=[*by, *FIT_COLUMNS])


def _fitted(fits: pd.DataFrame) -> Iterator[tuple[dict, pd.Series]]:
    by = [c for c in fits.columns if c not in FIT_COLUMNS]
    for _, fit in fits.iterrows():
        if np.isfinite(fit["b_crit"]):
            yield {c: fit[c] for c in by}, fit


def model_curve(fits: pd.DataFrame, points: int = CURVE_POINTS, margin: float = CURVE_MARGIN) -> pd.DataFrame:
    """The fitted S(B) and E(B) on a log grid from b_min / margin to b_max * margin.

    Columns: the condition columns, ``batch_size``, ``steps``, ``examples``. Conditions without
    a fit are left out.
    """
    frames = []
    for values, fit in _fitted(fits):
        grid = np.geomspace(fit["b_min"] / margin, fit["b_max"] * margin, points)
        frames.append(
            pd.DataFrame({**values, "batch_size": grid,
                          "steps": model_steps(grid, fit["s_min"], fit["b_crit"]),
                          "examples": model_examples(grid, fit["s_min"], fit["b_crit"])})
        )
    by = [c for c in fits.columns if c not in FIT_COLUMNS]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=[*by, "batch_size", "steps", "examples"])


def regimes(view: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """Each batch size of the view with its measured and fitted steps and its regime.

    Columns: condition columns, ``batch_size``, ``steps_to_target_mean``, ``examples_to_target``
    (= batch size x measured steps), ``fitted_steps``, ``b_over_b_crit``, ``regime``.
    """
    rows = []
    for values, fit in _fitted(fits):
        for _, point in select_rows(view, values).sort_values("batch_size").iterrows():
            batch = float(point["batch_size"])
            steps = float(point["steps_to_target_mean"]) if point["n_reached_target"] == point["n_trials"] else np.nan
            rows.append({
                **values, "batch_size": batch, "steps_to_target_mean": steps,
                "examples_to_target": batch * steps,
                "fitted_steps": float(model_steps(batch, fit["s_min"], fit["b_crit"])),
                "b_over_b_crit": batch / fit["b_crit"],
                "regime": regime(batch, fit["b_crit"]),
            })
    by = [c for c in fits.columns if c not in FIT_COLUMNS]
    return pd.DataFrame(rows, columns=[*by, "batch_size", "steps_to_target_mean", "examples_to_target",
                                       "fitted_steps", "b_over_b_crit", "regime"])




# --------------------------------------------------------------------------- time to target


def time_curve(fits: pd.DataFrame, times: pd.DataFrame, points: int = CURVE_POINTS) -> pd.DataFrame:
    """Predicted time to target T(B) = S(B) t(B) on a log grid over the batch sizes with a step time.

    t(B) between measured batch sizes is interpolated linearly in log t vs log B (step time is
    close to a power law between neighbouring batch sizes); never extrapolated. Columns:
    condition columns, ``batch_size``, ``seconds_per_step``, ``predicted_seconds``.
    """
    frames = []
    for values, fit in _fitted(fits):
        known = select_rows(times, values).dropna(subset=["seconds_per_step"]).sort_values("batch_size")
        if len(known) < 2:
            continue
        log_b = np.log(known["batch_size"].astype(float).to_numpy())
        log_t = np.log(known["seconds_per_step"].astype(float).to_numpy())
        grid = np.geomspace(np.exp(log_b[0]), np.exp(log_b[-1]), points)
        per_step = np.exp(np.interp(np.log(grid), log_b, log_t))
        frames.append(pd.DataFrame({
            **values, "batch_size": grid, "seconds_per_step": per_step,
            "predicted_seconds": model_steps(grid, fit["s_min"], fit["b_crit"]) * per_step,
        }))
    by = [c for c in fits.columns if c not in FIT_COLUMNS]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=[*by, "batch_size", "seconds_per_step", "predicted_seconds"])


PREDICTION_COLUMNS: tuple[str, ...] = (
    "predicted_batch_size", "predicted_seconds", "predicted_grid_batch_size", "predicted_on_edge",
    "measured_batch_size", "measured_seconds", "measured_on_edge", "step_time_source", "reason",
)


def predict_time_optimal(fits: pd.DataFrame, times: pd.DataFrame, measured: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per condition: the batch size the fitted model predicts fastest to target, vs the measured one.

    ``predicted_batch_size``: argmin of T(B) = S(B) t(B) over the continuous range of batch sizes
    with a step time (``time_curve``); ``predicted_grid_batch_size``: the argmin over the batch
    sizes of the grid itself (comparable with the measured optimum); ``predicted_on_edge``: the
    optimum is at the end of the range (the true one may lie beyond). ``measured``:
    ``metrics.time_optimal_batch_size`` of the view tuned by seconds to target.
    """
    curve = time_curve(fits, times)
    by = [c for c in fits.columns if c not in FIT_COLUMNS]
    rows = []
    for _, fit in fits.iterrows():
        values = {c: fit[c] for c in by}
        row: dict = {**values, **{c: np.nan for c in PREDICTION_COLUMNS}, "reason": ""}
        known = select_rows(times, values).dropna(subset=["seconds_per_step"])
        sources = sorted(set(known["source"])) if len(known) else []
        row["step_time_source"] = "+".join(sources)
        if not np.isfinite(fit["b_crit"]):
            row["reason"] = f"no fit: {fit['reason']}"
        elif len(known) < 2:
            row["reason"] = "step times at fewer than 2 batch sizes"
        else:
            these = select_rows(curve, values)
            best = these.loc[these["predicted_seconds"].idxmin()]
            row["predicted_batch_size"] = float(best["batch_size"])
            row["predicted_seconds"] = float(best["predicted_seconds"])
            row["predicted_on_edge"] = bool(
                np.isclose(best["batch_size"], these["batch_size"].min())
                or np.isclose(best["batch_size"], these["batch_size"].max())
            )
            grid = known.assign(t=model_steps(known["batch_size"].astype(float), fit["s_min"], fit["b_crit"])
                                * known["seconds_per_step"])
            row["predicted_grid_batch_size"] = float(grid.loc[grid["t"].idxmin(), "batch_size"])
        if measured is not None and len(measured):
            found = select_rows(measured, values)
            if len(found) and pd.notna(found["batch_size"].iloc[0]):
                row["measured_batch_size"] = float(found["batch_size"].iloc[0])
                row["measured_seconds"] = float(found["seconds_to_target_mean"].iloc[0])
                row["measured_on_edge"] = bool(found["on_edge"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, *PREDICTION_COLUMNS])


# --------------------------------------------------------------------------- noise scale


def noise_curves(summary: pd.DataFrame, measurements: pd.DataFrame, view: pd.DataFrame) -> pd.DataFrame:
    """Noise-scale measurements of the trials shown in the fit (tuned lr per batch size, every seed).

    Columns: ``trial_id``, condition columns, ``batch_size``, ``seed``, ``samples``, ``step``,
    ``noise_scale``, ``at_target`` (the measurement is at or after the trial's first reach of
    the target). Empty when the measurements carry no ``noise_scale`` (tracking was off).
    """
    by = condition_columns(view)
    columns = ["trial_id", *by, "batch_size", "seed", "samples", "step", "noise_scale", "at_target"]
    if "noise_scale" not in measurements.columns or view.empty:
        return pd.DataFrame(columns=columns)
    keys = [*by, "batch_size", *nuisance_columns(view)]
    finished = summary[summary["status"].isin(FINISHED_STATUSES)]
    chosen = finished.merge(view[keys].drop_duplicates(), on=keys)
    rows = measurements.merge(chosen[["trial_id", *by, "batch_size", "seed", "steps_to_target"]], on="trial_id")
    rows = rows[np.isfinite(rows["noise_scale"].astype(float))]
    rows = rows.assign(at_target=rows["step"] >= rows["steps_to_target"])
    return rows[columns].sort_values(["trial_id", "step"]).reset_index(drop=True)


def noise_at_target(curves: pd.DataFrame, fits: pd.DataFrame) -> pd.DataFrame:
    """Per condition, the measured noise scale near the target vs the fitted B_crit.

    Near the target = each trial's last noise measurement at or before its first reach of the
    target (the smoothed value there averages the approach to it); median over trials, because
    B_simple is a ratio of noisy estimates with a heavy upper tail. Columns: condition columns,
    ``noise_scale_at_target``, ``n_trials``, ``b_crit``, ``b_crit_over_noise``, ``reason``.
    """
    by = [c for c in fits.columns if c not in FIT_COLUMNS]
    rows = []
    for _, fit in fits.iterrows():
        values = {c: fit[c] for c in by}
        row = {**values, "noise_scale_at_target": np.nan, "n_trials": 0, "b_crit": fit["b_crit"],
               "b_crit_over_noise": np.nan, "reason": ""}
        these = select_rows(curves, values)
        before = these[~these["at_target"].astype(bool)] if len(these) else these
        near = before.groupby("trial_id").tail(1) if len(before) else before
        near = near[near["noise_scale"] > 0] if len(near) else near
        if curves.empty:
            row["reason"] = "no noise-scale measurements (noise tracking was off)"
        elif near.empty:
            row["reason"] = "no positive noise-scale measurement before the target"
        else:
            row["noise_scale_at_target"] = float(near["noise_scale"].median())
            row["n_trials"] = int(near["trial_id"].nunique())
            row["b_crit_over_noise"] = fit["b_crit"] / row["noise_scale_at_target"]
        rows.append(row)
    return pd.DataFrame(rows, columns=[*by, "noise_scale_at_target", "n_trials", "b_crit",
                                       "b_crit_over_noise", "reason"])


# --------------------------------------------------------------------------- everything, and in words


@dataclass(frozen=True)
class CriticalBatchSize:
    """Every frame of the critical-batch-size analysis (see ``analyse_critical_batch_size``)."""

    points: pd.DataFrame  # the steps view (tuned by steps to target)
    fits: pd.DataFrame  # fit_critical_batch_size
    curve: pd.DataFrame  # model_curve
    regimes: pd.DataFrame
    step_times: pd.DataFrame
    time_curve: pd.DataFrame
    seconds_view: pd.DataFrame  # tuned by seconds to target: the measured times
    prediction: pd.DataFrame
    noise_curves: pd.DataFrame
    noise: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def any_fit(self) -> bool:
        return bool(np.isfinite(self.fits["b_crit"].astype(float)).any())


def analyse_critical_batch_size(
    summary: pd.DataFrame, measurements: pd.DataFrame, bench: pd.DataFrame | None = None,
    views: SeedViews | None = None,
) -> CriticalBatchSize:
    """The whole analysis from ``metrics.summarize_trials`` output and the measurements;
    `views`: the summary's views, when the caller shares them (`study.Study`)."""
    views = SeedViews(summary) if views is None else views
    fixed = views.fixed()
    points = views.tuned("steps_to_target") if len(fixed) else fixed
    fits = fit_critical_batch_size(points)
    seconds = views.tuned("seconds_to_target") if len(fixed) else fixed
    measured = time_optimal_batch_size(seconds) if len(seconds) else None
    times = step_times(summary, bench)
    curves = noise_curves(summary, measurements, points)
    notes = []
    if bench is not None and not (times["source"] == "benchmark").any():
        notes.append("bench.parquet has no step time for these trials' device / norms; "
                     "step times come from the trials themselves.")
    return CriticalBatchSize(
        points=points, fits=fits, curve=model_curve(fits), regimes=regimes(points, fits),
        step_times=times, time_curve=time_curve(fits, times), seconds_view=seconds,
        prediction=predict_time_optimal(fits, times, measured), noise_curves=curves,
        noise=noise_at_target(curves, fits), notes=notes,
    )


def _label(values: dict) -> str:
    shown = {k: v for k, v in values.items() if k == "norm"} or values
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "all trials"


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def reading(result: CriticalBatchSize) -> list[str]:
    """What the fit means for the choice of batch size, one paragraph per condition."""
    by = [c for c in result.fits.columns if c not in FIT_COLUMNS]
    out = []
    for _, fit in result.fits.iterrows():
        values = {c: fit[c] for c in by}
        name = _label(values)
        if not np.isfinite(fit["b_crit"]):
            out.append(f"{name}: no fit ({fit['reason']}).")
            continue
        s_min, b_crit, e_min = fit["s_min"], fit["b_crit"], fit["e_min"]
        low, high = b_crit / REGIME_FACTOR, b_crit * REGIME_FACTOR
        text = [
            f"{name}: steps to target follow S(B) = {_num(s_min)} x (1 + {_num(b_crit)} / B) "
            f"(B_crit 95 % interval {_num(fit['b_crit_lo'])}-{_num(fit['b_crit_hi'])}; "
            f"rms misfit {fit['rms_rel_residual']:.0%}).",
            f"Below a batch size of about {_num(low)}, doubling the batch nearly halves the steps "
            "at almost no extra data (perfect scaling): a larger batch is free speed wherever "
            "a step does not get slower.",
            f"Between about {_num(low)} and {_num(high)} a larger batch still saves steps but "
            f"needs more training examples (diminishing returns); at B = {_num(b_crit)} both "
            f"are twice their minimum ({_num(2 * s_min)} steps, {_num(2 * e_min)} examples).",
            f"Above about {_num(high)} no batch size gets below {_num(s_min)} steps; a larger "
            "batch only spends more data and compute (maximal parallelism).",
        ]
        if b_crit < fit["b_min"] or b_crit > fit["b_max"]:
            text.append(f"B_crit lies outside the batch sizes fitted ({fit['b_min']:g}-{fit['b_max']:g}): "
                        "it is an extrapolation, read it as a bound.")
        if fit["n_lr_on_edge"]:
            text.append(f"At {int(fit['n_lr_on_edge'])} of {int(fit['n_batch_sizes'])} batch sizes the best "
                        "lr was at the edge of the lr grid, so their steps may be overestimated.")
        prediction = select_rows(result.prediction, values)
        if len(prediction) and np.isfinite(prediction["predicted_batch_size"].iloc[0]):
            p = prediction.iloc[0]
            where = "on the calibrated benchmark's step times" if "benchmark" in p["step_time_source"] else \
                "on the step times measured in the trials"
            text.append(f"For time to target {where}, the model predicts the fastest batch size at "
                        f"~{_num(p['predicted_batch_size'])} (on the grid: {p['predicted_grid_batch_size']:g})"
                        + (" at the edge of the batch sizes with a step time, so possibly beyond it" if p["predicted_on_edge"] else "")
                        + (f"; measured fastest: {p['measured_batch_size']:g}." if np.isfinite(p["measured_batch_size"]) else "; no measured optimum (no batch size where every seed reached the target)."))
        noise = select_rows(result.noise, values)
        if len(noise) and np.isfinite(noise["noise_scale_at_target"].iloc[0]):
            q = noise.iloc[0]
            text.append(f"The gradient noise scale measured near the target is {_num(q['noise_scale_at_target'])} "
                        f"(median of {int(q['n_trials'])} trials), {q['b_crit_over_noise']:.2g}x below the fitted "
                        "B_crit" if q["b_crit_over_noise"] >= 1 else
                        f"The gradient noise scale measured near the target is {_num(q['noise_scale_at_target'])} "
                        f"(median of {int(q['n_trials'])} trials), {1 / q['b_crit_over_noise']:.2g}x above the fitted B_crit")
            text[-1] += (" (McCandlish et al. find them within an order of magnitude: "
                         + ("consistent)." if 0.1 <= q["b_crit_over_noise"] <= 10 else "this study is not).")
                         )
        out.append(" ".join(text))
    return out
