"""Verdicts on the claims of 3.5.5 (C1-C5) and 3.6 (N1, N2), with the numbers behind them.

Each ``verdict_*`` function takes the per-trial summary (``metrics.summarize_trials``), builds
the view its protocol asks for (fixed lr: each lr on its own; tuned lr: the best lr per batch
size), evaluates the claim on every *slice* (one curve over batch size: one norm, and one lr in
the fixed-lr protocol, and one value of any other condition the study varies), and combines the
slices into one ``Verdict``:

- no slice conclusive -> "inconclusive" (with the reasons);
- some conclusive slice holds -> "holds"; ``condition`` says in how many of the conclusive
  slices it held, and which;
- otherwise -> "does not hold".

A difference counts when it is significant at ALPHA family-wise over the whole verdict
(`Noise`): the seed-to-seed standard deviation is pooled over the slice's points (seed noise is
alike across batch sizes; pooling gives sum(n - 1) degrees of freedom instead of the 1-2 of one
point at 2-3 seeds); the critical value is Tukey's studentized range for the slice's number of
points, so picking the best batch size and comparing it with the others does not inflate the
error rate (with two points it is the two-sided t-test); and it is taken at ALPHA / (number of
slices) (Bonferroni), so "holds in any slice" is not a dozen chances at a false positive. A point with fewer
than ``MIN_SEEDS`` seeds has no spread and is left out; a slice with too few batch sizes left
is inconclusive, never a pass. The error rates are measured by simulation
(`tests/analysis/test_calibration.py`, `benchmarks/verdict_calibration.py`). The verdict is what
the data say, also when it contradicts the source text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest, t

from bsweep.analysis.load import config_key
from bsweep.analysis.metrics import (
    DEFAULT_METRICS,
    FINISHED_STATUSES,
    aggregate_over_seeds,
    condition_columns,
    nuisance_columns,
    tuned_view,
)
from bsweep.analysis.tukey import studentized_range_quantile

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"

FIXED_LR = "fixed lr"
TUNED_LR = "tuned lr"
# Throughput does not depend on the learning rate, so C2 pools every lr and seed.
POOLED_LR = "any lr (pooled)"
# N4 is about the range of lrs a network tolerates, so it reads every lr at once.
LR_RANGE = "lr range"
# C8 reads the bench's memory of one step, which depends on no lr and no seed.
PER_STEP = "per step (bench)"
# C6 reads the gradient cosines of the trials that measured them (`noise.cosine_at`).
AT_CHECKPOINTS = "at checkpoints"
# C6: "past some size the direction barely changes": from that batch size to the largest one
# measured, the cosine with the full training-set gradient gains less than this (near cos 0.9,
# 0.1 is about 10 degrees of a direction 26 degrees off).
COS_GAIN_SMALL = 0.1

# Family-wise false-positive rate of one slice's comparisons (see `Noise`).
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
# C1 says the error "spikes" (3.5.5: error 飙升), not merely rises: besides being significant,
# the error at the small batch sizes must be at least this multiple of the lowest error (x1.5 =
# half as many errors again). N1's "GroupNorm stays flat" uses the same line: a GroupNorm rise
# below it is no spike. Set to 1.0 to judge significance alone.
SPIKE_ERROR_RATIO = 1.5
# Batch sizes needed in a slice for a trend or an optimum (an interior optimum needs a point on
# each side of it).
MIN_BATCH_SIZES_TREND = 3
# Batch sizes needed for a two-point comparison (smallest vs best or vs largest).
MIN_BATCH_SIZES_PAIR = 2
# N5's cost comparison: weight norm is cheaper at a batch size where its step takes less than
# (1 - COST_MARGIN) of BatchNorm's. `bsweep bench` times every point in rounds, one block of
# each a round, so the two norms compare round by round: a sign test over the rounds (one-sided,
# PAIRED_ALPHA) says "cheaper", "not cheaper" or neither. Their best blocks alone had flipped the
# verdict between two runs of the same code on the shared 2-core VM (batch norm's best block
# read 1.5x its quiet time at batch 8 and 64 in one bench). A bench from before the rounds were
# kept compares the best blocks, as before.
COST_MARGIN = 0.05
PAIRED_ALPHA = 0.05

CLAIMS: dict[str, str] = {
    "C1": "batch size too small: the model does very badly (error spikes)",
    "C2": "larger batch: the same amount of data is processed faster (throughput rises)",
    "C3": "larger batch: more epochs are needed to reach the same accuracy",
    "C4": "some batch size minimises time to target accuracy",
    "C5": "some batch size gives the best final accuracy",
    "C6": "larger batch: a more accurate descent direction, which past some size barely changes",
    "C7": "larger batch: training oscillates less (a more accurate descent direction)",
    "C8": "larger batch: a step needs more memory, until it no longer fits",
    "N1": "BatchNorm error rises as the batch shrinks; GroupNorm stays flat",
    "N2": "a normalized network reaches the target in fewer steps than an unnormalized one",
    "N3": "normalized inputs reach the target faster; all-positive inputs learn slowly",
    "N4": "BatchNorm tolerates larger learning rates than no normalization",
    "N5": "weight norm costs less per step than BatchNorm and does not depend on batch size",
    "N6": "local response normalization improves generalization (over no normalization)",
    "N7": "BatchNorm needs well-shuffled data (unshuffled, its error rises more than GroupNorm's)",
}

# Each claim in a few words, for one-line summaries (the terminal, the report's first screen).
SHORT: dict[str, str] = {
    "C1": "tiny batch: error spikes",
    "C2": "larger batch: more throughput",
    "C3": "larger batch: more epochs",
    "C4": "a batch size is fastest",
    "C5": "a batch size is most accurate",
    "C6": "larger batch: truer gradient",
    "C7": "larger batch: less oscillation",
    "C8": "larger batch: more memory",
    "N1": "BN hurt by small batch, GN flat",
    "N2": "norm nets reach target sooner",
    "N3": "normalized inputs train faster",
    "N4": "BN tolerates larger lrs",
    "N5": "WN cheaper than BN, batch-flat",
    "N6": "LRN generalizes better",
    "N7": "BN needs shuffled data",
}

SE = f"the slice's significance margin (family-wise {ALPHA:g}, pooled seed spread)"
RULES: dict[str, str] = {
    "C1": (
        f"Final test error (1 - mean of the last measurements) per batch size, >= {MIN_SEEDS} seeds, "
        f">= {MIN_BATCH_SIZES_PAIR} batch sizes. Holds where the smallest batch sizes (a run "
        f"upward from the smallest) each have error more than {SE} above the lowest error of any "
        f"batch size and at least x{SPIKE_ERROR_RATIO:g} that lowest error (a spike, not a "
        "rise); does not hold where the smallest batch size is not worse by both measures."
    ),
    "C2": (
        f"Samples per second per batch size, pooled over lr and seeds, >= {MIN_SEEDS} trials, "
        f">= {MIN_BATCH_SIZES_TREND} batch sizes. Holds when throughput at the largest batch size "
        f"exceeds that at the smallest by more than {SE}; the condition names the batch size up "
        "to which every doubling step still rises significantly."
    ),
    "C3": (
        f"Epochs to target per batch size (all seeds reached it), >= {MIN_SEEDS} seeds, "
        f">= {MIN_BATCH_SIZES_TREND} batch sizes. Holds when some batch size larger than the one "
        f"needing fewest epochs needs more than {SE} more, or never reaches the target although "
        "it trained for more epochs than that fewest; otherwise does not hold."
    ),
    "C4": (
        f"Training seconds to target per batch size (all seeds reached it; a batch size where no "
        f"seed reached it counts as slower), >= {MIN_SEEDS} seeds, >= {MIN_BATCH_SIZES_TREND} "
        f"batch sizes. Holds when the fastest batch size has a significantly slower (> {SE}) batch "
        "size on both sides; inconclusive when only one side is slower (optimum may lie outside "
        "the grid); does not hold when neither side is."
    ),
    "C5": (
        f"Final test error per batch size, >= {MIN_SEEDS} seeds, >= {MIN_BATCH_SIZES_TREND} batch "
        f"sizes. Holds when the batch size with lowest error has a batch size with error more than "
        f"{SE} higher on both sides; inconclusive when only on one side (optimum may lie outside "
        "the grid); does not hold when on neither (accuracy flat in batch size)."
    ),
    "C6": (
        "Needs trials with noise.cosine_at. At each checkpoint, per batch size B: the mean over "
        "noise.cosine_draws random batches (with replacement) of the cosine between the batch's "
        "gradient and the full training-set gradient, at the checkpoint's weights. A checkpoint "
        "shows the claim when the cosine at the largest B exceeds that at the smallest by more "
        f"than a t-test over draws at {ALPHA:g} / (checkpoints), and some B below the largest is "
        f"within {COS_GAIN_SMALL:g} of the largest's cosine (from there on, growth barely turns "
        "the direction). Rises without such a B: inconclusive (try larger batch sizes); no "
        "significant rise: does not hold. A trial holds when most of its checkpoints "
        "show it. The numbers give the noise scale B_simple those gradients imply and the "
        "predicted cosine (1 + B_simple / B)^(-1/2) (McCandlish et al. 2018)."
    ),
    "C7": (
        "Loss jitter per batch size: the root mean square over the second half of the epoch "
        "budget of sqrt(mean((l[t] - l[t-1])^2) / 2), l[t] the training loss of step t (for "
        f"independent steps, one step's loss's standard deviation), >= {MIN_SEEDS} seeds, >= "
        f"{MIN_BATCH_SIZES_TREND} batch sizes. Holds when the jitter at the largest batch size is "
        f"below that at the smallest by more than {SE}; the condition names the batch size up to "
        "which every step down is significant. It includes the sampling noise of a batch's mean "
        "loss, which alone would fall as B^-0.5 (the numbers give the fitted slope)."
    ),
    "C8": (
        "Memory of one training step per batch size, from `bsweep bench` (bench.parquet): "
        "parameters, gradients, optimizer state and the tensors autograd saves for backward, "
        "counted from shapes and dtypes (the same on every machine, no seed noise: no test); "
        f">= {MIN_BATCH_SIZES_TREND} batch sizes. Holds when it grows from the smallest batch "
        "size to the largest (the condition says whether at every step). The numbers give the "
        "least-squares line a + b x B and the largest batch size whose predicted memory fits "
        "the limit (study.memory_limit_gib, else the device's memory: a prediction on a CPU; on "
        "a GPU the bench also measures the peak, torch.cuda.max_memory_allocated)."
    ),
    "N1": (
        f"Needs norm=batch and norm=group at >= {MIN_BATCH_SIZES_PAIR} common batch sizes with "
        f">= {MIN_SEEDS} seeds. Rise = final error at the smallest common batch size minus the "
        f"norm's lowest error over the common batch sizes. Holds when BatchNorm's rise exceeds "
        f"{SE}, exceeds GroupNorm's rise by more than {SE}, and GroupNorm does not spike: its rise "
        f"does not exceed {SE}, or its error at the smallest batch size is below "
        f"x{SPIKE_ERROR_RATIO:g} its lowest (C1's spike line)."
    ),
    "N2": (
        f"Needs a norm=none arm. Per batch size, steps to target of each norm vs none, >= "
        f"{MIN_SEEDS} seeds: faster when fewer by more than {SE} (or it reached the target and "
        "none never did). Holds for a norm when it is faster at more than half of the comparable "
        "batch sizes."
    ),
    "N3": (
        "Needs data.input_norm swept over minmax ([0, 1], every input positive) and zscore (or "
        f"none). As N2, with minmax as the baseline: per batch size, steps to target, >= {MIN_SEEDS} "
        f"seeds: faster when fewer by more than {SE} (or it reached the target and minmax never "
        "did); holds for a scaling that is faster at more than half of the comparable batch "
        "sizes. (minmax also shrinks the inputs' spread; on mnist1d, stored centred with spread "
        "~1, `none` is zscore in all but rounding.)"
    ),
    "N4": (
        "Needs norm=batch and norm=none. A trial trained when no loss went non-finite and its "
        "final test loss ended below 0.9x its loss at step 0 (metrics.TRAINED_LOSS_SHARE); per "
        "batch size and norm, the top lr is the largest lr at which every seed trained. A batch "
        f"size shows the claim when at some lr above none's top lr every BatchNorm seed trained "
        f"and every none seed failed (>= {MIN_SEEDS} seeds each), and the opposite when at some "
        "lr above BatchNorm's top lr every none seed trained and every BatchNorm seed failed, or "
        "when both tops are bracketed (some seed failed at a larger lr tried) and none's is "
        "above BatchNorm's (the same top lr is inconclusive: the grid does not resolve it). Holds when it shows at more than half of >= {MIN_BATCH_SIZES_PAIR} "
        "batch sizes where one or the other is shown; the numbers also give the largest lr at "
        "which every seed reached the target."
    ),
    "N5": (
        "Needs norm=weight and norm=batch. Cost: seconds per step = batch size / samples per "
        "second (calibrated by `bsweep bench` when it ran: one number per point, no seed "
        f"spread), weight norm cheaper where below BatchNorm's by >= {COST_MARGIN:.0%}. Batch-size "
        "independence: weight norm's final error at the smallest batch size does not spike over "
        f"its best (not significant, or below x{SPIKE_ERROR_RATIO:g}: N1's GroupNorm test). Holds "
        "when it is cheaper at more than half of the batch sizes and does not spike. Step "
        "times are the machine's: the cost half is a measurement of this machine, not a constant."
    ),
    "N6": (
        "Needs norm=lrn and norm=none. Per batch size, final test error, >= "
        f"{MIN_SEEDS} seeds: LRN better when lower by more than {SE}. Holds when better at more "
        "than half of the batch sizes. The numbers add the train-test gap: final test loss "
        "minus the final training loss (mean mini-batch loss over the last measurements, in "
        "train mode)."
    ),
    "N7": (
        "Needs data.order=shuffled and an unshuffled order (sorted: by class, a fixed order; "
        "class_batches: batches of one or two classes in a shuffled order; class_halves: batches "
        "from a random half of the classes; one slice each), and "
        f"norm=batch and group. Per batch size, final test error, >= {MIN_SEEDS} seeds in each of "
        "the four arms: the rise unshuffled - shuffled of each norm. A batch size shows the claim when BatchNorm's "
        f"rise exceeds {SE} and exceeds GroupNorm's by more than it (GroupNorm normalizes each "
        "example on its own, so what is left of its rise is the order's effect on SGD itself). "
        "Holds when more than half of the batch sizes show it; otherwise inconclusive where the "
        f"seeds could not detect {MATTERS_ERROR:g} of error, else does not hold."
    ),
}


@dataclass(frozen=True)
class Verdict:
    """One claim under one protocol: the verdict, where it holds, the numbers and the rule."""

    claim: str
    statement: str
    verdict: str
    protocol: str
    condition: str
    numbers: str
    rule: str
    caveat: str = ""
    held: int = 0  # slices where it holds
    conclusive: int = 0  # slices that hold or do not hold
    slices: int = 0  # slices judged, inconclusive ones too
    gist: str = ""  # the first slice that decided the verdict (or, inconclusive, why not)


@dataclass(frozen=True)
class _SliceOutcome:
    label: str
    outcome: str
    where: str  # where it holds (e.g. "at batch size <= 4"), or why it is inconclusive
    numbers: str


# --------------------------------------------------------------------------- helpers


def _fmt(mean: float, sem: float, n: int) -> str:
    """mean +- standard error (n seeds)."""
    if not np.isfinite(sem):
        return f"{mean:.3g} (n={int(n)})"
    return f"{mean:.3g}±{sem:.2g} (n={int(n)})"


def _bs(value: float) -> str:
    return str(int(value))


@functools.lru_cache(maxsize=None)
def critical_value(k: int, df: int, slices: int = 1) -> float:
    """Multiplier of the standard error of a difference for family-wise ALPHA / slices over all
    pairs of k means (Tukey: studentized range / sqrt 2); k = 2 gives the two-sided t quantile."""
    return studentized_range_quantile(1 - ALPHA / max(slices, 1), max(k, 2), df) / np.sqrt(2)


@functools.lru_cache(maxsize=None)
def power_quantile(df: int) -> float:
    """The one-sided t quantile at POWER: what a detectable difference adds to the critical
    value (scipy's ppf takes ~0.3 ms, and a report asks for the same few dfs hundreds of times)."""
    return float(t.ppf(POWER, df))


def significant(diff: float, se: float, df: int, k: int, slices: int = 1) -> bool:
    """`diff` is positive beyond the critical value (k means compared, df degrees of freedom,
    one of `slices` slices)."""
    return bool(df >= 1 and np.isfinite(diff) and np.isfinite(se)
                and diff > critical_value(int(k), int(df), int(slices)) * se)


@dataclass(frozen=True)
class Noise:
    """The seed spread of one slice: a standard deviation pooled over its points, its degrees of
    freedom, how many means the slice compares, and how many slices the verdict reads."""

    sd: float
    df: int
    k: int
    slices: int = 1

    @classmethod
    def of(cls, *curves: pd.DataFrame, slices: int = 1) -> "Noise":
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
        MAX_SEEDS_SAID (with scipy's quantile, 0.15 s each) took 15 s of a report."""
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


def slice_curve(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One slice's points over batch size: batch_size, mean, sem, count, n_trials, n_reached."""
    curve = pd.DataFrame(
        {
            "batch_size": frame["batch_size"].to_numpy(),
            "mean": frame[f"{metric}_mean"].to_numpy(dtype=float),
            "sem": frame[f"{metric}_sem"].to_numpy(dtype=float),
            "count": frame[f"{metric}_count"].to_numpy(),
            "n_trials": frame["n_trials"].to_numpy(),
            "n_reached": frame["n_reached_target"].to_numpy(),
        }
    )
    if "last_epoch_mean" in frame.columns:
        curve["last_epoch"] = frame["last_epoch_mean"].to_numpy(dtype=float)
    return curve.sort_values("batch_size").reset_index(drop=True)


def _build_view(
    summary: pd.DataFrame, protocol: str, criterion: str
) -> tuple[pd.DataFrame, list[str]]:
    """The aggregated view for a protocol and the columns that define one slice."""
    aggregated = aggregate_over_seeds(summary, metrics=[*DEFAULT_METRICS, "last_epoch"])
    conditions = condition_columns(aggregated)
    if protocol == FIXED_LR:
        return aggregated, [*conditions, *nuisance_columns(aggregated)]
    if protocol == TUNED_LR:
        return tuned_view(aggregated, criterion), conditions
    if protocol == POOLED_LR:
        pooled = aggregate_over_seeds(
            summary, metrics=["samples_per_second"], by=[*conditions, "batch_size"]
        )
        return pooled, conditions
    raise ValueError(f"unknown protocol {protocol!r}")


def _slices(
    view: pd.DataFrame, columns: Sequence[str], summary: pd.DataFrame
) -> list[tuple[str, dict[str, object], pd.DataFrame]]:
    """Split a view into slices; label each with norm, lr and any condition the study varies."""
    varying = {c for c in columns if c in summary.columns and summary[c].nunique() > 1}
    shown = [c for c in columns if c in varying or c in ("norm", "lr")]
    if not columns:
        return [("all trials", {}, view)]
    out = []
    for key, frame in view.groupby(list(columns), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        values = dict(zip(columns, key))
        label = ", ".join(f"{c}={values[c]:g}" if c == "lr" else f"{config_key(c)}={values[c]}"
                          for c in shown)
        out.append((label or "all trials", values, frame))
    return out


def _combine(
    claim: str, protocol: str, outcomes: Sequence[_SliceOutcome], caveat: str = ""
) -> Verdict:
    """Many slice outcomes -> one verdict (see the module docstring)."""
    held = [o for o in outcomes if o.outcome == HOLDS]
    failed = [o for o in outcomes if o.outcome == DOES_NOT_HOLD]
    unknown = [o for o in outcomes if o.outcome == INCONCLUSIVE]
    parts = []
    if not held and not failed:
        verdict = INCONCLUSIVE
    else:
        verdict = HOLDS if held else DOES_NOT_HOLD
        if len(outcomes) > 1:
            parts.append(f"holds in {len(held)} of {len(held) + len(failed)} conclusive slices")
    if held:
        parts.append("holds for " + "; ".join(_describe(o) for o in held))
    if failed:
        parts.append("does not hold for " + "; ".join(_describe(o) for o in failed))
    if unknown:
        parts.append("inconclusive for " + "; ".join(_describe(o) for o in unknown))
    if not outcomes:
        parts.append("no data")
    numbers = " | ".join(f"{o.label}: {o.numbers}" for o in outcomes if o.numbers)
    deciding = (held or failed or unknown)[:1]
    return Verdict(
        claim=claim,
        statement=CLAIMS[claim],
        verdict=verdict,
        protocol=protocol,
        condition=". ".join(parts),
        numbers=numbers,
        rule=RULES[claim],
        caveat=caveat,
        held=len(held),
        conclusive=len(held) + len(failed),
        slices=len(outcomes),
        gist=_gist(deciding[0]) if deciding else "no data",
    )


def _gist(outcome: _SliceOutcome) -> str:
    """A slice's outcome in one short phrase: "norm=batch: at batch size <= 4, ..."; a slice
    that is the whole study is not named."""
    if not outcome.where:
        return outcome.label
    return outcome.where if outcome.label in ("study", "all trials") else f"{outcome.label}: {outcome.where}"


def _describe(outcome: _SliceOutcome) -> str:
    return f"{outcome.label} ({outcome.where})" if outcome.where else outcome.label


def _edge_caveat(view: pd.DataFrame, protocol: str) -> str:
    """Tuned view: name the points whose best lr sits on the edge of the lr grid."""
    if protocol != TUNED_LR or "lr_on_edge" not in view.columns:
        return ""
    edge = view[view["lr_on_edge"].astype(bool)]
    if edge.empty:
        return ""
    prefix = "best lr on the edge of the lr grid (or only one lr tried)"
    if len(edge) == len(view):
        return f"{prefix} at every point: the tuned view is not tuned within the grid"
    if "norm" not in edge.columns:
        return f"{prefix} at batch size " + ", ".join(_bs(b) for b in sorted(edge["batch_size"]))
    per_norm = [
        f"{norm} bs " + ", ".join(_bs(b) for b in sorted(group["batch_size"]))
        for norm, group in edge.groupby("norm", sort=True)
    ]
    return f"{prefix} at " + "; ".join(per_norm)


def _unbracketed(frame: pd.DataFrame, protocol: str) -> str:
    """Tuned protocol: why a slice's best lrs are not bracketed ("" when they all are): a tuned
    comparison across batch sizes whose optimum lies outside the lr grid measures the grid."""
    if protocol != TUNED_LR or "lr_edge" not in frame.columns:
        return ""
    parts = []
    for edge, beyond in (("lower", "below"), ("upper", "above"), ("only", "around")):
        at = frame[frame["lr_edge"] == edge]
        if len(at):
            sizes = ", ".join(_bs(b) for b in sorted(set(at["batch_size"])))
            lrs = ", ".join(f"{lr:g}" for lr in sorted(set(at["lr"])))
            what = "only one lr tried" if edge == "only" else f"best lr at the grid's {edge} edge"
            parts.append(f"{what} at batch size {sizes}; extend lr {beyond} {lrs}")
    return "; ".join(parts)


def usable_points(curve: pd.DataFrame) -> pd.DataFrame:
    """Points with a standard error (enough seeds with a finite value)."""
    return curve[curve["count"] >= MIN_SEEDS].reset_index(drop=True)


def _too_few(minimum: int) -> str:
    return f"needs >= {MIN_SEEDS} seeds at >= {minimum} batch sizes"


# --------------------------------------------------------------------------- C1


def _c1_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    usable = usable_points(curve)
    if len(usable) < MIN_BATCH_SIZES_PAIR:
        return INCONCLUSIVE, _too_few(MIN_BATCH_SIZES_PAIR), ""
    best = usable.loc[usable["mean"].idxmin()]
    smallest = usable.iloc[0]
    numbers = (
        f"error at bs {_bs(smallest.batch_size)} {_fmt(smallest['mean'], smallest['sem'], smallest['count'])}, "
        f"lowest at bs {_bs(best.batch_size)} {_fmt(best['mean'], best['sem'], best['count'])}"
    )
    ratio = smallest["mean"] / best["mean"] if best["mean"] > 0 else np.inf
    noise = Noise.of(usable, slices=slices)
    worse = []
    for row in usable.itertuples():
        if row.batch_size >= best.batch_size or not noise.exceeds(row.mean, row.count, best["mean"], best["count"]):
            break
        worse.append(row)
    # Only a run upward from the smallest batch size counts ("too small"): stop at the first
    # batch size that is not both significantly and markedly worse.
    run = []
    for row in worse:
        if row.mean < SPIKE_ERROR_RATIO * best["mean"]:
            break
        run.append(row.batch_size)
    if run:
        return HOLDS, f"at batch size <= {_bs(run[-1])}, error x{ratio:.2g} the lowest", numbers
    if worse:
        return DOES_NOT_HOLD, (
            f"error at batch size {_bs(smallest.batch_size)} significantly higher but only x{ratio:.2g} "
            f"the lowest, a spike needs x{SPIKE_ERROR_RATIO:g}"
        ), numbers
    if best.batch_size == smallest.batch_size:
        return DOES_NOT_HOLD, "lowest error at the smallest batch size", numbers
    if weak := noise.underpowered(usable["count"].min(), MATTERS_ERROR, "error"):
        return INCONCLUSIVE, weak, numbers
    return DOES_NOT_HOLD, "smallest batch size not significantly worse than the best", numbers


def verdict_c1(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """C1: at too small a batch size the final error spikes."""
    return _per_slice_verdict("C1", summary, protocol, "final_test_acc", "final_test_error", _c1_slice)


# --------------------------------------------------------------------------- C2


def _monotone_slice(curve: pd.DataFrame, slices: int, rising: bool, unit: str) -> tuple[str, str, str]:
    """C2 (rising) and C7 (falling): the largest batch size significantly beyond the smallest
    in the claimed direction; the condition names the batch size up to which every step goes
    that way significantly."""
    usable = usable_points(curve)
    if len(usable) < MIN_BATCH_SIZES_TREND:
        return INCONCLUSIVE, _too_few(MIN_BATCH_SIZES_TREND), ""
    first, last = usable.iloc[0], usable.iloc[-1]
    numbers = ", ".join(f"bs {_bs(r.batch_size)} {r.mean:.3g} {unit}" for r in usable.itertuples())
    noise = Noise.of(usable, slices=slices)
    word = "rise" if rising else "fall"

    def beyond(a: pd.Series, b: pd.Series) -> bool:  # a significantly beyond b in the claimed direction
        high, low = (a, b) if rising else (b, a)
        return noise.exceeds(high["mean"], high["count"], low["mean"], low["count"])

    if not beyond(last, first):
        if weak := noise.underpowered(usable["count"].min(), MATTERS_RELATIVE * usable["mean"].max(), unit):
            return INCONCLUSIVE, weak, numbers
        return DOES_NOT_HOLD, f"no significant {word} from smallest to largest batch size", numbers
    to = first["batch_size"]
    for i in range(1, len(usable)):
        if not beyond(usable.iloc[i], usable.iloc[i - 1]):
            break
        to = usable.iloc[i]["batch_size"]
    verb = "rises" if rising else "falls"
    if to == last["batch_size"]:
        return HOLDS, f"{verb} at every step up to batch size {_bs(to)}", numbers
    return HOLDS, f"{verb} at every step up to batch size {_bs(to)}, not at every step beyond", numbers


def _c2_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    return _monotone_slice(curve, slices, True, "samples/s")


def verdict_c2(summary: pd.DataFrame, protocol: str = POOLED_LR) -> Verdict:
    """C2: throughput (samples per second) rises with batch size. Pooled over lr and seeds."""
    return _per_slice_verdict("C2", summary, POOLED_LR, "samples_per_second", "samples_per_second", _c2_slice)


# --------------------------------------------------------------------------- C3


def _c3_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    enough = curve["n_trials"] >= MIN_SEEDS
    reached = curve[enough & (curve["n_reached"] == curve["n_trials"])].reset_index(drop=True)
    censored = curve[enough & (curve["n_reached"] == 0)].reset_index(drop=True)
    if len(reached) == 0 or len(reached) + len(censored) < MIN_BATCH_SIZES_TREND:
        return INCONCLUSIVE, _too_few(MIN_BATCH_SIZES_TREND) + " where every seed or no seed reached the target", ""
    fewest = reached.loc[reached["mean"].idxmin()]
    numbers = ", ".join(
        f"bs {_bs(r.batch_size)} {_fmt(r.mean, r.sem, r.count)} epochs" for r in reached.itertuples()
    )
    if len(censored):
        numbers += "; never reached at bs " + ", ".join(_bs(b) for b in censored["batch_size"])
    noise = Noise.of(reached, slices=slices)
    more = [
        r.batch_size
        for r in reached.itertuples()
        if r.batch_size > fewest.batch_size and noise.exceeds(r.mean, r.count, fewest["mean"], fewest["count"])
    ]
    # A larger batch size that trained longer than the fewest epochs needed and still never got
    # there needs more epochs too (censored observation).
    margin = critical_value(max(noise.k, 2), max(noise.df, 1), slices) * np.nan_to_num(noise.sd) / np.sqrt(fewest["count"])
    more += [
        r.batch_size
        for r in censored.itertuples()
        if r.batch_size > fewest.batch_size
        and "last_epoch" in censored.columns
        and r.last_epoch > fewest["mean"] + margin
    ]
    if more:
        return HOLDS, f"more epochs from batch size {_bs(min(more))} up than at {_bs(fewest.batch_size)}", numbers
    if weak := noise.underpowered(reached["count"].min(), MATTERS_RELATIVE * fewest["mean"], "epochs"):
        return INCONCLUSIVE, weak, numbers
    return DOES_NOT_HOLD, f"no larger batch size needs significantly more epochs than {_bs(fewest.batch_size)}", numbers


def verdict_c3(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """C3: larger batches need more epochs to reach the target (tuned: lr with fewest epochs)."""
    return _per_slice_verdict("C3", summary, protocol, "epochs_to_target", "epochs_to_target", _c3_slice)


# --------------------------------------------------------------------------- C4, C5


def _interior_optimum(
    points: pd.DataFrame, always_worse: pd.DataFrame, unit: str, slices: int = 1, matters: float | None = None
) -> tuple[str, str, str]:
    """Is the lowest-mean point significantly beaten by a point on each side?

    ``points``: batch sizes with a mean and standard error (lower is better).
    ``always_worse``: batch sizes that count as worse than any point (e.g. never reached target).
    """
    if len(points) == 0 or len(points) + len(always_worse) < MIN_BATCH_SIZES_TREND:
        return INCONCLUSIVE, _too_few(MIN_BATCH_SIZES_TREND), ""
    best = points.loc[points["mean"].idxmin()]
    numbers = ", ".join(f"bs {_bs(r.batch_size)} {_fmt(r.mean, r.sem, r.count)}" for r in points.itertuples())
    if len(always_worse):
        numbers += "; never reached at bs " + ", ".join(_bs(b) for b in always_worse["batch_size"])
    numbers += f" ({unit})"
    noise = Noise.of(points, slices=slices)

    def worse_side(side: Callable[[float], bool]) -> bool:
        beaten = any(
            side(r.batch_size) and noise.exceeds(r.mean, r.count, best["mean"], best["count"])
            for r in points.itertuples()
        )
        return beaten or any(side(b) for b in always_worse["batch_size"])

    below = worse_side(lambda b: b < best.batch_size)
    above = worse_side(lambda b: b > best.batch_size)
    at = f"optimum at batch size {_bs(best.batch_size)}"
    if below and above:
        return HOLDS, f"{at}, significantly better than on both sides", numbers
    if below or above:
        side = "larger" if below else "smaller"
        where = f"{at}; no significantly worse {side} batch size in the grid, the optimum may lie outside"
        return INCONCLUSIVE, where, numbers
    matters = MATTERS_RELATIVE * best["mean"] if matters is None else matters
    if weak := noise.underpowered(points["count"].min(), matters, unit):
        return INCONCLUSIVE, weak, numbers
    return DOES_NOT_HOLD, f"{at}, but no batch size is significantly worse", numbers


def _c4_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    enough = curve["n_trials"] >= MIN_SEEDS
    reached = curve[enough & (curve["n_reached"] == curve["n_trials"]) & (curve["count"] >= MIN_SEEDS)]
    never = curve[enough & (curve["n_reached"] == 0)]
    return _interior_optimum(reached.reset_index(drop=True), never, "training seconds to target", slices)


def verdict_c4(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """C4: an interior batch size minimises training time to target (tuned: fastest lr)."""
    return _per_slice_verdict("C4", summary, protocol, "seconds_to_target", "seconds_to_target", _c4_slice)


def _c5_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    return _interior_optimum(usable_points(curve), curve.iloc[0:0], "final test error", slices, MATTERS_ERROR)


def verdict_c5(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """C5: an interior batch size gives the best final accuracy (tuned: most accurate lr)."""
    return _per_slice_verdict("C5", summary, protocol, "final_test_acc", "final_test_error", _c5_slice)


# --------------------------------------------------------------------------- C6


def cosine_batch_sizes(columns) -> list[int]:
    """The batch sizes of a frame's ``cosine_b<B>`` columns, ascending."""
    return sorted(int(c[len("cosine_b"):]) for c in columns if c.startswith("cosine_b") and c[len("cosine_b"):].isdigit())


def _c6_checkpoint(row: pd.Series, sizes: list[int], checkpoints: int) -> tuple[str, str, str]:
    sizes = [b for b in sizes if np.isfinite(float(row.get(f"cosine_b{b}", np.nan)))]
    step = f"step {int(row['step'])} (epoch {float(row['epoch']):.2g})"
    if len(sizes) < MIN_BATCH_SIZES_TREND:
        return INCONCLUSIVE, f"{step}: cosines at {len(sizes)} batch size(s)", ""
    n = float(row["cosine_draws"])
    mean = {b: float(row[f"cosine_b{b}"]) for b in sizes}
    sd = {b: float(row[f"cosine_sd_b{b}"]) for b in sizes}
    noise = float(row.get("cosine_noise_scale", np.nan))
    predicted = {b: (1 + noise / b) ** -0.5 for b in sizes} if np.isfinite(noise) and noise > 0 else {}
    numbers = f"{step}: cos " + ", ".join(f"bs {b} {mean[b]:.2f}±{sd[b] / np.sqrt(n):.2f}" for b in sizes)
    if predicted:
        worst = max(abs(mean[b] - predicted[b]) for b in sizes)
        numbers += f"; B_simple {noise:.3g}: predicted " + ", ".join(f"{predicted[b]:.2f}" for b in sizes)
        numbers += f" (largest miss {worst:.2f})"
    small, large = sizes[0], sizes[-1]
    se = float(np.hypot(sd[small], sd[large]) / np.sqrt(n))
    critical = float(t.ppf(1 - ALPHA / max(checkpoints, 1) / 2, 2 * (n - 1)))
    if not (mean[large] - mean[small] > critical * se):
        return DOES_NOT_HOLD, f"{step}: no significant rise from bs {small} to bs {large}", numbers
    flat = [b for b in sizes[:-1] if mean[large] - mean[b] < COS_GAIN_SMALL]
    if not flat:
        return INCONCLUSIVE, (f"{step}: rises, and still by {mean[large] - mean[sizes[-2]]:.2f} into the largest "
                              f"batch size, {large}: try larger ones"), numbers
    return HOLDS, f"{step}: rises, by less than {COS_GAIN_SMALL:g} from bs {flat[0]} on", numbers


def verdict_c6(summary: pd.DataFrame, protocol: str = AT_CHECKPOINTS, measurements: pd.DataFrame | None = None) -> Verdict:
    """C6: the mini-batch gradient's cosine with the full-set gradient rises with batch size and
    saturates (the trials with `noise.cosine_at`, at their checkpoints)."""
    rows = pd.DataFrame() if measurements is None else measurements
    sizes = cosine_batch_sizes(rows.columns)
    if sizes:
        rows = rows[rows[[f"cosine_b{b}" for b in sizes]].notna().any(axis=1)]
    if not sizes or rows.empty:
        reason = "no trial measured gradient cosines (noise.cosine_at, e.g. [0.05,0.5,1.0])"
        return _combine("C6", AT_CHECKPOINTS, [_SliceOutcome("study", INCONCLUSIVE, reason, "")])
    trials = summary.set_index("trial_id")
    outcomes = []
    for trial_id, frame in rows.groupby("trial_id", sort=True):
        t_row = trials.loc[trial_id] if trial_id in trials.index else pd.Series(dtype=object)
        label = ", ".join(f"{k}={t_row[k]:g}" if k == "lr" else f"{k}={t_row[k]}"
                          for k in ("norm", "batch_size", "lr", "seed") if k in t_row.index) or str(trial_id)
        checks = [_c6_checkpoint(r, sizes, len(rows)) for _, r in frame.sort_values("step").iterrows()]
        held = [c for c in checks if c[0] == HOLDS]
        failed = [c for c in checks if c[0] == DOES_NOT_HOLD]
        outcome = HOLDS if len(held) > len(checks) / 2 else DOES_NOT_HOLD if len(failed) > len(checks) / 2 else INCONCLUSIVE
        outcomes.append(_SliceOutcome(label, outcome, "; ".join(c[1] for c in checks),
                                      " / ".join(c[2] for c in checks if c[2])))
    return _combine("C6", AT_CHECKPOINTS, outcomes)


# --------------------------------------------------------------------------- C7


def _c7_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    outcome, where, numbers = _monotone_slice(curve, slices, False, "nats")
    usable = usable_points(curve)
    usable = usable[usable["mean"] > 0]
    if len(usable) >= 2:
        # The slope a loss averaged over B independent samples would have: -0.5. Steeper or
        # flatter says how much of the jitter is the batch's sampling noise.
        slope = float(np.polyfit(np.log(usable["batch_size"].astype(float)), np.log(usable["mean"]), 1)[0])
        numbers += f"; log-log slope {slope:.2f} (-0.5: the sampling noise of a batch mean alone)"
    return outcome, where, numbers


def verdict_c7(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """C7: a larger batch oscillates less: the training loss's step-to-step jitter falls with
    batch size (tuned: at the most accurate lr)."""
    return _per_slice_verdict("C7", summary, protocol, "final_test_acc", "loss_jitter", _c7_slice)


def _per_slice_verdict(
    claim: str,
    summary: pd.DataFrame,
    protocol: str,
    criterion: str,
    metric: str,
    rule: Callable[[pd.DataFrame, int], tuple[str, str, str]],
) -> Verdict:
    view, columns = _build_view(summary, protocol, criterion)
    outcomes = []
    slices = _slices(view, columns, summary)
    for label, _, frame in slices:
        outcome, where, numbers = rule(slice_curve(frame, metric), len(slices))
        if unbracketed := _unbracketed(frame, protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(_SliceOutcome(label, outcome, where, numbers))
    return _combine(claim, protocol, outcomes, _edge_caveat(view, protocol))


# --------------------------------------------------------------------------- C8


def _mib(value: float) -> str:
    return f"{value / 2**20:.3g} MiB"


def _c8_slice(frame: pd.DataFrame) -> tuple[str, str, str]:
    per_bs = frame.groupby("batch_size")[["step_memory_bytes", "peak_memory_bytes", "memory_limit_bytes"]].median()
    per_bs = per_bs[np.isfinite(per_bs["step_memory_bytes"].astype(float))]
    if len(per_bs) < MIN_BATCH_SIZES_TREND:
        return INCONCLUSIVE, (f"per-step memory at {len(per_bs)} batch size(s); needs >= {MIN_BATCH_SIZES_TREND} "
                              "(run `bsweep bench` on the study)"), ""
    sizes = per_bs.index.to_numpy(dtype=float)
    memory = per_bs["step_memory_bytes"].to_numpy(dtype=float)
    slope, intercept = np.polyfit(sizes, memory, 1)
    off = float(np.max(np.abs(intercept + slope * sizes - memory) / memory))
    numbers = ", ".join(f"bs {_bs(b)} {_mib(m)}" for b, m in zip(sizes, memory))
    numbers += f"; fit {_mib(intercept)} + {slope / 1024:.3g} KiB x B (within {off:.1%} of every point)"
    peaks = per_bs["peak_memory_bytes"].astype(float)
    if np.isfinite(peaks).any():
        numbers += "; measured peak " + ", ".join(f"bs {_bs(b)} {_mib(p)}" for b, p in peaks.dropna().items())
    limit = float(per_bs["memory_limit_bytes"].astype(float).median())
    if slope > 0 and np.isfinite(limit):
        fits = int((limit - intercept) // slope)
        numbers += f"; largest batch size predicted to fit {limit / 2**30:.3g} GiB: {fits:,}"
    if not memory[-1] > memory[0]:
        return DOES_NOT_HOLD, "memory does not grow from the smallest to the largest batch size", numbers
    if (np.diff(memory) > 0).all():
        return HOLDS, f"grows at every step, {slope / 1024:.3g} KiB per example", numbers
    return HOLDS, "grows from the smallest to the largest batch size, not at every step", numbers


def verdict_c8(summary: pd.DataFrame, protocol: str = PER_STEP) -> Verdict:
    """C8: a step's memory grows with batch size (from the bench, per condition)."""
    if "step_memory_bytes" not in summary.columns or not np.isfinite(summary["step_memory_bytes"].astype(float)).any():
        reason = "no per-step memory: run `bsweep bench` on the study (bench.parquet)"
        return _combine("C8", PER_STEP, [_SliceOutcome("study", INCONCLUSIVE, reason, "")])
    columns = condition_columns(summary)
    groups = summary.groupby(columns, sort=True, dropna=False) if columns else [((), summary)]
    outcomes = []
    for key, frame in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{config_key(c)}={v}" for c, v in zip(columns, key)
                          if c == "norm" or summary[c].nunique() > 1) or "all trials"
        outcomes.append(_SliceOutcome(label, *_c8_slice(frame)))
    return _combine("C8", PER_STEP, outcomes)


# --------------------------------------------------------------------------- N1


def _lacks_norms(summary: pd.DataFrame, claim: str, protocol: str, needed: tuple[str, ...]) -> Verdict | None:
    """The inconclusive verdict of a claim whose study lacks one of the `needed` norm arms."""
    norms = set(summary["norm"]) if "norm" in summary.columns else set()
    missing = [n for n in needed if n not in norms]
    if not missing:
        return None
    reason = f"needs {' and '.join(f'norm={n}' for n in needed)}; missing " + ", ".join(sorted(missing))
    return _combine(claim, protocol, [_SliceOutcome("study", INCONCLUSIVE, reason, "")])


def verdict_n1(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """N1: BatchNorm's error rises as the batch shrinks, GroupNorm's does not."""
    if lacking := _lacks_norms(summary, "N1", protocol, ("batch", "group")):
        return lacking
    view, columns = _build_view(summary, protocol, "final_test_acc")
    view = view[view["norm"].isin(["batch", "group"])]
    columns = [c for c in columns if c != "norm"]
    outcomes = []
    slices = _slices(view, columns, summary)
    for label, _, frame in slices:
        bn = usable_points(slice_curve(frame[frame["norm"] == "batch"], "final_test_error")).set_index("batch_size")
        gn = usable_points(slice_curve(frame[frame["norm"] == "group"], "final_test_error")).set_index("batch_size")
        common = sorted(set(bn.index) & set(gn.index))
        if len(common) < MIN_BATCH_SIZES_PAIR:
            outcomes.append(_SliceOutcome(label, INCONCLUSIVE, _too_few(MIN_BATCH_SIZES_PAIR) + " for both norms", ""))
            continue
        small = common[0]
        # Each norm's reference is its own lowest-error batch size among the common ones (the GN
        # paper compares with a typical batch size; under a fixed lr and budget the largest batch
        # size can be under-trained, which would hide the small-batch rise).
        rise, reference, noise = {}, {}, {}
        for name, curve in (("batch", bn), ("group", gn)):
            ref = curve.loc[common, "mean"].idxmin()
            reference[name] = ref
            noise[name] = Noise.of(curve.loc[common], slices=len(slices))
            rise[name] = (
                curve.loc[small, "mean"] - curve.loc[ref, "mean"],
                noise[name].se(curve.loc[small, "count"], curve.loc[ref, "count"]),
            )
        numbers = (
            f"error at bs {_bs(small)}: batch {_fmt(bn.loc[small, 'mean'], bn.loc[small, 'sem'], bn.loc[small, 'count'])}, "
            f"group {_fmt(gn.loc[small, 'mean'], gn.loc[small, 'sem'], gn.loc[small, 'count'])}; "
            f"rise over own best: batch {rise['batch'][0]:+.3g}±{rise['batch'][1]:.2g} "
            f"(best bs {_bs(reference['batch'])}), "
            f"group {rise['group'][0]:+.3g}±{rise['group'][1]:.2g} (best bs {_bs(reference['group'])})"
        )
        bn_rises = significant(rise["batch"][0], rise["batch"][1], noise["batch"].df, noise["batch"].k, len(slices))
        gn_best = gn.loc[reference["group"], "mean"]
        gn_ratio = gn.loc[small, "mean"] / gn_best if gn_best > 0 else np.inf
        gn_rises = significant(rise["group"][0], rise["group"][1], noise["group"].df, noise["group"].k, len(slices)) \
            and gn_ratio >= SPIKE_ERROR_RATIO
        numbers += f"; group error x{gn_ratio:.3g} its best"
        bn_more = significant(rise["batch"][0] - rise["group"][0], float(np.hypot(rise["batch"][1], rise["group"][1])),
                              noise["batch"].df + noise["group"].df, 2, len(slices))
        span = f"at batch size {_bs(small)}"
        if bn_rises and bn_more and not gn_rises:
            outcome, where = HOLDS, span
        elif not bn_rises and (weak := noise["batch"].underpowered(bn.loc[common, "count"].min(), MATTERS_ERROR, "error")):
            outcome, where = INCONCLUSIVE, weak
        elif not bn_rises:
            outcome, where = DOES_NOT_HOLD, f"BatchNorm error does not rise significantly {span}"
        elif gn_rises:
            outcome, where = DOES_NOT_HOLD, f"GroupNorm error spikes too {span} (x{gn_ratio:.3g} its best)"
        else:
            outcome, where = DOES_NOT_HOLD, f"BatchNorm rise not significantly larger than GroupNorm's {span}"
        used = frame[frame["batch_size"].isin(common)]
        if unbracketed := _unbracketed(used, protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(_SliceOutcome(label, outcome, where, numbers))
    return _combine("N1", protocol, outcomes, _edge_caveat(view, protocol))


# --------------------------------------------------------------------------- N2


def verdict_n2(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """N2: each normalized network reaches the target in fewer steps than norm=none."""
    norms = set(summary["norm"]) if "norm" in summary.columns else set()
    if "none" not in norms:
        reason = "the study has no norm=none arm to compare with"
        return _combine("N2", protocol, [_SliceOutcome("study", INCONCLUSIVE, reason, "")])
    if norms == {"none"}:
        reason = "the study has only norm=none"
        return _combine("N2", protocol, [_SliceOutcome("study", INCONCLUSIVE, reason, "")])
    return _fewer_steps_than("N2", summary, protocol, "norm", "none")


def verdict_n3(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """N3: inputs scaled to zero mean (zscore, or as stored) reach the target in fewer steps
    than all-positive inputs in [0, 1] (data.input_norm=minmax)."""
    column = "data.input_norm"
    values = set(summary[column]) if column in summary.columns else set()
    if "minmax" not in values or len(values) < 2:
        reason = ("needs data.input_norm swept over minmax and zscore (or none); the study has "
                  + (", ".join(sorted(map(str, values))) if values else "one input scaling"))
        return _combine("N3", protocol, [_SliceOutcome("study", INCONCLUSIVE, reason, "")])
    return _fewer_steps_than("N3", summary, protocol, column, "minmax")


def _against_baseline(view: pd.DataFrame, columns: list[str], summary: pd.DataFrame, column: str,
                      baseline: str, arm: str | None = None) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(label, arm's rows, baseline's rows) per slice of `view` whose `column` is `arm` (every
    value but `baseline` when None), the baseline's rows matching the slice on every other
    column."""
    others = [c for c in columns if c != column]
    arms = view[view[column] == arm] if arm is not None else view[view[column] != baseline]
    out = []
    for label, values, frame in _slices(arms, columns, summary):
        mask = view[column] == baseline
        for other in others:
            mask &= view[other] == values[other]
        out.append((label, frame, view[mask]))
    return out


def _majority(better: list, worse: list, same: list, better_text: str, worse_text: str,
              weak: Callable[[], str]) -> tuple[str, str]:
    """N2, N3, N6: an arm against its baseline, batch size by batch size (each better, worse or
    the same). Holds when better at more than half; inconclusive when the same-looking ones
    could make that majority and the seeds could not have told (`weak()` says why); else does
    not hold."""
    n = len(better) + len(worse) + len(same)
    if len(better) > n / 2:
        return HOLDS, f"{better_text} at batch size " + ", ".join(_bs(b) for b in better)
    if same and len(better) + len(same) > n / 2 and (why := weak()):
        return INCONCLUSIVE, why  # the same-looking batch sizes could be better
    where = f"{better_text} at {len(better)} of {n} batch sizes"
    if worse:
        where += f", {worse_text} at " + ", ".join(_bs(b) for b in worse)
    return DOES_NOT_HOLD, where


def _fewer_steps_than(claim: str, summary: pd.DataFrame, protocol: str, column: str, baseline: str) -> Verdict:
    """N2 and N3: each value of `column` against its `baseline` value, per batch size, in steps
    to target; holds for a value that is faster at more than half of the comparable batch sizes."""
    view, columns = _build_view(summary, protocol, "steps_to_target")
    outcomes = []
    slices = _against_baseline(view, columns, summary, column, baseline)
    for label, frame, base_rows in slices:
        baseline_curve = slice_curve(base_rows, "steps_to_target").set_index("batch_size")
        curve = slice_curve(frame, "steps_to_target").set_index("batch_size")
        faster, slower, same = [], [], []
        cells = []
        both = [c[(c["n_reached"] == c["n_trials"]) & (c["count"] >= MIN_SEEDS)] for c in (curve, baseline_curve)]
        pooled = Noise.of(*both)
        noise = Noise(pooled.sd, pooled.df, 2, len(slices))  # one comparison per batch size
        for bs in sorted(set(curve.index) & set(baseline_curve.index)):
            a, b = curve.loc[bs], baseline_curve.loc[bs]
            if a["n_trials"] < MIN_SEEDS or b["n_trials"] < MIN_SEEDS:
                continue
            a_all, b_all = a["n_reached"] == a["n_trials"], b["n_reached"] == b["n_trials"]
            if a_all and b["n_reached"] == 0:
                faster.append(bs)
                cells.append(f"bs {_bs(bs)} {a['mean']:.3g} vs never")
            elif b_all and a["n_reached"] == 0:
                slower.append(bs)
                cells.append(f"bs {_bs(bs)} never vs {b['mean']:.3g}")
            elif a_all and b_all and a["count"] >= MIN_SEEDS and b["count"] >= MIN_SEEDS:
                pair = f"{_fmt(a['mean'], a['sem'], a['count'])} vs {_fmt(b['mean'], b['sem'], b['count'])}"
                cells.append(f"bs {_bs(bs)} {pair}")
                {"lower": faster, "higher": slower, "same": same}[noise.side(a, b)].append(bs)
        numbers = f"steps to target vs {baseline}: " + ", ".join(cells) if cells else ""
        n_known = len(faster) + len(slower) + len(same)
        if n_known == 0:
            outcome = INCONCLUSIVE
            where = f"no batch size where both arms have >= {MIN_SEEDS} seeds that all or none reached the target"
        else:
            outcome, where = _majority(faster, slower, same, "fewer steps", "more", lambda: noise.underpowered(
                min(curve["count"].min(), baseline_curve["count"].min()), MATTERS_RELATIVE * curve["mean"].min(), "steps"))
        if unbracketed := _unbracketed(pd.concat([frame, base_rows]), protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(_SliceOutcome(label, outcome, where, numbers))
    return _combine(claim, protocol, outcomes, _edge_caveat(view, protocol))


# --------------------------------------------------------------------------- N5

def cost_rounds(wn: Sequence[float] | None, bn: Sequence[float] | None,
                margin: float = COST_MARGIN, alpha: float = PAIRED_ALPHA) -> tuple[str, int, int] | None:
    """Weight norm's step time against BatchNorm's, round by round (`bsweep bench`'s blocks of
    one bench run, in round order): ("cheaper" | "not cheaper" | "unresolved", rounds in which
    weight norm took less than (1 - margin) of BatchNorm's time, rounds). A one-sided sign test
    at `alpha` decides each way; None without paired rounds (an older bench, or points from two
    bench runs, whose round counts differ)."""
    if wn is None or bn is None or len(wn) != len(bn) or len(wn) < 2:
        return None
    ratios = np.asarray(wn, dtype=float) / np.asarray(bn, dtype=float)
    n, k = len(ratios), int((ratios < 1 - margin).sum())
    if binomtest(k, n, 0.5, alternative="greater").pvalue < alpha:
        return "cheaper", k, n
    if binomtest(n - k, n, 0.5, alternative="greater").pvalue < alpha:
        return "not cheaper", k, n
    return "unresolved", k, n


def _step_blocks(summary: pd.DataFrame, row: pd.Series, batch_size) -> tuple[float, ...] | None:
    """The bench's per-round step times (`scaling.add_step_blocks`) of the trials at the view
    row's point, or None."""
    if "step_block_seconds" not in summary.columns:
        return None
    match = summary["batch_size"].astype(str) == str(batch_size)
    for column in condition_columns(summary):
        if column in row.index:
            match &= summary[column].astype(str) == str(row[column])
    blocks = [b for b in summary.loc[match, "step_block_seconds"] if b is not None]
    return blocks[0] if blocks else None


def verdict_n5(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """N5: weight norm costs less per step than BatchNorm, and its error does not depend on
    batch size (no small-batch spike, N1's GroupNorm test)."""
    if lacking := _lacks_norms(summary, "N5", protocol, ("weight", "batch")):
        return lacking
    view, columns = _build_view(summary, protocol, "final_test_acc")
    outcomes = []
    slices = _against_baseline(view, columns, summary, "norm", "batch", "weight")
    for label, frame, bn_rows in slices:
        bn = bn_rows.set_index("batch_size")
        wn = frame.set_index("batch_size")
        # cost: seconds per step = batch size / samples per second (calibrated when bench ran)
        cheaper, dearer, unresolved, cells = [], [], [], []
        for bs in sorted(set(wn.index) & set(bn.index)):
            t_wn = bs / float(wn.loc[bs, "samples_per_second_mean"])
            t_bn = bs / float(bn.loc[bs, "samples_per_second_mean"])
            if not (np.isfinite(t_wn) and np.isfinite(t_bn)):
                continue
            cell = f"bs {_bs(bs)} {t_wn * 1e3:.3g} vs {t_bn * 1e3:.3g} ms"
            rounds = cost_rounds(_step_blocks(summary, wn.loc[bs], bs), _step_blocks(summary, bn.loc[bs], bs))
            if rounds is None:
                side = "cheaper" if t_wn < (1 - COST_MARGIN) * t_bn else "not cheaper"
            else:
                side, k, n = rounds
                cell += f" (weight cheaper in {k} of {n} rounds)"
            cells.append(cell)
            {"cheaper": cheaper, "not cheaper": dearer, "unresolved": unresolved}[side].append(bs)
        numbers = "seconds per step, weight vs batch: " + ", ".join(cells)
        # batch-size independence: the error at the smallest batch size against its best
        curve = usable_points(slice_curve(frame, "final_test_error"))
        flat, why = None, ""
        if len(curve) >= MIN_BATCH_SIZES_PAIR:
            noise = Noise.of(curve, slices=len(slices))
            best = curve.loc[curve["mean"].idxmin()]
            small = curve.iloc[0]
            ratio = small["mean"] / best["mean"] if best["mean"] > 0 else np.inf
            spikes = noise.exceeds(small["mean"], small["count"], best["mean"], best["count"]) and ratio >= SPIKE_ERROR_RATIO
            flat = not spikes
            numbers += (f"; weight norm's error at bs {_bs(small.batch_size)} {_fmt(small['mean'], small['sem'], small['count'])}"
                        f", x{ratio:.3g} its best (bs {_bs(best.batch_size)})")
            why = "" if flat else f"its error spikes at batch size {_bs(small.batch_size)} (x{ratio:.3g} its best)"
        if not cells or flat is None:
            outcome, where = INCONCLUSIVE, ("no step times to compare" if not cells else _too_few(MIN_BATCH_SIZES_PAIR))
        elif len(cheaper) > len(cells) / 2 and flat:
            outcome, where = HOLDS, "cheaper per step at batch size " + ", ".join(_bs(b) for b in cheaper) + "; no small-batch spike"
        elif flat and len(cheaper) + len(unresolved) > len(cells) / 2:
            outcome, where = INCONCLUSIVE, (
                f"cheaper by >= {COST_MARGIN:.0%} at {len(cheaper)} of {len(cells)} batch sizes; the bench's rounds "
                f"do not tell at batch size {', '.join(_bs(b) for b in unresolved)} (sign test, {PAIRED_ALPHA:g})")
        else:
            parts = [] if len(cheaper) > len(cells) / 2 else [
                f"cheaper by >= {COST_MARGIN:.0%} at {len(cheaper)} of {len(cells)} batch sizes"]
            outcome, where = DOES_NOT_HOLD, "; ".join(parts + ([why] if why else []))
        if unbracketed := _unbracketed(frame, protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(_SliceOutcome(label, outcome, where, numbers))
    return _combine("N5", protocol, outcomes, _edge_caveat(view, protocol))


# --------------------------------------------------------------------------- N6


def verdict_n6(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """N6: local response normalization generalizes better than none: lower final test error,
    per batch size (and the train-test loss gap in the numbers)."""
    if lacking := _lacks_norms(summary, "N6", protocol, ("lrn", "none")):
        return lacking
    frame = summary.assign(loss_gap=summary["final_test_loss"] - summary["final_train_loss"]) \
        if "final_train_loss" in summary.columns else summary
    aggregated = aggregate_over_seeds(frame, metrics=[*DEFAULT_METRICS, "last_epoch", "loss_gap"])
    conditions = condition_columns(aggregated)
    if protocol == TUNED_LR:
        view, columns = tuned_view(aggregated, "final_test_acc"), conditions
    else:
        view, columns = aggregated, [*conditions, *nuisance_columns(aggregated)]
    outcomes = []
    slices = _against_baseline(view, columns, summary, "norm", "none", "lrn")
    for label, lrn, none_rows in slices:
        base = usable_points(slice_curve(none_rows, "final_test_error")).set_index("batch_size")
        curve = usable_points(slice_curve(lrn, "final_test_error")).set_index("batch_size")
        common = sorted(set(base.index) & set(curve.index))
        if not common:
            outcomes.append(_SliceOutcome(label, INCONCLUSIVE, f"no batch size with >= {MIN_SEEDS} seeds in both", ""))
            continue
        pooled = Noise.of(curve.loc[common].reset_index(), base.loc[common].reset_index())
        noise = Noise(pooled.sd, pooled.df, 2, len(slices))
        better, worse, same, cells = [], [], [], []
        gaps = {}
        if "loss_gap_mean" in view.columns:
            gaps = {bs: (float(lrn.set_index("batch_size").loc[bs, "loss_gap_mean"]),
                         float(none_rows.set_index("batch_size").loc[bs, "loss_gap_mean"])) for bs in common}
        for bs in common:
            a, b = curve.loc[bs], base.loc[bs]
            cell = f"bs {_bs(bs)} error {_fmt(a['mean'], a['sem'], a['count'])} vs {_fmt(b['mean'], b['sem'], b['count'])}"
            if bs in gaps and all(np.isfinite(gaps[bs])):
                cell += f", test-train loss gap {gaps[bs][0]:.3g} vs {gaps[bs][1]:.3g}"
            cells.append(cell)
            {"lower": better, "higher": worse, "same": same}[noise.side(a, b)].append(bs)
        numbers = "lrn vs none: " + "; ".join(cells)
        outcome, where = _majority(better, worse, same, "lower error", "higher", lambda: noise.underpowered(
            min(curve["count"].min(), base["count"].min()), MATTERS_ERROR, "error"))
        if unbracketed := _unbracketed(pd.concat([lrn, none_rows]), protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(_SliceOutcome(label, outcome, where, numbers))
    return _combine("N6", protocol, outcomes, _edge_caveat(view, protocol))


# --------------------------------------------------------------------------- N7


def verdict_n7(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """N7: BatchNorm's final error rises when the data are not shuffled (each order other than
    "shuffled" the study has: sorted by class, or class-blocked batches), by more than
    GroupNorm's (which does not mix the examples of a batch)."""
    column = "data.order"
    orders = set(summary[column]) if column in summary.columns else set()
    norms = set(summary["norm"]) if "norm" in summary.columns else set()
    unshuffled = sorted(o for o in orders if o != "shuffled")
    missing = ([] if "shuffled" in orders else ["data.order=shuffled"]) + ([] if unshuffled else ["an unshuffled data.order"])
    missing += [f"norm={n}" for n in ("batch", "group") if n not in norms]
    if missing:
        return _combine("N7", protocol, [_SliceOutcome("study", INCONCLUSIVE, "needs " + ", ".join(missing), "")])
    view, columns = _build_view(summary, protocol, "final_test_acc")
    others = [c for c in columns if c not in ("norm", column)]
    outcomes = []
    groups = list(view.groupby(others, sort=True, dropna=False)) if others else [((), view)]
    n_slices = len(groups) * len(unshuffled)
    for (key, frame), order in ((g, o) for g in groups for o in unshuffled):
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join([f"data.order={order}"] + [f"{config_key(c)}={v}" for c, v in zip(others, key)
                                                     if summary[c].nunique() > 1])
        shows, against, cells, weak = [], [], [], ""
        # the four arms' curves once (narrow frames), each batch size's points taken from them
        arms = {(n, o): slice_curve(frame[(frame["norm"] == n) & (frame[column] == (o if o == "shuffled" else order))],
                                    "final_test_error")
                for n in ("batch", "group") for o in ("shuffled", "other")}
        for bs in sorted(set(frame["batch_size"])):
            points = {k: usable_points(v[v["batch_size"] == bs]) for k, v in arms.items()}
            if any(v.empty for v in points.values()):
                continue
            p = {k: v.iloc[0] for k, v in points.items()}
            noise = Noise.of(*points.values(), slices=n_slices)
            rise = {n: (p[(n, "other")]["mean"] - p[(n, "shuffled")]["mean"],
                        noise.se(p[(n, "other")]["count"], p[(n, "shuffled")]["count"])) for n in ("batch", "group")}
            cells.append(f"bs {_bs(bs)}: error {order} - shuffled: batch {rise['batch'][0]:+.3g}±{rise['batch'][1]:.2g} "
                         f"({p[('batch', 'shuffled')]['mean']:.3g} -> {p[('batch', 'other')]['mean']:.3g}), group "
                         f"{rise['group'][0]:+.3g}±{rise['group'][1]:.2g} ({p[('group', 'shuffled')]['mean']:.3g} -> "
                         f"{p[('group', 'other')]['mean']:.3g})")
            bn_rises = significant(rise["batch"][0], rise["batch"][1], noise.df, 2, n_slices)
            more = significant(rise["batch"][0] - rise["group"][0], float(np.hypot(rise["batch"][1], rise["group"][1])),
                               noise.df, 2, n_slices)
            (shows if bn_rises and more else against).append(bs)
            weak = weak or noise.underpowered(min(v["count"] for v in p.values()), MATTERS_ERROR, "error")
        n_known = len(shows) + len(against)
        if n_known == 0:
            outcome, where = INCONCLUSIVE, f"no batch size with >= {MIN_SEEDS} seeds in all four arms"
        elif len(shows) <= n_known / 2 and weak:
            outcome, where = INCONCLUSIVE, weak  # the batch sizes that did not show it could not have
        elif len(shows) > n_known / 2:
            outcome, where = HOLDS, "BatchNorm's error rises more than GroupNorm's at batch size " + ", ".join(_bs(b) for b in shows)
        else:
            outcome, where = DOES_NOT_HOLD, f"BatchNorm's rise exceeds GroupNorm's significantly at {len(shows)} of {n_known} batch sizes"
        if unbracketed := _unbracketed(frame[frame[column].isin(["shuffled", order])], protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(_SliceOutcome(label, outcome, where, "; ".join(cells)))
    return _combine("N7", protocol, outcomes, _edge_caveat(view, protocol))


# --------------------------------------------------------------------------- N4


def _lr_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per lr of one norm at one batch size: seeds, seeds trained, seeds that reached the
    target (finished trials only)."""
    finished = frame[frame["status"].isin(FINISHED_STATUSES)]
    seeds = pd.DataFrame({"trained": finished["trained"] == 1, "reached": finished["steps_to_target"].notna()}).groupby(
        finished["lr"])
    return pd.concat([seeds.size().rename("seeds"), seeds.sum().astype(int)], axis=1)


def _top(table: pd.DataFrame, column: str) -> float:
    """The largest lr at which every one of >= MIN_SEEDS seeds has `column` (NaN if none)."""
    ok = table[(table["seeds"] >= MIN_SEEDS) & (table[column] == table["seeds"])]
    return float(ok.index.max()) if len(ok) else float("nan")


def _n4_batch_size(bn: pd.DataFrame, none: pd.DataFrame) -> tuple[str, str, str]:
    """One batch size: (outcome, why, numbers) from the two norms' lr tables."""
    tops = {name: _top(t, "trained") for name, t in (("batch", bn), ("none", none))}
    reach = {name: _top(t, "reached") for name, t in (("batch", bn), ("none", none))}

    def lr(v: float) -> str:
        return "-" if not np.isfinite(v) else f"{v:g}"

    def bracketed(name: str, t: pd.DataFrame) -> bool:
        above = t[t.index > tops[name]] if np.isfinite(tops[name]) else t
        return bool(((above["seeds"] >= 1) & (above["trained"] < above["seeds"])).any())

    numbers = (f"largest lr every seed trained at: batch {lr(tops['batch'])}, none {lr(tops['none'])}; "
               f"every seed reached the target up to: batch {lr(reach['batch'])}, none {lr(reach['none'])}")
    common = bn.add_suffix("_bn").join(none.add_suffix("_none"), how="inner")
    common = common[(common["seeds_bn"] >= MIN_SEEDS) & (common["seeds_none"] >= MIN_SEEDS)]
    none_top = tops["none"] if np.isfinite(tops["none"]) else -np.inf
    bn_top = tops["batch"] if np.isfinite(tops["batch"]) else -np.inf
    shows = common[(common.index > none_top) & (common["trained_bn"] == common["seeds_bn"])
                   & (common["trained_none"] == 0)]
    opposite = common[(common.index > bn_top) & (common["trained_none"] == common["seeds_none"])
                      & (common["trained_bn"] == 0)]
    if len(shows):
        return HOLDS, f"at lr {lr(shows.index.min())} every BatchNorm seed trained and no none seed did", numbers
    if len(opposite):
        return DOES_NOT_HOLD, f"at lr {lr(opposite.index.min())} every none seed trained and no BatchNorm seed did", numbers
    if bracketed("batch", bn) and bracketed("none", none) and none_top > bn_top:
        return DOES_NOT_HOLD, "none's top lr is above BatchNorm's", numbers
    if bracketed("batch", bn) and bracketed("none", none) and none_top == bn_top:
        return INCONCLUSIVE, "both norms' top lr is the same lr of the grid: no difference it resolves", numbers
    if not bracketed("none", none):
        return INCONCLUSIVE, f"none trained at every lr tried up to {lr(tops['none'])}: its range is not bracketed", numbers
    return INCONCLUSIVE, "no lr where one norm's seeds all trained and the other's all failed", numbers


def verdict_n4(summary: pd.DataFrame, protocol: str = LR_RANGE) -> Verdict:
    """N4: BatchNorm trains at larger learning rates than norm=none (every lr at once)."""
    if lacking := _lacks_norms(summary, "N4", LR_RANGE, ("batch", "none")):
        return lacking
    if "trained" not in summary.columns:
        return _combine("N4", LR_RANGE, [_SliceOutcome("study", INCONCLUSIVE, "no per-trial 'trained' column", "")])
    others = [c for c in condition_columns(summary) if c != "norm"]
    groups = summary.groupby(others, sort=True, dropna=False) if others else [((), summary)]
    outcomes = []
    for key, frame in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{config_key(c)}={v}" for c, v in zip(others, key)
                          if summary[c].nunique() > 1) or "norm=batch vs none"
        shown, opposite, cells = [], [], []
        for bs in sorted(set(frame["batch_size"])):
            at = frame[frame["batch_size"] == bs]
            outcome, why, numbers = _n4_batch_size(_lr_table(at[at["norm"] == "batch"]), _lr_table(at[at["norm"] == "none"]))
            cells.append(f"bs {_bs(bs)}: {numbers} ({outcome}: {why})")
            (shown if outcome == HOLDS else opposite if outcome == DOES_NOT_HOLD else []).append(bs)
        n_known = len(shown) + len(opposite)
        if n_known < MIN_BATCH_SIZES_PAIR:
            outcome, where = INCONCLUSIVE, f"shown either way at {n_known} batch size(s); needs >= {MIN_BATCH_SIZES_PAIR}"
        elif len(shown) > n_known / 2:
            outcome, where = HOLDS, "larger lrs train at batch size " + ", ".join(_bs(b) for b in shown)
        else:
            outcome, where = DOES_NOT_HOLD, f"shown at {len(shown)} of {n_known} batch sizes"
        outcomes.append(_SliceOutcome(label, outcome, where, "; ".join(cells)))
    return _combine("N4", LR_RANGE, outcomes)


# --------------------------------------------------------------------------- table

# (claim, function, protocols it is judged under). C2 is lr independent and judged once.
VERDICT_FUNCTIONS: tuple[tuple[str, Callable[[pd.DataFrame, str], Verdict], tuple[str, ...]], ...] = (
    ("C1", verdict_c1, (FIXED_LR, TUNED_LR)),
    ("C2", verdict_c2, (POOLED_LR,)),
    ("C3", verdict_c3, (FIXED_LR, TUNED_LR)),
    ("C4", verdict_c4, (FIXED_LR, TUNED_LR)),
    ("C5", verdict_c5, (FIXED_LR, TUNED_LR)),
    ("C6", verdict_c6, (AT_CHECKPOINTS,)),
    ("C7", verdict_c7, (FIXED_LR, TUNED_LR)),
    ("C8", verdict_c8, (PER_STEP,)),
    ("N1", verdict_n1, (FIXED_LR, TUNED_LR)),
    ("N2", verdict_n2, (FIXED_LR, TUNED_LR)),
    ("N3", verdict_n3, (FIXED_LR, TUNED_LR)),
    ("N4", verdict_n4, (LR_RANGE,)),
    ("N5", verdict_n5, (FIXED_LR, TUNED_LR)),
    ("N6", verdict_n6, (FIXED_LR, TUNED_LR)),
    ("N7", verdict_n7, (FIXED_LR, TUNED_LR)),
)


# Claims that read the measurement rows, not only the per-trial summary.
READS_MEASUREMENTS = ("C6",)


def all_verdicts(summary: pd.DataFrame, measurements: pd.DataFrame | None = None) -> pd.DataFrame:
    """The verdict table: one row per claim and protocol, columns as in ``Verdict``."""
    rows = [asdict(function(summary, protocol, measurements) if claim in READS_MEASUREMENTS else function(summary, protocol))
            for claim, function, protocols in VERDICT_FUNCTIONS for protocol in protocols]
    return pd.DataFrame(rows, columns=list(Verdict.__dataclass_fields__))
