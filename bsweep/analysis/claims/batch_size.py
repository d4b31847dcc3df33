"""The batch-size claims of section 3.5 (C1-C8): each a judge function and its `Claim`.

The judges follow `verdict.py`: slice the study, judge each slice, `combine` the slices. The
`Claim` records at the end name each claim's statement, rule and protocols.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.stats import t

from bsweep.analysis.load import config_key
from bsweep.analysis.metrics import (
    condition_columns,
)
from bsweep.analysis.views import SeedViews
from bsweep.analysis.stats import (
    ALPHA,
    MATTERS_ERROR,
    MATTERS_RELATIVE,
    MIN_SEEDS,
    SeedSpread,
    critical_value,
)
from bsweep.analysis.claims.verdict import (
    AT_CHECKPOINTS,
    DOES_NOT_HOLD,
    FIXED_LR,
    HOLDS,
    INCONCLUSIVE,
    MIN_BATCH_SIZES_PAIR,
    MIN_BATCH_SIZES_TREND,
    PER_STEP,
    POOLED_LR,
    SE,
    SPIKE_ERROR_RATIO,
    TUNED_LR,
    Claim,
    SliceOutcome,
    Verdict,
    combine,
    format_batch_size,
    format_mean,
    per_slice_verdict,
    too_few,
    usable_points,
)

# measured, the cosine with the full training-set gradient gains less than this (near cos 0.9,
# 0.1 is about 10 degrees of a direction 26 degrees off).
COS_GAIN_SMALL = 0.1


# --------------------------------------------------------------------------- C1


def _c1_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    usable = usable_points(curve)
    if len(usable) < MIN_BATCH_SIZES_PAIR:
        return INCONCLUSIVE, too_few(MIN_BATCH_SIZES_PAIR), ""
    best = usable.loc[usable["mean"].idxmin()]
    smallest = usable.iloc[0]
    numbers = (
        f"error at bs {format_batch_size(smallest.batch_size)} {format_mean(smallest['mean'], smallest['sem'], smallest['count'])}, "
        f"lowest at bs {format_batch_size(best.batch_size)} {format_mean(best['mean'], best['sem'], best['count'])}"
    )
    ratio = smallest["mean"] / best["mean"] if best["mean"] > 0 else np.inf
    spread = SeedSpread.of(usable, slices=slices)
    worse = []
    for row in usable.itertuples():
        if row.batch_size >= best.batch_size or not spread.exceeds(row.mean, row.count, best["mean"], best["count"]):
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
        return HOLDS, f"at batch size <= {format_batch_size(run[-1])}, error x{ratio:.2g} the lowest", numbers
    if worse:
        return DOES_NOT_HOLD, (
            f"error at batch size {format_batch_size(smallest.batch_size)} significantly higher but only x{ratio:.2g} "
            f"the lowest, a spike needs x{SPIKE_ERROR_RATIO:g}"
        ), numbers
    if best.batch_size == smallest.batch_size:
        return DOES_NOT_HOLD, "lowest error at the smallest batch size", numbers
    if weak := spread.underpowered(usable["count"].min(), MATTERS_ERROR, "error"):
        return INCONCLUSIVE, weak, numbers
    return DOES_NOT_HOLD, "smallest batch size not significantly worse than the best", numbers


def verdict_c1(summary: pd.DataFrame, protocol: str = TUNED_LR, views: SeedViews | None = None) -> Verdict:
    """C1: at too small a batch size the final error spikes."""
    return per_slice_verdict(C1, summary, protocol, "final_test_acc", "final_test_error", _c1_slice, views)


# --------------------------------------------------------------------------- C2


def _monotone_slice(curve: pd.DataFrame, slices: int, rising: bool, unit: str) -> tuple[str, str, str]:
    """C2 (rising) and C7 (falling): the largest batch size significantly beyond the smallest
    in the claimed direction; the condition names the batch size up to which every step goes
    that way significantly."""
    usable = usable_points(curve)
    if len(usable) < MIN_BATCH_SIZES_TREND:
        return INCONCLUSIVE, too_few(MIN_BATCH_SIZES_TREND), ""
    first, last = usable.iloc[0], usable.iloc[-1]
    numbers = ", ".join(f"bs {format_batch_size(r.batch_size)} {r.mean:.3g} {unit}" for r in usable.itertuples())
    spread = SeedSpread.of(usable, slices=slices)
    word = "rise" if rising else "fall"

    def beyond(a: pd.Series, b: pd.Series) -> bool:  # a significantly beyond b in the claimed direction
        high, low = (a, b) if rising else (b, a)
        return spread.exceeds(high["mean"], high["count"], low["mean"], low["count"])

    if not beyond(last, first):
        if weak := spread.underpowered(usable["count"].min(), MATTERS_RELATIVE * usable["mean"].max(), unit):
            return INCONCLUSIVE, weak, numbers
        return DOES_NOT_HOLD, f"no significant {word} from smallest to largest batch size", numbers
    to = first["batch_size"]
    for i in range(1, len(usable)):
        if not beyond(usable.iloc[i], usable.iloc[i - 1]):
            break
        to = usable.iloc[i]["batch_size"]
    verb = "rises" if rising else "falls"
    if to == last["batch_size"]:
        return HOLDS, f"{verb} at every step up to batch size {format_batch_size(to)}", numbers
    return HOLDS, f"{verb} at every step up to batch size {format_batch_size(to)}, not at every step beyond", numbers


def _c2_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    return _monotone_slice(curve, slices, True, "samples/s")


def verdict_c2(summary: pd.DataFrame, protocol: str = POOLED_LR, views: SeedViews | None = None) -> Verdict:
    """C2: throughput (samples per second) rises with batch size. Pooled over lr and seeds."""
    return per_slice_verdict(C2, summary, POOLED_LR, "samples_per_second", "samples_per_second", _c2_slice, views)


# --------------------------------------------------------------------------- C3


def _c3_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    enough = curve["n_trials"] >= MIN_SEEDS
    reached = curve[enough & (curve["n_reached"] == curve["n_trials"])].reset_index(drop=True)
    censored = curve[enough & (curve["n_reached"] == 0)].reset_index(drop=True)
    if len(reached) == 0 or len(reached) + len(censored) < MIN_BATCH_SIZES_TREND:
        return INCONCLUSIVE, too_few(MIN_BATCH_SIZES_TREND) + " where every seed or no seed reached the target", ""
    fewest = reached.loc[reached["mean"].idxmin()]
    numbers = ", ".join(
        f"bs {format_batch_size(r.batch_size)} {format_mean(r.mean, r.sem, r.count)} epochs" for r in reached.itertuples()
    )
    if len(censored):
        numbers += "; never reached at bs " + ", ".join(format_batch_size(b) for b in censored["batch_size"])
    spread = SeedSpread.of(reached, slices=slices)
    more = [
        r.batch_size
        for r in reached.itertuples()
        if r.batch_size > fewest.batch_size and spread.exceeds(r.mean, r.count, fewest["mean"], fewest["count"])
    ]
    # A larger batch size that trained longer than the fewest epochs needed and still never got
    # there needs more epochs too (censored observation).
    margin = critical_value(max(spread.k, 2), max(spread.df, 1), slices) * np.nan_to_num(spread.sd) / np.sqrt(fewest["count"])
    more += [
        r.batch_size
        for r in censored.itertuples()
        if r.batch_size > fewest.batch_size
        and "last_epoch" in censored.columns
        and r.last_epoch > fewest["mean"] + margin
    ]
    if more:
        return HOLDS, f"more epochs from batch size {format_batch_size(min(more))} up than at {format_batch_size(fewest.batch_size)}", numbers
    if weak := spread.underpowered(reached["count"].min(), MATTERS_RELATIVE * fewest["mean"], "epochs"):
        return INCONCLUSIVE, weak, numbers
    return DOES_NOT_HOLD, f"no larger batch size needs significantly more epochs than {format_batch_size(fewest.batch_size)}", numbers


def verdict_c3(summary: pd.DataFrame, protocol: str = TUNED_LR, views: SeedViews | None = None) -> Verdict:
    """C3: larger batches need more epochs to reach the target (tuned: lr with fewest epochs)."""
    return per_slice_verdict(C3, summary, protocol, "epochs_to_target", "epochs_to_target", _c3_slice, views)


# --------------------------------------------------------------------------- C4, C5


def _interior_optimum(
    points: pd.DataFrame, always_worse: pd.DataFrame, unit: str, slices: int = 1, matters: float | None = None
) -> tuple[str, str, str]:
    """Is the lowest-mean point significantly beaten by a point on each side?

    ``points``: batch sizes with a mean and standard error (lower is better).
    ``always_worse``: batch sizes that count as worse than any point (e.g. never reached target).
    """
    if len(points) == 0 or len(points) + len(always_worse) < MIN_BATCH_SIZES_TREND:
        return INCONCLUSIVE, too_few(MIN_BATCH_SIZES_TREND), ""
    best = points.loc[points["mean"].idxmin()]
    numbers = ", ".join(f"bs {format_batch_size(r.batch_size)} {format_mean(r.mean, r.sem, r.count)}" for r in points.itertuples())
    if len(always_worse):
        numbers += "; never reached at bs " + ", ".join(format_batch_size(b) for b in always_worse["batch_size"])
    numbers += f" ({unit})"
    spread = SeedSpread.of(points, slices=slices)

    def worse_side(side: Callable[[float], bool]) -> bool:
        beaten = any(
            side(r.batch_size) and spread.exceeds(r.mean, r.count, best["mean"], best["count"])
            for r in points.itertuples()
        )
        return beaten or any(side(b) for b in always_worse["batch_size"])

    below = worse_side(lambda b: b < best.batch_size)
    above = worse_side(lambda b: b > best.batch_size)
    at = f"optimum at batch size {format_batch_size(best.batch_size)}"
    if below and above:
        return HOLDS, f"{at}, significantly better than on both sides", numbers
    if below or above:
        side = "larger" if below else "smaller"
        where = f"{at}; no significantly worse {side} batch size in the grid, the optimum may lie outside"
        return INCONCLUSIVE, where, numbers
    matters = MATTERS_RELATIVE * best["mean"] if matters is None else matters
    if weak := spread.underpowered(points["count"].min(), matters, unit):
        return INCONCLUSIVE, weak, numbers
    return DOES_NOT_HOLD, f"{at}, but no batch size is significantly worse", numbers


def _c4_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    enough = curve["n_trials"] >= MIN_SEEDS
    reached = curve[enough & (curve["n_reached"] == curve["n_trials"]) & (curve["count"] >= MIN_SEEDS)]
    never = curve[enough & (curve["n_reached"] == 0)]
    return _interior_optimum(reached.reset_index(drop=True), never, "training seconds to target", slices)


def verdict_c4(summary: pd.DataFrame, protocol: str = TUNED_LR, views: SeedViews | None = None) -> Verdict:
    """C4: an interior batch size minimises training time to target (tuned: fastest lr)."""
    return per_slice_verdict(C4, summary, protocol, "seconds_to_target", "seconds_to_target", _c4_slice, views)


def _c5_slice(curve: pd.DataFrame, slices: int = 1) -> tuple[str, str, str]:
    return _interior_optimum(usable_points(curve), curve.iloc[0:0], "final test error", slices, MATTERS_ERROR)


def verdict_c5(summary: pd.DataFrame, protocol: str = TUNED_LR, views: SeedViews | None = None) -> Verdict:
    """C5: an interior batch size gives the best final accuracy (tuned: most accurate lr)."""
    return per_slice_verdict(C5, summary, protocol, "final_test_acc", "final_test_error", _c5_slice, views)


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
    noise_scale = float(row.get("cosine_noise_scale", np.nan))
    predicted = {b: (1 + noise_scale / b) ** -0.5 for b in sizes} if np.isfinite(noise_scale) and noise_scale > 0 else {}
    numbers = f"{step}: cos " + ", ".join(f"bs {b} {mean[b]:.2f}±{sd[b] / np.sqrt(n):.2f}" for b in sizes)
    if predicted:
        worst = max(abs(mean[b] - predicted[b]) for b in sizes)
        numbers += f"; B_simple {noise_scale:.3g}: predicted " + ", ".join(f"{predicted[b]:.2f}" for b in sizes)
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
        return combine(C6, AT_CHECKPOINTS, [SliceOutcome("study", INCONCLUSIVE, reason, "")])
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
        outcomes.append(SliceOutcome(label, outcome, "; ".join(c[1] for c in checks),
                                      " / ".join(c[2] for c in checks if c[2])))
    return combine(C6, AT_CHECKPOINTS, outcomes)


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


def verdict_c7(summary: pd.DataFrame, protocol: str = TUNED_LR, views: SeedViews | None = None) -> Verdict:
    """C7: a larger batch oscillates less: the training loss's step-to-step jitter falls with
    batch size (tuned: at the most accurate lr)."""
    return per_slice_verdict(C7, summary, protocol, "final_test_acc", "loss_jitter", _c7_slice, views)


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
    numbers = ", ".join(f"bs {format_batch_size(b)} {_mib(m)}" for b, m in zip(sizes, memory))
    numbers += f"; fit {_mib(intercept)} + {slope / 1024:.3g} KiB x B (within {off:.1%} of every point)"
    peaks = per_bs["peak_memory_bytes"].astype(float)
    if np.isfinite(peaks).any():
        numbers += "; measured peak " + ", ".join(f"bs {format_batch_size(b)} {_mib(p)}" for b, p in peaks.dropna().items())
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
        return combine(C8, PER_STEP, [SliceOutcome("study", INCONCLUSIVE, reason, "")])
    columns = condition_columns(summary)
    groups = summary.groupby(columns, sort=True, dropna=False) if columns else [((), summary)]
    outcomes = []
    for key, frame in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{config_key(c)}={v}" for c, v in zip(columns, key)
                          if c == "norm" or summary[c].nunique() > 1) or "all trials"
        outcomes.append(SliceOutcome(label, *_c8_slice(frame)))
    return combine(C8, PER_STEP, outcomes)

# --------------------------------------------------------------------------- the claims
# Defined after their judges, which name them (e.g. `combine(C1, ...)`) only when called.

C1 = Claim(
    id="C1",
    statement="batch size too small: the model does very badly (error spikes)",
    short="tiny batch: error spikes",
    rule=(
        f"Final test error (1 - mean of the last measurements) per batch size, >= {MIN_SEEDS} seeds, "
        f">= {MIN_BATCH_SIZES_PAIR} batch sizes. Holds where the smallest batch sizes (a run "
        f"upward from the smallest) each have error more than {SE} above the lowest error of any "
        f"batch size and at least x{SPIKE_ERROR_RATIO:g} that lowest error (a spike, not a "
        "rise); does not hold where the smallest batch size is not worse by both measures."
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_c1,
)

C2 = Claim(
    id="C2",
    statement="larger batch: the same amount of data is processed faster (throughput rises)",
    short="larger batch: more throughput",
    rule=(
        f"Samples per second per batch size, pooled over lr and seeds, >= {MIN_SEEDS} trials, "
        f">= {MIN_BATCH_SIZES_TREND} batch sizes. Holds when throughput at the largest batch size "
        f"exceeds that at the smallest by more than {SE}; the condition names the batch size up "
        "to which every doubling step still rises significantly."
    ),
    protocols=(POOLED_LR,),
    judge=verdict_c2,
)

C3 = Claim(
    id="C3",
    statement="larger batch: more epochs are needed to reach the same accuracy",
    short="larger batch: more epochs",
    rule=(
        f"Epochs to target per batch size (all seeds reached it), >= {MIN_SEEDS} seeds, "
        f">= {MIN_BATCH_SIZES_TREND} batch sizes. Holds when some batch size larger than the one "
        f"needing fewest epochs needs more than {SE} more, or never reaches the target although "
        "it trained for more epochs than that fewest; otherwise does not hold."
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_c3,
)

C4 = Claim(
    id="C4",
    statement="some batch size minimises time to target accuracy",
    short="a batch size is fastest",
    rule=(
        f"Training seconds to target per batch size (all seeds reached it; a batch size where no "
        f"seed reached it counts as slower), >= {MIN_SEEDS} seeds, >= {MIN_BATCH_SIZES_TREND} "
        f"batch sizes. Holds when the fastest batch size has a significantly slower (> {SE}) batch "
        "size on both sides; inconclusive when only one side is slower (optimum may lie outside "
        "the grid); does not hold when neither side is."
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_c4,
)

C5 = Claim(
    id="C5",
    statement="some batch size gives the best final accuracy",
    short="a batch size is most accurate",
    rule=(
        f"Final test error per batch size, >= {MIN_SEEDS} seeds, >= {MIN_BATCH_SIZES_TREND} batch "
        f"sizes. Holds when the batch size with lowest error has a batch size with error more than "
        f"{SE} higher on both sides; inconclusive when only on one side (optimum may lie outside "
        "the grid); does not hold when on neither (accuracy flat in batch size)."
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_c5,
)

C6 = Claim(
    id="C6",
    statement="larger batch: a more accurate descent direction, which past some size barely changes",
    short="larger batch: truer gradient",
    rule=(
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
    protocols=(AT_CHECKPOINTS,),
    judge=verdict_c6,
    reads_seed_views=False,
    reads_measurements=True,
)

C7 = Claim(
    id="C7",
    statement="larger batch: training oscillates less (a more accurate descent direction)",
    short="larger batch: less oscillation",
    rule=(
        "Loss jitter per batch size: the root mean square over the second half of the epoch "
        "budget of sqrt(mean((l[t] - l[t-1])^2) / 2), l[t] the training loss of step t (for "
        f"independent steps, one step's loss's standard deviation), >= {MIN_SEEDS} seeds, >= "
        f"{MIN_BATCH_SIZES_TREND} batch sizes. Holds when the jitter at the largest batch size is "
        f"below that at the smallest by more than {SE}; the condition names the batch size up to "
        "which every step down is significant. It includes the sampling noise of a batch's mean "
        "loss, which alone would fall as B^-0.5 (the numbers give the fitted slope)."
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_c7,
)

C8 = Claim(
    id="C8",
    statement="larger batch: a step needs more memory, until it no longer fits",
    short="larger batch: more memory",
    rule=(
        "Memory of one training step per batch size, from `bsweep bench` (bench.parquet): "
        "parameters, gradients, optimizer state and the tensors autograd saves for backward, "
        "counted from shapes and dtypes (the same on every machine, no seed noise: no test); "
        f">= {MIN_BATCH_SIZES_TREND} batch sizes. Holds when it grows from the smallest batch "
        "size to the largest (the condition says whether at every step). The numbers give the "
        "least-squares line a + b x B and the largest batch size whose predicted memory fits "
        "the limit (study.memory_limit_gib, else the device's memory: a prediction on a CPU; on "
        "a GPU the bench also measures the peak, torch.cuda.max_memory_allocated)."
    ),
    protocols=(PER_STEP,),
    judge=verdict_c8,
    reads_seed_views=False,
)
