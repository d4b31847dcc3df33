"""The statistics the verdicts rest on: Tukey's studentized range (its CDF and quantile,
computed on fixed quadrature grids in numpy) and `SeedSpread`, the seed-to-seed spread of one
slice and the significance tests built on it.

scipy's `studentized_range` is the reference, but its CDF is an adaptive 2-D integral (`nquad`)
and its quantile a root search over many of them, too slow for the hundreds of quantiles a report
asks for (docs/performance.md, "Analysis"). Here the same double integral runs on fixed
Gauss-Legendre grids, the inner one tabulated once per k, equal to scipy's to 1e-8 relative over
the range the verdicts use (tests/analysis/test_stats.py compares them).

The distribution (Tukey 1953; Copenhaver and Holland 1988): Q = range of k standard normals /
S, with S = chi_df / sqrt(df) independent of them, so

    P(Q <= q) = int_0^inf g_df(s) W_k(q s) ds,
    W_k(w)    = k int phi(z) [Phi(z) - Phi(z - w)]^(k - 1) dz    (the range's CDF),

with g_df the density of S.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq
from scipy.special import gammaln, ndtr
from scipy.stats import chi, t

# Quadrature: composite Gauss-Legendre, Z_PANELS and S_PANELS panels of NODES nodes each. The
# integrands are smooth (products of normal densities and CDFs). With 8 and 24 panels the
# quantiles of the test grid are within 4e-10 of scipy's; 8 and 8 missed df = 1 by 7e-5, and
# 16 and 32 cost 3.2x the time for no change at 10 digits.
Z_PANELS, S_PANELS, NODES = 8, 24, 16
# phi(z) < 1e-17 beyond |z| = 9: the z axis is [-Z_EDGE, Z_EDGE].
Z_EDGE = 9.0
# S's axis runs between its 1e-16 and 1 - 1e-16 quantiles: what lies outside moves a CDF by
# less than 2e-16.
S_TAIL = 1e-16
# W_k is tabulated once per k on [0, W_MAX] and interpolated (a cubic spline through W_POINTS
# values): each CDF then costs a spline evaluation per S node instead of a z integral per node.
# Beyond W_MAX = 16 the range of k <= 1000 normals exceeds w with probability below 1e-16.
W_MAX, W_POINTS = 16.0, 4097
# Quantiles are rounded to this many significant digits, below the integrals' accuracy and far
# above float rounding, so that the last bits of numpy's vectorized exp and log (which differ
# between CPU kernel families) cannot reach a verdict.
DIGITS = 10


# Family-wise false-positive rate of one slice's comparisons (see `SeedSpread`).
ALPHA = 0.05
# A "does not hold" that rests on a difference that is not significant stands only when the
# study could have detected a difference that matters (with POWER); otherwise it is
# inconclusive and says how many seeds it would take. What matters: 1 point of test error, and
# 10 % of the best mean for times, epochs, steps and throughput.
POWER = 0.8
MATTERS_ERROR = 0.01  # absolute test error
MATTERS_RELATIVE = 0.10  # of the slice's best mean
MAX_SEEDS_SAID = 100  # beyond this, "needs > 100 seeds"
# Seeds needed at a point for a standard error; one seed has no spread.
MIN_SEEDS = 2


def _nodes(low: float, high: float, panels: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights on [low, high]."""
    x, w = np.polynomial.legendre.leggauss(NODES)
    edges = np.linspace(low, high, panels + 1)
    half = np.diff(edges)[:, None] / 2
    mid = (edges[:-1] + edges[1:])[:, None] / 2
    return (mid + half * x).ravel(), (half * w).ravel()


@functools.lru_cache(maxsize=None)
def _z_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The z axis: nodes, weights times phi(z), and Phi(z)."""
    z, w = _nodes(-Z_EDGE, Z_EDGE, Z_PANELS)
    return z, w * np.exp(-z * z / 2) / np.sqrt(2 * np.pi), ndtr(z)


@functools.lru_cache(maxsize=None)
def _s_grid(df: int) -> tuple[np.ndarray, np.ndarray]:
    """The S = chi_df / sqrt(df) axis: nodes and weights times S's density. The nodes are even
    in log S: at small df the upper tail of Q comes from small S, where W_k(q s) turns from 0
    to 1 over a span proportional to s, which even steps in S resolved badly (df = 1)."""
    low = float(chi.ppf(S_TAIL, df)) / np.sqrt(df)
    high = float(chi.isf(S_TAIL, df)) / np.sqrt(df)
    u, w = _nodes(np.log(low), np.log(high), S_PANELS)
    s = np.exp(u)
    # density of S times ds / du = s
    log_density = (np.log(2.0) + (df / 2) * np.log(df / 2) - gammaln(df / 2)
                   + df * u - df * s * s / 2)
    return s, w * np.exp(log_density)


def _range_cdf(w: np.ndarray, k: int) -> np.ndarray:
    """W_k(w): the CDF of the range of k standard normals at each w >= 0."""
    z, weights, upper = _z_grid()
    lower = ndtr(z[None, :] - w[:, None])
    inside = np.clip(upper[None, :] - lower, 0.0, 1.0)
    return k * ((inside ** (k - 1)) @ weights)


@functools.lru_cache(maxsize=None)
def _range_cdf_spline(k: int) -> CubicSpline:
    """W_k on [0, W_MAX], interpolated."""
    w = np.linspace(0.0, W_MAX, W_POINTS)
    return CubicSpline(w, _range_cdf(w, k))


def studentized_range_cdf(q: float, k: int, df: int) -> float:
    """P(Q <= q) for the studentized range of k means with df degrees of freedom."""
    if q <= 0:
        return 0.0
    s, weights = _s_grid(int(df))
    inner = np.clip(_range_cdf_spline(int(k))(np.minimum(q * s, W_MAX)), 0.0, 1.0)
    return float(np.clip(inner @ weights, 0.0, 1.0))


def studentized_range_quantile(p: float, k: int, df: int) -> float:
    """The q with P(Q <= q) = p (scipy's `studentized_range.ppf(p, k, df)`), for 0 < p < 1,
    k >= 2 and df >= 1.

    k = 2 is sqrt(2) times the two-sided t quantile, exactly. For k > 2 the root lies between
    that (the range of k means is at least the difference of two) and Bonferroni's bound over
    the k (k - 1) / 2 pairs."""
    k, df = int(k), int(df)
    if not (0 < p < 1 and k >= 2 and df >= 1):
        raise ValueError(f"studentized range quantile needs 0 < p < 1, k >= 2, df >= 1; got p={p}, k={k}, df={df}")
    low = np.sqrt(2) * float(t.isf((1 - p) / 2, df))
    if k == 2:
        return float(f"{low:.{DIGITS}g}")
    high = np.sqrt(2) * float(t.isf((1 - p) / (k * (k - 1)), df))
    root = brentq(lambda q: studentized_range_cdf(q, k, df) - p, low, high, xtol=1e-13, rtol=1e-13)
    return float(f"{root:.{DIGITS}g}")


# --------------------------------------------------------------------------- seed spread


@functools.lru_cache(maxsize=None)
def critical_value(k: int, df: int, slices: int = 1) -> float:
    """Multiplier of the standard error of a difference for family-wise ALPHA / slices over all
    pairs of k means (Tukey: studentized range / sqrt 2); k = 2 gives the two-sided t quantile."""
    return studentized_range_quantile(1 - ALPHA / max(slices, 1), max(k, 2), df) / np.sqrt(2)


@functools.lru_cache(maxsize=None)
def power_quantile(df: int) -> float:
    """The one-sided t quantile at POWER: what a detectable difference adds to the critical
    value (cached: a report asks for the same few dfs hundreds of times)."""
    return float(t.ppf(POWER, df))


def significant(diff: float, se: float, df: int, k: int, slices: int = 1) -> bool:
    """`diff` is positive beyond the critical value (k means compared, df degrees of freedom,
    one of `slices` slices)."""
    return bool(df >= 1 and np.isfinite(diff) and np.isfinite(se)
                and diff > critical_value(int(k), int(df), int(slices)) * se)


@dataclass(frozen=True)
class SeedSpread:
    """The seed spread of one slice: a standard deviation pooled over its points, its degrees of
    freedom, how many means the slice compares, and how many slices the verdict reads."""

    sd: float
    df: int
    k: int
    slices: int = 1

    @classmethod
    def of(cls, *curves: pd.DataFrame, slices: int = 1) -> "SeedSpread":
        rows = pd.concat(curves)
        rows = rows[(rows["count"] >= MIN_SEEDS) & np.isfinite(rows["sem"].astype(float))]
        n = rows["count"].astype(float)
        df = float((n - 1).sum())
        ss = float(((rows["sem"].astype(float) ** 2) * n * (n - 1)).sum())  # sum of (n-1) s^2
        return cls(float(np.sqrt(ss / df)) if df > 0 else np.nan, int(df), len(rows), slices)

    def se(self, n_a: float, n_b: float) -> float:
        """Standard error of the difference of two means of n_a and n_b seeds."""
        return self.sd * float(np.sqrt(1 / n_a + 1 / n_b))

    def margin(self, n_a: float, n_b: float) -> float:
        """The smallest significant difference of two such means."""
        return critical_value(max(self.k, 2), max(self.df, 1), self.slices) * self.se(n_a, n_b)

    def exceeds(self, a_mean: float, a_n: float, b_mean: float, b_n: float) -> bool:
        """Mean a is significantly larger than mean b."""
        return significant(a_mean - b_mean, self.se(a_n, b_n), self.df, self.k, self.slices)

    def side(self, a: pd.Series, b: pd.Series) -> str:
        """Point a's mean against point b's (rows with mean and count): "lower" or "higher"
        when significantly so, else "same"."""
        if self.exceeds(b["mean"], b["count"], a["mean"], a["count"]):
            return "lower"
        return "higher" if self.exceeds(a["mean"], a["count"], b["mean"], b["count"]) else "same"

    def detectable(self, n: int) -> float:
        """The difference between two means of n seeds that this slice detects with POWER."""
        df = self.k * (n - 1)
        if not (df >= 1 and np.isfinite(self.sd)):
            return np.inf
        return (critical_value(max(self.k, 2), df, self.slices) + power_quantile(int(df))) * self.sd * np.sqrt(2 / n)

    def seeds_needed(self, low: int, matters: float) -> int | None:
        """The fewest seeds (from `low` to MAX_SEEDS_SAID) that detect `matters`, or None.
        `detectable` falls as seeds grow (both quantiles fall with df, and so does sqrt(2 / n)),
        so bisection finds it: each new df costs a studentized-range quantile, and a scan up to
        MAX_SEEDS_SAID was the slowest part of a report (docs/performance.md, "Analysis")."""
        if low > MAX_SEEDS_SAID or self.detectable(MAX_SEEDS_SAID) > matters:
            return None
        high = MAX_SEEDS_SAID  # detects
        while low < high:
            mid = (low + high) // 2
            if self.detectable(mid) <= matters:
                high = mid
            else:
                low = mid + 1
        return low

    def underpowered(self, n: float, matters: float, unit: str) -> str:
        """"" when n seeds detect a difference of `matters`; else why the slice is inconclusive."""
        n = int(n)
        if self.detectable(n) <= matters:
            return ""
        need = self.seeds_needed(n + 1, matters)
        needs = f">= {need}" if need else f"> {MAX_SEEDS_SAID}"
        return (f"no significant difference, but {n} seeds only detect differences above "
                f"{self.detectable(n):.3g} {unit}; needs {needs} seeds to detect {matters:.3g}")
