"""The arithmetic of ``bsweep predict`` (``bsweep.analysis.prediction``): the noise-scale interval's
coverage on a problem with a known answer, the S(B) fit against a published table, and the
curve, optimum, regime, lr and verification helpers on cases solved by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bsweep.analysis.critical import fit_steps_model
from bsweep.analysis.prediction import (
    NoiseEstimate,
    default_blocks,
    lr_at,
    noise_scale_interval,
    predict_curve,
    regimes_text,
    step_time_at,
    steps_curve,
    time_optimum,
    verify_held,
)
from bsweep.train.gradient_noise import unbiased_grad_norm_sq, unbiased_trace_sigma

# --------------------------------------------------------------------------- a known noise scale

DIM = 20  # weights of the least-squares problem
NOISE_SD = 3.0  # label noise s
MICRO = 16  # examples per micro-batch (b_small)
MICROS = 16  # micro-batches per noise point (b_big = MICROS * MICRO)
RUNS = 300  # simulated pilots per coverage case: a 95 % coverage is then known within ~2.5 %


def true_values(delta: np.ndarray) -> tuple[float, float]:
    """|G|^2 and tr(Sigma) of least squares at weights w = w* + delta.

    Per-example loss 0.5 (x.w - y)^2 with x ~ N(0, I_d), y = x.w* + eps, eps ~ N(0, s^2): the
    per-example gradient is g = x r with r = x.delta - eps. Its mean is E[x x'] delta = delta,
    so |G|^2 = |delta|^2. Its second moment is E|g|^2 = E[|x|^2 (x.delta)^2] + s^2 E|x|^2; by
    rotation (delta along e1) E[|x|^2 x1^2] = 3 + (d - 1) = d + 2, so E|g|^2 = (d + 2)|delta|^2 +
    d s^2 and tr(Sigma) = E|g|^2 - |G|^2 = d (|delta|^2 + s^2) + |delta|^2.
    """
    norm_sq = float(delta @ delta)
    return norm_sq, DIM * (norm_sq + NOISE_SD**2) + norm_sq


def micro_gradients(rng: np.random.Generator, delta: np.ndarray, micros: int = MICROS) -> np.ndarray:
    """``micros`` mean gradients of fresh micro-batches of ``MICRO`` examples each."""
    x = rng.standard_normal((micros, MICRO, DIM))
    residual = x @ delta - NOISE_SD * rng.standard_normal((micros, MICRO))
    return (x * residual[..., None]).mean(axis=1)


def estimates(grads: np.ndarray) -> tuple[float, float]:
    """One noise point as the tracker measures it: |g_small|^2 averaged over the micro-batches,
    |g_big|^2 of their mean, through the unbiased formulas of ``gradient_noise``."""
    g_small_sq = float((grads**2).sum(axis=1).mean())
    g_big_sq = float((grads.mean(axis=0) ** 2).sum())
    b_big = len(grads) * MICRO
    return (unbiased_grad_norm_sq(g_small_sq, g_big_sq, MICRO, b_big),
            unbiased_trace_sigma(g_small_sq, g_big_sq, MICRO, b_big))


def coverage(simulate, seed: int) -> tuple[float, float]:
    """Share of ``RUNS`` simulated pilots whose interval covers the truth, and share unbounded."""
    rng = np.random.default_rng(seed)
    covered = unbounded = 0
    for _ in range(RUNS):
        g2, trace, truth = simulate(rng)
        got = noise_scale_interval(g2, trace)
        covered += got.lo <= truth <= got.hi
        unbounded += math.isinf(got.hi)
    return covered / RUNS, unbounded / RUNS


def test_the_least_squares_noise_is_what_the_docstring_derives():
    rng = np.random.default_rng(0)
    delta = np.full(DIM, 0.3)
    x = rng.standard_normal((200_000, DIM))
    g = x * (x @ delta - NOISE_SD * rng.standard_normal(len(x)))[:, None]
    g2, trace = true_values(delta)
    assert np.sum(g.mean(axis=0) ** 2) == pytest.approx(g2, rel=0.05)
    assert np.trace(np.cov(g.T)) == pytest.approx(trace, rel=0.01)


@pytest.mark.parametrize("points", [8, 12, 16])
def test_the_interval_covers_a_known_noise_scale(points):
    delta = np.zeros(DIM)
    delta[0] = 1.0
    g2, trace = true_values(delta)

    def simulate(rng):
        pairs = [estimates(micro_gradients(rng, delta)) for _ in range(points)]
        return [p[0] for p in pairs], [p[1] for p in pairs], trace / g2

    share, unbounded = coverage(simulate, seed=points)
    assert 0.90 <= share <= 0.99, share
    assert unbounded < 0.25  # the set is mostly bounded at this signal-to-noise


def test_the_interval_covers_along_a_slowly_drifting_path():
    # The weights drift (AR(1) with correlation 0.9 between points, and a shrinking gradient):
    # the truth is B_simple of the points visited, the ratio of the means of the true values.
    points, phi, spread = 12, 0.9, 0.3

    def simulate(rng):
        u = spread * rng.standard_normal(DIM)
        g2, trace, true_g2, true_trace = [], [], [], []
        for p in range(points):
            u = phi * u + math.sqrt(1 - phi**2) * spread * rng.standard_normal(DIM)
            delta = u + np.eye(DIM)[0] * 0.97**p
            est, true = estimates(micro_gradients(rng, delta)), true_values(delta)
            g2.append(est[0]), trace.append(est[1]), true_g2.append(true[0]), true_trace.append(true[1])
        return g2, trace, np.mean(true_trace) / np.mean(true_g2)

    share, _ = coverage(simulate, seed=7)
    assert 0.90 <= share <= 0.99, share


def test_the_interval_covers_when_neighbouring_points_share_examples():
    # Each point reuses half the micro-batches of the one before: its errors are correlated
    # with its neighbours' (lag-1 correlation ~0.5) around a fixed truth.
    points = 12
    delta = np.eye(DIM)[0]
    g2_true, trace_true = true_values(delta)

    def simulate(rng):
        grads = micro_gradients(rng, delta)
        g2, trace = [], []
        for _ in range(points):
            grads = np.vstack([grads[MICROS // 2:], micro_gradients(rng, delta, MICROS // 2)])
            est = estimates(grads)
            g2.append(est[0]), trace.append(est[1])
        return g2, trace, trace_true / g2_true

    share, _ = coverage(simulate, seed=11)
    assert 0.90 <= share <= 0.99, share


def test_the_estimate_is_the_ratio_of_the_means_and_blocks_follow_the_rule():
    got = noise_scale_interval([2.0, 2.1, 1.9, 2.0], [400.0, 420.0, 380.0, 400.0])
    assert got.estimate == pytest.approx(1600.0 / 8.0)
    assert (got.points, got.blocks, got.reason) == (4, 2, "")
    assert got.lo < got.estimate < got.hi
    assert [default_blocks(n) for n in (2, 4, 8, 12, 16, 30)] == [2, 2, 3, 3, 4, 5]
    exact = noise_scale_interval([2.0] * 9, [500.0] * 9)  # no scatter: a zero-width interval
    assert (exact.lo, exact.estimate, exact.hi) == pytest.approx((250.0, 250.0, 250.0))


def test_degenerate_noise_input_gives_nan_and_a_reason_not_an_exception():
    for g2, trace, blocks in [([1.0], [100.0], None), ([-1.0, 0.5, -0.2, 0.1], [9.0] * 4, None),
                              ([1.0, 1.0], [5.0, 6.0], 3), ([1.0, 2.0], [1.0], None),
                              ([math.nan, math.inf], [1.0, 2.0], None), ([], [], None)]:
        got = noise_scale_interval(g2, trace, blocks=blocks)
        assert isinstance(got, NoiseEstimate)
        assert math.isnan(got.lo) and math.isnan(got.hi) and got.reason, (g2, trace, got)
    # a non-finite point is dropped, not propagated
    assert noise_scale_interval([1.0, math.nan, 1.0, 1.0, 1.0], [9.0, 1.0, 9.0, 9.0, 9.0]).estimate == 9.0


def test_an_unresolved_gradient_gives_an_unbounded_interval_with_a_reason():
    got = noise_scale_interval([0.05, -0.04, 0.06, -0.03, 0.05, -0.02], [100.0] * 6)
    assert got.estimate > 0 and math.isinf(got.hi) and "no upper bound" in got.reason
    assert 0 <= got.lo <= got.estimate


# --------------------------------------------------------------------------- Zhang et al. 2024

# Zhang et al. 2024, "How Does Critical Batch Size Scale in Pre-training?", repository
# hlzhang109/critical-batch-size, plots/chinchilla.ipynb (commit c5b509d8), the cell that fits
# log(a + b / B) to log steps: its `results` dict (steps to the target loss at batch 64..16384)
# and its printed fits "fitted log(Y) = log(a + b * batch_size^(-1))". B_noise = b / a.
ZHANG_BATCH_SIZES = [2**i for i in range(6, 15)]
ZHANG = {
    "85M": ([46000, 23000, 13282, 7000, 3840, 2528, 1917, 1600, 1600],
            1293.8268694659337, 2834258.0888740215),
    "151M": ([96000, 49000, 24000, 12000, 7128, 4350, 2940, 2400, 2300],
             1752.4211962796799, 5677478.783007255),
    "302M": ([196000, 90000, 46000, 23400, 13300, 7224, 4980, 3400, 2879],
             2095.3497601960876, 11383269.891870424),
    "604M": ([311000, 166000, 81000, 37440, 21320, 11400, 7199, 4700, 3800],
             2459.9274969089824, 19449688.58779496),
    "1.2B": ([642000, 331000, 176000, 94000, 46500, 25000, 15360, 8900, 6500],
             3897.306597333535, 43381130.22429582),
}


@pytest.mark.parametrize("model", list(ZHANG))
def test_the_fit_reproduces_zhang_et_al_b_noise(model):
    steps, a, b = ZHANG[model]
    fit = fit_steps_model(ZHANG_BATCH_SIZES, steps)
    assert fit["b_crit"] == pytest.approx(b / a, rel=0.005)  # 85M: 2191
    assert fit["b_crit_lo"] < fit["b_crit"] < fit["b_crit_hi"]


# --------------------------------------------------------------------------- curves and optimum


def test_steps_curve_passes_through_the_pilot_with_the_model_shape():
    b0, s0, b_crit = 32.0, 500.0, 200.0
    sizes = np.array([1.0, 8.0, 32.0, 256.0, 4096.0])
    got = steps_curve(sizes, b0, s0, b_crit)
    s_min = s0 / (1 + b_crit / b0)
    assert got == pytest.approx(s_min * (1 + b_crit / sizes))
    assert steps_curve(b0, b0, s0, b_crit) == pytest.approx(s0)
    assert steps_curve(sizes, b0, s0, 0.0) == pytest.approx(np.full(5, s0))
    assert steps_curve(sizes, b0, s0, math.inf) == pytest.approx(s0 * b0 / sizes)


def test_step_time_is_exact_at_the_bench_log_log_between_and_nan_outside():
    bench = {1: 0.001, 4: 0.004, 64: 0.016}
    got = step_time_at([0.5, 1, 2, 4, 16, 64, 65], bench)
    assert math.isnan(got[0]) and math.isnan(got[-1])
    assert (got[1], got[3], got[5]) == (0.001, 0.004, 0.016)
    assert got[2] == pytest.approx(0.002)  # t ~ B between 1 and 4
    assert got[4] == pytest.approx(0.008)  # t ~ B^0.5 between 4 and 64
    assert np.isnan(step_time_at([2.0], {})).all()


def test_predict_curve_spans_the_bench_with_a_band_from_b_crit_only():
    bench = {2**i: 1e-3 * (1 + 2**i / 64) for i in range(0, 11)}
    curve = predict_curve(32, 400.0, 200.0, 100.0, 400.0, bench, points=50)
    assert list(curve.columns) == ["batch_size", "steps", "steps_lo", "steps_hi", "step_seconds", "seconds",
                                   "seconds_lo", "seconds_hi", "regime"]
    assert curve["batch_size"].iloc[0] == pytest.approx(1) and curve["batch_size"].iloc[-1] == pytest.approx(1024)
    assert (curve["steps_lo"] <= curve["steps"] * (1 + 1e-12)).all()
    assert (curve["steps"] <= curve["steps_hi"] * (1 + 1e-12)).all()
    assert curve["seconds"].to_numpy() == pytest.approx((curve["steps"] * curve["step_seconds"]).to_numpy())
    # below the pilot's batch size a larger B_crit means more steps, above it fewer
    small, large = curve.iloc[0], curve.iloc[-1]
    assert small["steps_hi"] == pytest.approx(steps_curve(1, 32, 400.0, 400.0))
    assert large["steps_lo"] == pytest.approx(steps_curve(1024, 32, 400.0, 400.0))
    assert set(curve["regime"]) == {"perfect scaling", "diminishing returns", "maximal parallelism"}
    no_band = predict_curve(32, 400.0, 200.0, math.nan, math.nan, bench, points=10)
    assert no_band["steps_lo"].isna().all() and no_band["steps"].notna().all()
    assert predict_curve(32, 400.0, 200.0, 100.0, 400.0, {}).empty


def test_the_optimum_of_a_linear_step_time_is_where_calculus_puts_it():
    # t(B) = c + d B and S(B) = S_min (1 + B_crit / B): T'(B) = 0 at B* = sqrt(c B_crit / d).
    c, d, b_crit = 1e-3, 1e-6, 400.0
    bench = {int(b): c + d * int(b) for b in np.unique(np.geomspace(1, 8192, 200).round())}
    candidates = list(range(1, 8193))
    got = time_optimum(16, 1000.0, b_crit, 100.0, 1600.0, bench, candidates)
    assert got["batch_size"] == pytest.approx(math.sqrt(c * b_crit / d), rel=0.03)  # 632
    assert got["lo"] == pytest.approx(math.sqrt(c * 100.0 / d), rel=0.03)  # 316
    assert got["hi"] == pytest.approx(math.sqrt(c * 1600.0 / d), rel=0.03)  # 1265
    assert got["seconds_lo"] <= got["seconds"] <= got["seconds_hi"] and got["reason"] == ""
    assert got["within"] == sorted(got["within"]) and got["batch_size"] in got["within"]
    assert got["lo"] in got["within"] and got["hi"] in got["within"]
    assert isinstance(got["batch_size"], int)


def test_the_optimum_is_nan_with_a_reason_when_b_crit_or_the_bench_is_missing():
    bench = {1: 1e-3, 1024: 2e-3}
    for got in (time_optimum(16, 100.0, math.nan, math.nan, math.nan, bench, [1, 16, 256]),
                time_optimum(16, 100.0, 100.0, 50.0, 200.0, bench, [2048, 4096])):
        assert math.isnan(got["batch_size"]) and got["within"] == [] and got["reason"]
    no_band = time_optimum(16, 100.0, 100.0, math.nan, math.nan, bench, [16, 64, 256])
    assert no_band["batch_size"] in (16, 64, 256) and math.isnan(no_band["hi"]) and no_band["reason"]


def test_regimes_text_cuts_the_range_at_a_quarter_and_four_times_b_crit():
    assert regimes_text(228.0, 1, 1024) == "perfect 1-57, diminishing 57-912, maximal 912-1024"
    assert regimes_text(1e5, 1, 1024) == "perfect 1-1024"
    assert regimes_text(0.1, 1, 1024) == "maximal 1-1024"
    assert regimes_text(8.0, 1, 1024) == "perfect 1-2, diminishing 2-32, maximal 32-1024"
    assert regimes_text(math.nan, 1, 1024) == ""


def test_lr_rule_goes_through_the_pilot():
    assert lr_at(32, 32, 0.05, 0.5) == pytest.approx(0.05)
    assert lr_at(128, 32, 0.05, 0.5) == pytest.approx(0.1)
    assert lr_at(8, 32, 0.05, 1.0) == pytest.approx(0.0125)


MEASURED = {"batch_size": 64, "within": [16, 64, 256], "b_crit": 227.0, "b_crit_lo": 155.0, "b_crit_hi": 334.0}


@pytest.mark.parametrize("predicted, optimum, crit", [
    ({"batch_size": 256, "b_crit": 300.0}, True, True),  # in the within set, in the interval
    ({"batch_size": 128, "b_crit": 152.0}, True, True),  # within x4 of 64; below 155, within x1.5 of 227
    ({"batch_size": 1024, "b_crit": 100.0}, False, False),  # too large; below 227 / 1.5 and 155
    ({"batch_size": 16.0, "b_crit": 340.0}, True, True),  # a float batch size; 340 < 227 x 1.5
    ({"batch_size": math.nan, "b_crit": None}, False, False),
])
def test_verify_held_applies_the_issues_bar(predicted, optimum, crit):
    got = verify_held(predicted, MEASURED)
    assert (got["optimum_held"], got["b_crit_held"], got["held"]) == (optimum, crit, optimum and crit)
    assert "\n" not in got["text"] and ("not held" in got["text"]) == (not (optimum and crit))


def test_verify_held_without_a_measured_interval_or_within_set():
    got = verify_held({"batch_size": 64, "b_crit": 250.0}, {"batch_size": 512, "b_crit": math.nan})
    assert not got["optimum_held"] and not got["b_crit_held"] and "unknown" in got["text"]
