"""The arithmetic of ``bsweep predict``: from one pilot run to a predicted time-optimal batch size.

The predictor (``bsweep.sweep.predict``) trains one pilot at batch size B0 to the target in S0
steps, tracks the gradient noise on the way, benches the step time t(B) over a geometric set of
batch sizes and branches short runs at k B0. This module turns those numbers into a prediction:

- ``noise_scale_interval``: B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018) from the
  per-point unbiased estimates, with an interval that accounts for their autocorrelation
  (non-overlapping batch means) and for the noisy denominator (Fieller's interval);
- ``steps_curve``: S(B) = S_min (1 + B_crit / B) through the pilot's point (B0, S0);
- ``step_time_at``: t(B) interpolated log-log between benched batch sizes, never extrapolated;
- ``predict_curve`` / ``time_optimum``: T(B) = S(B) t(B), its band over B_crit's interval, and
  the time-optimal batch size B* with the range of B* over that interval;
- ``regimes_text``, ``lr_at``: the regimes of ``critical`` and the lr rule, as the answer says them;
- ``verify_held``: whether a prediction held against a measured grid (issue 32's bar).

Pure numpy / pandas / scipy; no torch. Functions that can fail on thin data return NaN and a
``reason`` instead of raising.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from bsweep.analysis.critical import REGIME_FACTOR, regime

CONFIDENCE = 0.95  # of every interval below
# B_crit values swept log-uniformly over its interval for the bands: 41 resolve the band's
# edges within ~2 % of a 2x interval (and S(B) is monotone in B_crit, so the ends set it anyway).
BAND_POINTS = 41
# Points of the log-spaced batch-size grid of the predicted curve (as ``critical.CURVE_POINTS``).
CURVE_POINTS = 200
# An unbounded B_crit end is swept to this factor of the estimate and its limit (0 or infinity)
# added exactly: S(B) is flat in B_crit beyond it to ~1e-6 relative.
UNBOUNDED_FACTOR = 1e6
# Relative slack when comparing batch sizes that went through float arithmetic (x4 of 64 = 256).
BATCH_RTOL = 1e-9


# --------------------------------------------------------------------------- noise scale


@dataclass(frozen=True)
class NoiseEstimate:
    """B_simple with its interval. ``hi`` is inf when |G|^2 is not resolved from zero at the
    interval's confidence (Fieller's set is unbounded above); ``reason`` says why whenever the
    interval is not a plain finite one, and is "" otherwise."""

    estimate: float
    lo: float
    hi: float
    points: int
    blocks: int
    reason: str


def default_blocks(points: int) -> int:
    """Blocks for ``points`` autocorrelated points: round(sqrt(n)), at least 2."""
    # sqrt(n) blocks of sqrt(n) points is the classic batch-means balance: blocks long enough to
    # decorrelate their means, enough of them to estimate a variance (Flegal & Jones 2010).
    return max(2, int(round(math.sqrt(points))))


def _nan_estimate(reason: str, points: int, blocks: int, estimate: float = math.nan) -> NoiseEstimate:
    return NoiseEstimate(estimate, math.nan, math.nan, points, blocks, reason)


def _block_means(values: np.ndarray, blocks: int) -> np.ndarray:
    """Means of ``blocks`` contiguous, near-equal runs of ``values`` (sizes differ by at most 1)."""
    return np.array([chunk.mean() for chunk in np.array_split(values, blocks)])


def _fieller(mean_t: float, mean_g: float, cov: np.ndarray, quantile: float) -> tuple[float, float, str]:
    """Fieller's interval for mean_t / mean_g from the covariance ``cov`` of (mean_t, mean_g).

    The set of R with (mean_t - R mean_g)^2 <= q^2 Var(mean_t - R mean_g): a quadratic in R.
    Unlike the delta method it stays honest when the denominator is noisy, which |G|^2 near the
    target is (its per-point estimates can be negative).
    """
    q2 = quantile**2
    a = mean_g**2 - q2 * cov[1, 1]
    b = mean_t * mean_g - q2 * cov[0, 1]
    c = mean_t**2 - q2 * cov[0, 0]
    disc = b * b - a * c
    if a <= 0:  # |G|^2 not significantly above zero: the set is unbounded above
        # the set is the whole line (disc <= 0) or two rays; the estimate lies in one of them
        lo = 0.0
        if disc > 0 and a < 0:
            upper = max((b + math.sqrt(disc)) / a, (b - math.sqrt(disc)) / a)
            lo = upper if mean_t / mean_g >= upper else 0.0
        return max(lo, 0.0), math.inf, (
            "|G|^2 is not resolved from zero at this confidence (noise swamps the gradient): "
            "B_simple has no upper bound")
    disc = max(disc, 0.0)  # >= 0 in exact arithmetic when a > 0 (the estimate is inside)
    lo, hi = (b - math.sqrt(disc)) / a, (b + math.sqrt(disc)) / a
    return max(lo, 0.0), hi, ""


def noise_scale_interval(
    grad_norm_sq: Sequence[float],
    trace_sigma: Sequence[float],
    blocks: int | None = None,
    confidence: float = CONFIDENCE,
) -> NoiseEstimate:
    """B_simple = mean(tr Sigma) / mean(|G|^2) over noise points, with a ``confidence`` interval.

    ``grad_norm_sq`` and ``trace_sigma``: per noise point, the unbiased estimates of
    ``bsweep.train.gradient_noise`` (raw, not smoothed), in training order. Neighbouring points
    are correlated (the weights drift slowly), so the variance is that of non-overlapping batch
    means: the points are cut into ``blocks`` contiguous blocks (default ``default_blocks``) and
    the block means treated as independent. The ratio's interval is Fieller's, with Student's t
    at blocks - 1 degrees of freedom. Points where either estimate is not finite are dropped.
    Degenerate input (fewer than 2 blocks' worth, mean |G|^2 <= 0) gives NaN and a ``reason``.
    """
    g = np.asarray(grad_norm_sq, dtype=float)
    t = np.asarray(trace_sigma, dtype=float)
    if g.shape != t.shape or g.ndim != 1:
        return _nan_estimate(f"|G|^2 and tr(Sigma) differ in shape ({g.shape} vs {t.shape})", 0, 0)
    keep = np.isfinite(g) & np.isfinite(t)
    g, t = g[keep], t[keep]
    n = len(g)
    k = default_blocks(n) if blocks is None else int(blocks)
    if k < 2 or n < k:
        return _nan_estimate(f"{n} finite noise point(s) in {k} block(s): an interval needs at least "
                             "2 blocks of at least 1 point", n, k)
    mean_g, mean_t = float(g.mean()), float(t.mean())
    if mean_g <= 0:
        return _nan_estimate(f"mean |G|^2 = {mean_g:.3g} <= 0 over {n} points: the noise swamps the "
                             "gradient, B_simple is unknown", n, k)
    if mean_t <= 0:
        return _nan_estimate(f"mean tr(Sigma) = {mean_t:.3g} <= 0 over {n} points: no gradient noise "
                             "resolved", n, k)
    estimate = mean_t / mean_g
    # covariance of the overall means from the block means' spread (block sizes differ by <= 1)
    means = np.vstack([_block_means(t, k), _block_means(g, k)])
    cov = np.cov(means, ddof=1) / k
    quantile = float(stats.t.ppf(0.5 + confidence / 2, k - 1))
    lo, hi, reason = _fieller(mean_t, mean_g, cov, quantile)
    return NoiseEstimate(estimate, lo, hi, n, k, reason)


# --------------------------------------------------------------------------- the model


def steps_curve(batch_sizes: Sequence[float] | np.ndarray | float, b0: float, s0: float,
                b_crit: float) -> np.ndarray:
    """S(B) = s0 (1 + B_crit / B) / (1 + B_crit / b0): McCandlish et al.'s S = S_min (1 + B_crit / B)
    through the pilot's point (b0 steps s0). B_crit = 0 gives s0 everywhere, infinity s0 b0 / B."""
    b = np.asarray(batch_sizes, dtype=float)
    if math.isinf(b_crit) and b_crit > 0:
        return s0 * b0 / b  # the limit: perfect scaling at every batch size
    return s0 * (1.0 + b_crit / b) / (1.0 + b_crit / b0)


def step_time_at(batch_sizes: Sequence[float] | np.ndarray | float, bench: Mapping[int, float]) -> np.ndarray:
    """Seconds per step at each batch size: log-log linear between the benched points.

    ``bench``: batch size -> measured seconds per step. Exact at benched batch sizes, NaN
    outside [min, max] of the bench (t(B) is measured, not modelled: no extrapolation) and
    everywhere when no benched time is positive and finite.
    """
    b = np.asarray(batch_sizes, dtype=float)
    points = sorted((float(k), float(v)) for k, v in bench.items()
                    if float(k) > 0 and np.isfinite(v) and float(v) > 0)
    out = np.full(b.shape, np.nan)
    if not points:
        return out
    xs = np.array([p[0] for p in points])
    ys = np.array([p[1] for p in points])
    inside = (b >= xs[0]) & (b <= xs[-1])
    out[inside] = np.exp(np.interp(np.log(b[inside]), np.log(xs), np.log(ys)))
    for x, y in points:  # exact at bench points: exp(log(y)) can be off by an ulp
        out[b == x] = y
    return out


def _sweep(b_crit: float, lo: float, hi: float, n: int = BAND_POINTS) -> np.ndarray:
    """B_crit values over [lo, hi], log-uniform, the estimate included; a bound of 0 or infinity
    is swept to ``UNBOUNDED_FACTOR`` of the estimate and its limit added."""
    low = lo if lo > 0 else b_crit / UNBOUNDED_FACTOR
    high = hi if math.isfinite(hi) else b_crit * UNBOUNDED_FACTOR
    values = [np.geomspace(low, high, n), [b_crit]]
    values += [[0.0]] if lo <= 0 else []
    values += [[math.inf]] if not math.isfinite(hi) else []
    return np.concatenate(values)


def _band_ok(b_crit: float, lo: float, hi: float) -> bool:
    return (np.isfinite(b_crit) and b_crit > 0 and not np.isnan(lo) and not np.isnan(hi)
            and 0 <= lo <= b_crit <= hi)


def _seconds_over_sweep(grid: np.ndarray, b0: float, s0: float, sweep: np.ndarray,
                        step_seconds: np.ndarray) -> np.ndarray:
    """Predicted seconds, one row per B_crit of ``sweep``, one column per batch size of ``grid``."""
    return np.vstack([steps_curve(grid, b0, s0, bc) for bc in sweep]) * step_seconds


def predict_curve(b0: float, s0: float, b_crit: float, b_crit_lo: float, b_crit_hi: float,
                  bench: Mapping[int, float], points: int = CURVE_POINTS) -> pd.DataFrame:
    """Predicted steps and seconds to target on a log grid spanning the benched batch sizes.

    Columns: ``batch_size``, ``steps`` (``steps_curve``), ``steps_lo``/``steps_hi``,
    ``step_seconds`` (``step_time_at``), ``seconds`` = steps x step seconds,
    ``seconds_lo``/``seconds_hi``, ``regime`` (``critical.regime``).

    The band is the min / max over B_crit swept log-uniformly over [b_crit_lo, b_crit_hi]
    (``BAND_POINTS`` values and the estimate): it covers B_crit's uncertainty only. With one
    pilot, the seed-to-seed scatter of s0 itself is not in it (every curve passes through
    (b0, s0)). NaN band when the interval is unknown; an empty frame when the bench is.
    """
    columns = ["batch_size", "steps", "steps_lo", "steps_hi", "step_seconds", "seconds",
               "seconds_lo", "seconds_hi", "regime"]
    sizes = [float(k) for k, v in bench.items() if float(k) > 0 and np.isfinite(v) and v > 0]
    if not sizes:
        return pd.DataFrame(columns=columns)
    grid = np.geomspace(min(sizes), max(sizes), points) if len(sizes) > 1 else np.array(sizes)
    step_seconds = step_time_at(grid, bench)
    steps = steps_curve(grid, b0, s0, b_crit)
    if _band_ok(b_crit, b_crit_lo, b_crit_hi):
        swept = np.vstack([steps_curve(grid, b0, s0, bc) for bc in _sweep(b_crit, b_crit_lo, b_crit_hi)])
        steps_lo, steps_hi = swept.min(axis=0), swept.max(axis=0)
    else:
        steps_lo = steps_hi = np.full_like(grid, np.nan)
    return pd.DataFrame({
        "batch_size": grid, "steps": steps, "steps_lo": steps_lo, "steps_hi": steps_hi,
        "step_seconds": step_seconds, "seconds": steps * step_seconds,
        "seconds_lo": steps_lo * step_seconds, "seconds_hi": steps_hi * step_seconds,
        "regime": [regime(float(b), b_crit) for b in grid],
    }, columns=columns)


def _nan_optimum(reason: str) -> dict:
    return {"batch_size": math.nan, "lo": math.nan, "hi": math.nan, "seconds": math.nan,
            "seconds_lo": math.nan, "seconds_hi": math.nan, "within": [], "reason": reason}


def time_optimum(b0: float, s0: float, b_crit: float, b_crit_lo: float, b_crit_hi: float,
                 bench: Mapping[int, float], candidates: Sequence[int]) -> dict:
    """The candidate batch size with the least predicted seconds to target, and how sure.

    Returns ``batch_size`` (argmin of S(B) t(B) over the candidates inside the bench), ``lo`` /
    ``hi`` (the smallest and largest argmin as B_crit runs over [b_crit_lo, b_crit_hi]),
    ``seconds`` with ``seconds_lo`` / ``seconds_hi`` at the chosen batch size (the band of
    ``predict_curve``: B_crit's uncertainty only), ``within`` (sorted candidates whose
    ``seconds_lo`` is at most the best's ``seconds_hi``: not ruled out by the band), and
    ``reason`` ("" when all is known; else why fields are NaN or the band is missing).
    """
    if not (np.isfinite(b_crit) and b_crit > 0):
        return _nan_optimum(f"B_crit is unknown ({b_crit}): no predicted optimum")
    cands = np.array(sorted({float(c) for c in candidates}), dtype=float)
    step_seconds = step_time_at(cands, bench)
    timed = np.isfinite(step_seconds)
    if not timed.any():
        return _nan_optimum("no candidate batch size lies inside the benched range")
    cands, step_seconds = cands[timed], step_seconds[timed]
    seconds = steps_curve(cands, b0, s0, b_crit) * step_seconds
    best = int(np.nanargmin(seconds))
    out = {"batch_size": _as_batch(cands[best]), "seconds": float(seconds[best]), "reason": ""}
    if _band_ok(b_crit, b_crit_lo, b_crit_hi):
        swept = _seconds_over_sweep(cands, b0, s0, _sweep(b_crit, b_crit_lo, b_crit_hi), step_seconds)
        argmins = cands[np.argmin(swept, axis=1)]
        low, high = swept.min(axis=0), swept.max(axis=0)
        out.update(lo=_as_batch(argmins.min()), hi=_as_batch(argmins.max()),
                   seconds_lo=float(low[best]), seconds_hi=float(high[best]),
                   within=[_as_batch(c) for c in cands[low <= high[best]]])
    else:
        out.update(lo=math.nan, hi=math.nan, seconds_lo=math.nan, seconds_hi=math.nan,
                   within=[out["batch_size"]],
                   reason=f"B_crit's interval [{b_crit_lo}, {b_crit_hi}] is unknown: no band")
    return out


def _as_batch(value: float) -> int | float:
    """A batch size as an int when it is a whole number (JSON and the answer print it so)."""
    return int(value) if float(value).is_integer() else float(value)


# --------------------------------------------------------------------------- words and rules


def _num(value: float) -> str:
    """A batch size for prose: whole numbers from 10 up, three significant digits below."""
    return f"{value:.0f}" if value >= 10 else f"{value:.3g}"


def regimes_text(b_crit: float, b_min: float, b_max: float) -> str:
    """The regimes over [b_min, b_max], e.g. "perfect 1-57, diminishing 57-920, maximal 920-1024".

    Boundaries at B_crit / ``REGIME_FACTOR`` and B_crit x ``REGIME_FACTOR`` (as
    ``critical.regime``); a regime with no batch size in range is left out; "" when B_crit is
    unknown or the range is empty.
    """
    if not (np.isfinite(b_crit) and b_crit > 0 and np.isfinite(b_min) and np.isfinite(b_max)
            and 0 < b_min <= b_max):
        return ""
    edges = [b_min, min(max(b_crit / REGIME_FACTOR, b_min), b_max),
             min(max(b_crit * REGIME_FACTOR, b_min), b_max), b_max]
    parts = [f"{name} {_num(lo)}-{_num(hi)}"
             for name, lo, hi in zip(("perfect", "diminishing", "maximal"), edges, edges[1:]) if hi > lo]
    return ", ".join(parts)


def lr_at(batch_size: float, b0: float, lr0: float, exponent: float) -> float:
    """The lr rule through the pilot: lr0 (B / b0)^exponent (0.5: square root; 1: linear)."""
    return float(lr0 * (batch_size / b0) ** exponent)


def _finite(*values: object) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in values)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _optimum_held(pred: float, fastest: float, within: Sequence[float], factor: float) -> tuple[bool, str]:
    if not _finite(pred, fastest):
        return False, f"B* not held: predicted {pred}, measured {fastest} (unknown)"
    in_set = any(math.isclose(pred, float(w), rel_tol=BATCH_RTOL) for w in within)
    near = fastest / factor * (1 - BATCH_RTOL) <= pred <= fastest * factor * (1 + BATCH_RTOL)
    held = in_set or near
    how = ("in the measured within-noise set" if in_set else
           f"within x{factor:g} of the measured fastest" if near else
           f"outside the within-noise set and beyond x{factor:g} of the measured fastest")
    shown = ", ".join(_num(float(w)) for w in sorted(within)) or "none"
    return held, (f"B* {_num(pred)} vs measured {_num(fastest)} (within noise: {shown}): "
                  f"{'held' if held else 'not held'}, {how}")


def _crit_held(pred: float, est: float, lo: float, hi: float, factor: float) -> tuple[bool, str]:
    if not _finite(pred, est):
        return False, f"B_crit not held: predicted {pred}, measured {est} (unknown)"
    in_ci = _finite(lo, hi) and lo <= pred <= hi
    near = est / factor <= pred <= est * factor
    held = in_ci or near
    how = ("in the measured interval" if in_ci else f"within x{factor:g} of the measured estimate" if near
           else f"outside the measured interval and beyond x{factor:g} of its estimate")
    ci = f" [{_num(lo)}, {_num(hi)}]" if _finite(lo, hi) else ""
    return held, (f"B_crit {_num(pred)} vs measured {_num(est)}{ci}: "
                  f"{'held' if held else 'not held'}, {how}")


def verify_held(predicted: Mapping[str, object], measured: Mapping[str, object],
                grid_factor: float = 4.0, crit_factor: float = 1.5) -> dict:
    """Whether a prediction held against a measured grid, by issue 32's bar.

    ``predicted``: ``batch_size`` (B*), ``b_crit``. ``measured``: ``batch_size`` (fastest),
    ``within`` (batch sizes within noise of it), ``b_crit``, ``b_crit_lo``, ``b_crit_hi``.
    B* holds when it is in the within-noise set or within one grid step (x ``grid_factor``) of
    the measured fastest; B_crit holds when it is inside the measured interval or within
    x ``crit_factor`` of the measured estimate. Anything unknown (NaN, missing) does not hold.
    Returns ``optimum_held``, ``b_crit_held``, ``held`` (both) and ``text`` (one line, why).
    """
    def get(source: Mapping[str, object], key: str) -> float:
        value = source.get(key)
        return float(value) if _finite(value) else math.nan  # type: ignore[arg-type]

    within = [float(w) for w in (measured.get("within") or []) if _finite(w)]  # type: ignore[union-attr]
    optimum, optimum_text = _optimum_held(get(predicted, "batch_size"), get(measured, "batch_size"),
                                          within, grid_factor)
    crit, crit_text = _crit_held(get(predicted, "b_crit"), get(measured, "b_crit"),
                                 get(measured, "b_crit_lo"), get(measured, "b_crit_hi"), crit_factor)
    return {"optimum_held": optimum, "b_crit_held": crit, "held": optimum and crit,
            "text": f"{optimum_text}; {crit_text}"}
