"""Synthetic studies with a known truth, to measure how often a verdict says "holds".

A verdict's statistics are only as good as their error rates at the seed counts real studies
use (2-5). `synthetic_summary` draws the per-trial summary of a study (the frame the verdicts
read, `metrics.summarize_trials`' columns) in which every metric is a known curve over batch
size plus Gaussian seed noise, on the whole test set and on its validation and held-out halves
(HALF_SHARE); `claim_rates` runs a verdict on many such studies (`study_for` shapes each for its claim). The middle lr is the best everywhere, so the
lr grid brackets the tuned optimum. Used by
`tests/analysis/test_calibration.py` and `benchmarks/verdict_calibration.py`. No torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product

import numpy as np
import pandas as pd

from bsweep.analysis.claims.verdict import AT_CHECKPOINTS, DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, Verdict

# The grid of the null study: 6 batch sizes x 3 lrs x 2 norms.
BATCH_SIZES: tuple[int, ...] = (1, 4, 16, 64, 256, 1024)
LRS: tuple[float, ...] = (0.01, 0.03, 0.1)
NORMS: tuple[str, ...] = ("batch", "group")
# Seed noise like mnist1d's: final accuracy 0.95 +- 0.005 (claims_quick's seed spread), and 5 %
# of the mean for times, epochs, steps and throughput.
ACC, ACC_SD = 0.95, 0.005
SECONDS, EPOCHS, STEPS, THROUGHPUT, JITTER, REL_SD = 10.0, 5.0, 1000.0, 1000.0, 0.5, 0.05
EFFECT_SDS = 3.0  # the true effect of the comparison claims, in seed-noise standard deviations
# The lr grid brackets the best lr, as a tuned study's grid must (a tuned verdict on an optimum
# at the grid's edge is inconclusive): the outer lrs are this many noise sds worse everywhere.
LR_PENALTY_SDS = 3.0
SPIKE = 2.0  # the true effect of C1 and N1: error x2 at the smallest batch size
# Each trial is scored on the two halves of the test set too (the tuned view selects on one and
# reports the other): of a half's seed-to-seed sd, this share is the half's own (which samples
# it holds), the rest the trial's (its seed). Stated, not measured: 0.5 puts as much noise in
# the choice of lr as a real half of a 1000-sample test set plausibly does, and keeps a half's
# total spread at the noise sd above, so effects stay 3 noise sds on the reported half.
HALF_SHARE = 0.5
# N4: the largest lr a network trains at. Per study, the limit is drawn log-uniformly over a
# decade that reaches past the grid's lrs, so a grid lr can sit where seeds split; a seed
# fails with a logistic probability in log10(lr) around the limit, over this many decades
# (divergence sets in sharply with lr). An effect moves one norm's limit (decades).
LIMIT_RANGE = (0.02, 0.2)
LIMIT_WIDTH = 0.1  # decades

# Each effect maps (norm, batch size index) -> the change of (error, seconds, epochs, steps,
# throughput, loss jitter) in units of their noise sd (error: a multiplier for the spikes).
Effect = Callable[[str, int], dict[str, float]]


def no_effect(norm: str, i: int) -> dict[str, float]:
    return {}


EFFECTS: dict[str, Effect] = {
    "C1": lambda norm, i: {"error_x": SPIKE} if i == 0 else {},
    "C2": lambda norm, i: {"throughput": EFFECT_SDS * i / (len(BATCH_SIZES) - 1)},
    "C3": lambda norm, i: {"epochs": EFFECT_SDS * i / (len(BATCH_SIZES) - 1)},
    "C4": lambda norm, i: {"seconds": 0.0 if i == 2 else EFFECT_SDS},
    "C5": lambda norm, i: {"error": 0.0 if i == 2 else EFFECT_SDS},
    "C7": lambda norm, i: {"jitter": -EFFECT_SDS * i / (len(BATCH_SIZES) - 1)},
    "N1": lambda norm, i: {"error_x": SPIKE} if i == 0 and norm == "batch" else {},
    "N2": lambda norm, i: {"steps": EFFECT_SDS} if norm == "none" else {},
    "N3": lambda norm, i: {"steps": EFFECT_SDS} if norm == "minmax" else {},
    "N4": lambda norm, i: {"lr_limit": 0.5} if norm == "batch" else {},
    "N6": lambda norm, i: {"error": EFFECT_SDS} if norm == "none" else {},
    # N7: sorted data raise BatchNorm's error by 3 noise sds at every batch size, not GroupNorm's
    "N7": lambda norm, i: {"error": EFFECT_SDS} if norm == "batch:sorted" else {},
}


def synthetic_summary(rng: np.random.Generator, seeds: int, effect: Effect = no_effect,
                      norms: Sequence[str] = NORMS) -> pd.DataFrame:
    """One study's per-trial summary: every metric its curve plus seed noise, every trial
    complete and every seed reaching the target."""
    rows = []
    own, shared = HALF_SHARE, np.sqrt(1 - HALF_SHARE**2)
    # a child stream (spawning leaves rng's own draws as they were before N4 existed)
    fails = rng.spawn(1)[0]
    limit = fails.uniform(*np.log10(LIMIT_RANGE))

    def halves(mean: float, sd: float) -> tuple[float, float, float]:
        """(whole test set, validation half, held-out half) of one trial."""
        trial = mean + sd * shared * rng.standard_normal()
        val, held = trial + sd * own * rng.standard_normal(2)
        return (val + held) / 2, val, held

    for norm, (i, bs), lr, seed in product(norms, enumerate(BATCH_SIZES), LRS, range(seeds)):
        e = effect(norm, i)
        off = LR_PENALTY_SDS * (lr != LRS[len(LRS) // 2])
        error = halves((1 - ACC) * e.get("error_x", 1.0) + ACC_SD * (e.get("error", 0.0) + off), ACC_SD)
        seconds = halves(SECONDS * (1 + REL_SD * (e.get("seconds", 0.0) + off)), SECONDS * REL_SD)
        epochs = halves(EPOCHS * (1 + REL_SD * (e.get("epochs", 0.0) + off)), EPOCHS * REL_SD)
        steps = halves(STEPS * (1 + REL_SD * (e.get("steps", 0.0) + off)), STEPS * REL_SD)
        throughput = THROUGHPUT * (1 + REL_SD * (e.get("throughput", 0.0) + rng.standard_normal()))
        jitter = JITTER * (1 + REL_SD * (e.get("jitter", 0.0) + off + rng.standard_normal()))
        p_fail = 1 / (1 + np.exp(-(np.log10(lr) - limit - e.get("lr_limit", 0.0)) / LIMIT_WIDTH))
        row = {"trial_id": f"{norm}-{bs}-{lr}-{seed}", "status": "complete", "norm": norm, "batch_size": bs,
               "lr": lr, "seed": seed, "target": 0.8, "samples_per_second": throughput, "loss_jitter": jitter,
               "trained": float(fails.random() >= p_fail), "final_train_loss": error[0], "diverged": False,
               "last_epoch": 2 * EPOCHS}
        for k, prefix in enumerate(("", "val_", "heldout_")):
            row.update({
                f"{prefix}final_test_acc": 1 - error[k], f"{prefix}final_test_error": error[k],
                f"{prefix}best_test_acc": 1 - error[k], f"{prefix}final_test_loss": error[k],
                f"{prefix}steps_to_target": steps[k], f"{prefix}epochs_to_target": epochs[k],
                f"{prefix}samples_to_target": steps[k] * bs, f"{prefix}seconds_to_target": seconds[k],
            })
        rows.append(row)
    return pd.DataFrame(rows)


# C6: the gradient cosines of one reference trial at three checkpoints, over batch sizes 1-4096.
# With the effect the mean cosine follows the noise-scale model (1 + B_SIMPLE / B)^(-1/2); with
# none it is flat at its value at B_SIMPLE. Each batch size's draws scatter by COS_DRAW_SD (the
# spread seen on mnist1d, 0.1-0.2 per draw; 0.15 stated).
COS_BATCH_SIZES: tuple[int, ...] = (1, 4, 16, 64, 256, 1024, 4096)
B_SIMPLE, COS_DRAW_SD, COS_DRAWS, COS_CHECKPOINTS = 200.0, 0.15, 8, 3


def synthetic_cosines(rng: np.random.Generator, effect: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, measurements) of one trial with C6's checkpoint rows."""
    rows = []
    for k in range(COS_CHECKPOINTS):
        row = {"trial_id": "ref", "step": 100 * (k + 1), "epoch": float(k + 1), "cosine_draws": float(COS_DRAWS),
               "cosine_noise_scale": B_SIMPLE}
        for b in COS_BATCH_SIZES:
            true = (1 + B_SIMPLE / b) ** -0.5 if effect else 0.5 ** 0.5
            draws = np.clip(true + COS_DRAW_SD * rng.standard_normal(COS_DRAWS), -1, 1)
            row[f"cosine_b{b}"], row[f"cosine_sd_b{b}"] = float(draws.mean()), float(draws.std(ddof=1))
        rows.append(row)
    summary = pd.DataFrame([{"trial_id": "ref", "status": "complete", "norm": "batch", "batch_size": 64, "lr": 0.03, "seed": 0}])
    return summary, pd.DataFrame(rows)


def c6_rates(studies: int, effect: bool, seed: int = 0) -> dict[str, float]:
    """The share of synthetic C6 studies in which the verdict says each verdict."""
    from bsweep.analysis.claims.batch_size import verdict_c6

    rng = np.random.default_rng(seed)
    said = []
    for _ in range(studies):
        summary, measurements = synthetic_cosines(rng, effect)
        said.append(verdict_c6(summary, AT_CHECKPOINTS, measurements).verdict)
    return {v: said.count(v) / studies for v in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)}


# The arms each claim compares, in the synthetic studies (the first is the baseline where one is).
CLAIM_NORMS: dict[str, tuple[str, ...]] = {"N2": ("batch", "none"), "N3": ("zscore", "minmax"), "N4": ("batch", "none"),
                                            "N6": ("lrn", "none"), "N7": ("batch", "group")}


def study_for(claim: str, rng: np.random.Generator, seeds: int, effect: Effect = no_effect) -> pd.DataFrame:
    """A synthetic study shaped for `claim`: N3 varies data.input_norm instead of norm; N7
    crosses norm with data.order (two synthetic halves, "sorted" carrying the effect)."""
    norms = CLAIM_NORMS.get(claim, NORMS)
    if claim == "N3":
        return synthetic_summary(rng, seeds, effect, norms).rename(columns={"norm": "data.input_norm"})
    if claim == "N7":
        halves = []
        for order in ("shuffled", "sorted"):
            tagged = (lambda norm, i, o=order: effect(f"{norm}:{o}", i))
            half = synthetic_summary(rng, seeds, tagged, norms).assign(**{"data.order": order})
            halves.append(half.assign(trial_id=order + "-" + half["trial_id"]))
        return pd.concat(halves, ignore_index=True)
    return synthetic_summary(rng, seeds, effect, norms)


def claim_rates(claim: str, verdict: Callable[[pd.DataFrame, str], Verdict], protocol: str, seeds: int,
                studies: int, effect: Effect = no_effect, seed: int = 0) -> dict[str, float]:
    """The share of `studies` synthetic studies shaped for `claim` (`study_for`) in which
    `verdict` says each verdict."""
    rng = np.random.default_rng(seed)
    said = [verdict(study_for(claim, rng, seeds, effect), protocol).verdict for _ in range(studies)]
    return {v: said.count(v) / studies for v in (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE)}
