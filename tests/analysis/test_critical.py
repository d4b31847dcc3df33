"""Critical batch size (bsweep.analysis.critical) on synthetic studies with known S_min and B_crit."""

from __future__ import annotations

from itertools import product

import numpy as np
import pandas as pd
import pytest

from bsweep.analysis.critical import (
    analyse_critical_batch_size,
    fit_critical_batch_size,
    fit_steps_model,
    model_examples,
    model_steps,
    reading,
    regime,
    steps_view,
)

S_MIN, B_CRIT = 400.0, 100.0  # the synthetic truth: steps and examples (batch size)
BATCH_SIZES = tuple(2**k for k in range(1, 12))  # 2 .. 2048
T0, PER_EXAMPLE = 1e-3, 1e-5  # step time t(B) = T0 + PER_EXAMPLE * B, seconds
# With that t(B), T(B) = S(B) t(B) is least at B* = sqrt(B_crit T0 / PER_EXAMPLE) = 100.
B_STAR = float(np.sqrt(B_CRIT * T0 / PER_EXAMPLE))


def true_time(batch_size: float, per_example_factor: float = 1.0) -> float:
    """Seconds to target of the synthetic truth: S(B) t(B)."""
    return float(model_steps(batch_size, S_MIN, B_CRIT) * (T0 + per_example_factor * PER_EXAMPLE * batch_size))


def synthetic_summary(
    noise: float = 0.0,
    seeds: int = 3,
    batch_sizes=BATCH_SIZES,
    norms=(("batch", B_CRIT),),
    lrs=(0.03, 0.1, 0.3),
    rng_seed: int = 0,
    reached=lambda norm, bs, seed: True,
) -> pd.DataFrame:
    """The output shape of ``metrics.summarize_trials``, steps from S(B) with relative noise.

    The middle lr is the best; the others need 1.5x the steps, so the tuned view must pick it.
    """
    rng = np.random.default_rng(rng_seed)
    rows = []
    for (norm, b_crit), bs, lr, seed in product(norms, batch_sizes, lrs, range(seeds)):
        steps = model_steps(bs, S_MIN, b_crit) * (1.0 if lr == 0.1 else 1.5)
        steps *= np.exp(rng.normal(0.0, noise))
        hit = reached(norm, bs, seed)
        per_step = T0 + PER_EXAMPLE * bs
        rows.append({
            "trial_id": f"{norm}-{bs}-{lr}-{seed}", "status": "complete", "norm": norm,
            "batch_size": bs, "lr": lr, "seed": seed, "device": "cpu", "diverged": False,
            "steps_to_target": steps if hit else np.nan,
            "seconds_to_target": steps * per_step if hit else np.nan,
            "last_step": 2 * steps, "last_seconds": 2 * steps * per_step,
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the model itself


def test_model_identities():
    b = np.array([10.0, 100.0, 1000.0])
    steps, examples = model_steps(b, S_MIN, B_CRIT), model_examples(b, S_MIN, B_CRIT)
    e_min = S_MIN * B_CRIT
    assert examples == pytest.approx(e_min * (1 + b / B_CRIT))
    assert (steps / S_MIN - 1) * (examples / e_min - 1) == pytest.approx(np.ones(3))
    assert [regime(x, B_CRIT) for x in (10, 25, 100, 399, 400, 4000)] == [
        "perfect scaling", "perfect scaling", "diminishing returns", "diminishing returns",
        "maximal parallelism", "maximal parallelism",
    ]
    assert regime(10, float("nan")) == ""


def test_exact_data_is_recovered_exactly():
    fit = fit_steps_model(BATCH_SIZES, model_steps(np.array(BATCH_SIZES), S_MIN, B_CRIT))
    assert fit["reason"] == ""
    assert fit["s_min"] == pytest.approx(S_MIN, rel=1e-9)
    assert fit["b_crit"] == pytest.approx(B_CRIT, rel=1e-9)
    assert fit["e_min"] == pytest.approx(S_MIN * B_CRIT, rel=1e-9)
    assert fit["b_crit_lo"] == pytest.approx(B_CRIT, rel=1e-6) == fit["b_crit_hi"]


def test_intervals_cover_the_truth_at_their_nominal_rate():
    # 300 synthetic studies with 10 % relative noise on the 6 even batch sizes 2 .. 2048: a
    # 95 % interval must cover the truth in roughly 95 % of them (binomial sd 1.3 %), and the
    # estimates must centre on it.
    rng = np.random.default_rng(1)
    b = np.array(BATCH_SIZES[::2], dtype=float)
    covered = {"s_min": 0, "b_crit": 0, "e_min": 0}
    estimates = []
    for _ in range(300):
        fit = fit_steps_model(b, model_steps(b, S_MIN, B_CRIT) * np.exp(rng.normal(0, 0.1, len(b))))
        for name, truth in (("s_min", S_MIN), ("b_crit", B_CRIT), ("e_min", S_MIN * B_CRIT)):
            covered[name] += fit[f"{name}_lo"] <= truth <= fit[f"{name}_hi"]
        estimates.append(fit["b_crit"])
    for name, count in covered.items():
        assert 0.89 <= count / 300 <= 0.99, (name, count)
    assert np.median(estimates) == pytest.approx(B_CRIT, rel=0.05)


@pytest.mark.parametrize(
    ("batch_sizes", "steps", "reason"),
    [
        ((8, 64), (500.0, 100.0), "needs at least 3"),
        ((), (), "needs at least 3"),
        ((8, 64, 512), (np.nan, np.nan, 100.0), "needs at least 3"),
        ((8, 64, 512), (800.0, 100.0, 12.5), "S_min"),  # exactly 1/B: B_crit beyond the grid
        ((8, 64, 512), (100.0, 100.0, 120.0), "do not fall"),  # flat: B_crit below the grid
    ],
)
def test_degenerate_points_give_nan_and_a_reason(batch_sizes, steps, reason):
    fit = fit_steps_model(batch_sizes, steps)
    assert np.isnan(fit["b_crit"]) and np.isnan(fit["s_min"])
    assert reason in fit["reason"]


# --------------------------------------------------------------------------- from a study


def test_fit_from_the_tuned_view_recovers_known_parameters():
    summary = synthetic_summary(noise=0.0, norms=(("batch", 100.0), ("group", 30.0)))
    fits = fit_critical_batch_size(steps_view(summary)).set_index("norm")
    assert fits.loc["batch", "b_crit"] == pytest.approx(100.0, rel=1e-6)
    assert fits.loc["group", "b_crit"] == pytest.approx(30.0, rel=1e-6)
    assert fits.loc["batch", "s_min"] == pytest.approx(S_MIN, rel=1e-6)
    assert (fits["reason"] == "").all() and (fits["n_batch_sizes"] == len(BATCH_SIZES)).all()
    # lr 0.03 and 0.3 are the edges of the grid but never best here.
    assert (fits["n_lr_on_edge"] == 0).all()


def test_fit_with_seed_noise_covers_the_truth():
    summary = synthetic_summary(noise=0.15, seeds=3, rng_seed=4)
    fit = fit_critical_batch_size(steps_view(summary)).iloc[0]
    assert fit["b_crit_lo"] <= B_CRIT <= fit["b_crit_hi"]
    assert fit["s_min_lo"] <= S_MIN <= fit["s_min_hi"]
    assert fit["b_crit"] == pytest.approx(B_CRIT, rel=0.3)
    assert fit["b_crit_hi"] / fit["b_crit_lo"] < 3  # informative, not an interval over everything


def test_batch_sizes_where_a_seed_missed_the_target_are_left_out():
    summary = synthetic_summary(reached=lambda norm, bs, seed: not (bs >= 512 and seed == 0))
    fit = fit_critical_batch_size(steps_view(summary)).iloc[0]
    assert fit["b_max"] == 256 and fit["n_batch_sizes"] == 8
    assert fit["b_crit"] == pytest.approx(B_CRIT, rel=1e-6)


def test_no_reached_target_or_too_few_batch_sizes_give_reasons():
    never = synthetic_summary(reached=lambda norm, bs, seed: False)
    fit = fit_critical_batch_size(steps_view(never)).iloc[0]
    assert np.isnan(fit["b_crit"]) and fit["reason"] == "no trial reached the target"
    two = synthetic_summary(batch_sizes=(8, 64))
    assert "needs at least 3" in fit_critical_batch_size(steps_view(two)).iloc[0]["reason"]
    empty = fit_critical_batch_size(steps_view(never.iloc[0:0]))
    assert len(empty) == 1 and empty.iloc[0]["reason"] == "no finished trial"


def test_analysis_predicts_time_optimum_from_trial_step_times():
    summary = synthetic_summary(noise=0.0)
    result = analyse_critical_batch_size(summary, pd.DataFrame(columns=["trial_id", "step"]))
    p = result.prediction.iloc[0]
    assert p["step_time_source"] == "trials"
    # T(B) is flat near its minimum, and t(B) is interpolated as a power law between grid
    # points (T0 + c B is not one): the location is good to ~10 %, the time to < 1 %.
    assert p["predicted_batch_size"] == pytest.approx(B_STAR, rel=0.15)
    assert true_time(p["predicted_batch_size"]) <= 1.01 * true_time(B_STAR)
    assert p["predicted_grid_batch_size"] in (64, 128)
    assert p["measured_batch_size"] == p["predicted_grid_batch_size"]
    assert not p["predicted_on_edge"]
    regimes = result.regimes.set_index("batch_size")["regime"]
    assert regimes[16] == "perfect scaling" and regimes[128] == "diminishing returns"
    assert regimes[512] == "maximal parallelism"
    assert (result.curve["steps"] >= S_MIN).all()
    assert result.noise.iloc[0]["reason"].startswith("no noise-scale measurements")
    text = " ".join(reading(result))
    assert "S(B) = 400 x (1 + 100 / B)" in text and "measured fastest: 128" in text


def test_calibrated_bench_replaces_trial_step_times_for_its_device():
    summary = synthetic_summary(noise=0.0)
    # A benchmark where steps cost 10x more per example: the optimum moves to sqrt(100*1e-3/1e-4).
    bench = pd.DataFrame({
        "batch_size": BATCH_SIZES, "norm": "batch", "device": "cpu",
        "seconds_per_step": [T0 + 10 * PER_EXAMPLE * b for b in BATCH_SIZES],
    })
    result = analyse_critical_batch_size(summary, pd.DataFrame(), bench=bench)
    p = result.prediction.iloc[0]
    assert p["step_time_source"] == "benchmark"
    best = np.sqrt(B_CRIT * T0 / (10 * PER_EXAMPLE))
    assert p["predicted_batch_size"] == pytest.approx(best, rel=0.15)
    assert true_time(p["predicted_batch_size"], 10) <= 1.01 * true_time(best, 10)
    # A benchmark of another device is not used.
    other = analyse_critical_batch_size(summary, pd.DataFrame(), bench=bench.assign(device="cuda"))
    assert other.prediction.iloc[0]["step_time_source"] == "trials" and other.notes
    # samples_per_second alone is enough.
    rate = bench.drop(columns="seconds_per_step").assign(samples_per_second=bench["batch_size"] / bench["seconds_per_step"])
    again = analyse_critical_batch_size(summary, pd.DataFrame(), bench=rate).prediction.iloc[0]
    assert again["predicted_batch_size"] == pytest.approx(p["predicted_batch_size"])


def test_noise_scale_near_target_is_compared_with_b_crit():
    summary = synthetic_summary(noise=0.0, seeds=2, batch_sizes=(8, 32, 128, 512))
    rows = []
    for trial in summary.itertuples():
        for step in (0, int(trial.steps_to_target) // 2, int(trial.steps_to_target), int(trial.last_step)):
            # Noise scale grows during training: 10 at the start, 50 just before the target.
            noise = {0: 10.0}.get(step, 50.0 if step < trial.steps_to_target else 300.0)
            rows.append({"trial_id": trial.trial_id, "step": step, "samples": step * trial.batch_size,
                         "noise_scale": noise})
    measurements = pd.DataFrame(rows)
    result = analyse_critical_batch_size(summary, measurements)
    noise = result.noise.iloc[0]
    assert noise["noise_scale_at_target"] == 50.0 and noise["n_trials"] == 8  # tuned lr, 4 bs x 2 seeds
    assert noise["b_crit_over_noise"] == pytest.approx(B_CRIT / 50.0, rel=1e-6)
    assert set(result.noise_curves["batch_size"]) == {8, 32, 128, 512}
    assert "consistent" in " ".join(reading(result))
