"""The gradient-noise-scale estimator (bsweep.train.gradient_noise) against problems with a known answer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bsweep.train.gradient_noise import (
    measure_microbatch_noise,
    NOISE_COLUMNS,
    NoiseConfig,
    NoiseScaleSmoother,
    NoiseScaleTracker,
    measure_noise_scale,
    simple_noise_scale,
    unbiased_grad_norm_sq,
    unbiased_trace_sigma,
)



@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these tensors are tiny, and the two CPU cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- pure functions


def test_formulas_invert_the_expected_squared_norms():
    g2, trace = 0.3, 45.0  # |G|^2 and tr(Sigma) of a made-up problem
    for b_small, b_big in ((1, 2), (8, 512), (32, 33)):
        small, big = g2 + trace / b_small, g2 + trace / b_big  # E|G_B|^2 at each batch size
        assert unbiased_grad_norm_sq(small, big, b_small, b_big) == pytest.approx(g2, rel=1e-9)
        assert unbiased_trace_sigma(small, big, b_small, b_big) == pytest.approx(trace, rel=1e-9)
    assert simple_noise_scale(trace, g2) == pytest.approx(150.0)


def test_degenerate_inputs():
    with pytest.raises(ValueError):
        unbiased_grad_norm_sq(1.0, 1.0, 8, 8)
    with pytest.raises(ValueError):
        unbiased_trace_sigma(1.0, 1.0, 16, 8)
    assert math.isnan(simple_noise_scale(1.0, 0.0))
    assert math.isnan(simple_noise_scale(1.0, -0.1))  # noise swamps the signal: unknown
    assert math.isnan(simple_noise_scale(math.nan, 1.0))


# --------------------------------------------------------------------------- known answer


def least_squares(seed: int, n: int = 4096, d: int = 8, delta_sq: float = 0.08, noise: float = 1.0):
    """Linear least squares y = x.w* + noise, model at w* + delta; the exact answer.

    Loss 0.5 (x.w - y)^2; per-example gradient g_i = (x_i.w - y_i) x_i. Over the finite data
    set the true gradient G is the mean of g_i and tr(Sigma) = mean |g_i|^2 - |G|^2, exactly.
    In the population (x ~ N(0, I)): |G|^2 = |delta|^2 and, by Isserlis' theorem,
    tr(Sigma) = |delta|^2 + d (|delta|^2 + noise^2), so B_simple = 1 + d (1 + noise^2/|delta|^2).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w_star = torch.randn(d, generator=gen, dtype=torch.float64)
    y = x @ w_star + noise * torch.randn(n, generator=gen, dtype=torch.float64)
    delta = torch.randn(d, generator=gen, dtype=torch.float64)
    delta *= (delta_sq / delta.pow(2).sum()).sqrt()
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_((w_star + delta)[None])
    per_example = (x @ (w_star + delta) - y)[:, None] * x
    grad = per_example.mean(0)
    g2 = grad.pow(2).sum().item()
    trace = per_example.pow(2).sum(1).mean().item() - g2
    population = 1 + d * (1 + noise**2 / delta_sq)
    return model, x, y, g2, trace, population


def half_squared_error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out.squeeze(-1) - y).pow(2).mean()


def test_recovers_known_noise_scale_of_least_squares():
    model, x, y, g2, trace, population = least_squares(seed=3)
    true_b = trace / g2
    # The finite-sample truth is close to the population formula (checks the test's algebra).
    assert true_b == pytest.approx(population, rel=0.1)
    # 3000 pairs at (32, 1024): over 12 problem seeds the relative error of B_simple had
    # sd 1.3 % and max 2.2 %, so 5 % is ~4 sd: chance does not fail it, a wrong formula
    # (swapped batch sizes, a sum loss, a missing 1/B) does.
    result = measure_noise_scale(
        model, half_squared_error, x, y, b_small=32, b_big=1024, n_pairs=3000,
        generator=torch.Generator().manual_seed(100),
    )
    assert result["grad_norm_sq"] == pytest.approx(g2, rel=0.05)
    assert result["trace_sigma"] == pytest.approx(trace, rel=0.05)
    assert result["noise_scale"] == pytest.approx(true_b, rel=0.05)
    assert result["passes"] == 6000


# --------------------------------------------------------------------------- leaves the model alone


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv1d(1, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 12, 3)
    )


def bn_data(n: int = 64):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 1, 12, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def snapshot(model: nn.Module) -> list[torch.Tensor]:
    tensors = [p.detach().clone() for p in model.parameters()]
    tensors += [p.grad.clone() for p in model.parameters()]
    return tensors + [b.clone() for b in model.buffers()]


def bn_net_in_eval_with_grads() -> tuple[nn.Module, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """A BatchNorm net in eval mode holding gradients (what the optimizer would see next), its
    data, and a snapshot of everything a measurement must leave alone."""
    model = bn_net()
    x, y = bn_data()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    model.eval()
    return model, x, y, snapshot(model)


def test_measurement_leaves_weights_grads_buffers_and_mode_unchanged():
    model, x, y, before = bn_net_in_eval_with_grads()
    result = measure_noise_scale(
        model, nn.functional.cross_entropy, x, y, 4, 32, 3, torch.Generator().manual_seed(0)
    )
    after = snapshot(model)
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not model.training
    assert math.isfinite(result["grad_norm_sq"]) and result["trace_sigma"] > 0
    # The check above can fail: a train-mode forward does move BatchNorm's running statistics.
    model.train()
    model(x)
    assert not torch.equal(before[-3], model[1].running_mean)


def test_train_mode_is_what_batch_norm_sees():
    model = bn_net()
    x, y = bn_data()
    args = (model, nn.functional.cross_entropy, x, y, 4, 32, 2)
    in_train = measure_noise_scale(*args, torch.Generator().manual_seed(0), train_mode=True)
    in_eval = measure_noise_scale(*args, torch.Generator().manual_seed(0), train_mode=False)
    assert in_train["g_big_sq"] != pytest.approx(in_eval["g_big_sq"], rel=1e-3)


# --------------------------------------------------------------------------- smoothing, tracking


def test_smoother_is_bias_corrected_and_smooths_each_estimate_separately():
    smoother = NoiseScaleSmoother(weight=0.25)
    assert math.isnan(smoother.noise_scale)
    assert smoother.update(2.0, 200.0) == pytest.approx(100.0)  # first value = first estimate
    smoother.update(-1.0, 100.0)  # a negative |G|^2 estimate: averaged, not dropped
    g2 = (0.75 * 0.25 * 2.0 + 0.25 * -1.0) / (1 - 0.75**2)
    trace = (0.75 * 0.25 * 200.0 + 0.25 * 100.0) / (1 - 0.75**2)
    assert smoother.grad_norm_sq == pytest.approx(g2)
    assert smoother.noise_scale == pytest.approx(trace / g2)  # ratio of averages
    smoother.update(math.nan, 5.0)  # skipped whole
    assert smoother.count == 2 and smoother.grad_norm_sq == pytest.approx(g2)
    assert NoiseScaleSmoother(weight=1.0).update(3.0, 6.0) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        NoiseScaleSmoother(weight=0.0)


class Data:
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x_train, self.y_train = x, y


def train_a_little(tracker: NoiseScaleTracker | None) -> tuple[nn.Module, list[dict]]:
    model = bn_net()
    x, y = bn_data()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rows = []
    for step in range(4):
        if tracker is not None:
            rows.append(tracker.update(model, Data(x, y), step))
        loss = nn.functional.cross_entropy(model(x[step * 8 : step * 8 + 8]), y[step * 8 : step * 8 + 8])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, rows


def test_tracker_changes_nothing_in_training_and_fills_columns_every_nth_point():
    config = NoiseConfig(enabled=True, b_small=4, b_big=32, pairs=2, every=2, ema=0.5)
    plain, _ = train_a_little(None)
    tracked, rows = train_a_little(NoiseScaleTracker.from_config(config, seed=7))
    for a, b in zip(plain.state_dict().values(), tracked.state_dict().values()):
        assert torch.equal(a, b)
    assert all(tuple(row) == NOISE_COLUMNS for row in rows)
    measured = [not math.isnan(row["noise_trace_sigma"]) for row in rows]
    assert measured == [True, False, True, False]
    assert rows[0]["noise_scale"] == pytest.approx(rows[0]["noise_scale_raw"])
    # Same seed, same numbers.
    _, again = train_a_little(NoiseScaleTracker.from_config(config, seed=7))
    assert again[2]["noise_trace_sigma"] == rows[2]["noise_trace_sigma"]
    tracker = NoiseScaleTracker.from_config(config)
    tracker.update(plain, Data(*bn_data()), 5)
    with pytest.raises(ValueError):
        tracker.update(plain, Data(*bn_data()), 5)


# --------------------------------------------------------------------------- gradient cosines (C6)


def test_cosines_use_the_exact_full_gradient_and_recover_the_noise_scale():
    from bsweep.train.gradient_noise import measure_gradient_cosines

    model, x, y, g2, trace, _ = least_squares(seed=3)
    got = measure_gradient_cosines(model, half_squared_error, x, y, [4, 16, 64, 256], draws=300,
                                   generator=torch.Generator().manual_seed(5), chunk=1000)
    # the chunks' weighted mean is the full-set gradient (no batch statistics in this model;
    # outputs are taken in float32, as the noise scale's)
    assert got["grad_norm_sq"] == pytest.approx(g2, rel=1e-6)
    # 300 draws per batch size: the least-squares tr(Sigma) is within a few % of the exact one
    assert got["noise_scale"] == pytest.approx(trace / g2, rel=0.1)
    cosines = [got["per_batch"][b][0] for b in (4, 16, 64, 256)]
    assert cosines == sorted(cosines) and -1 <= cosines[0] and cosines[-1] <= 1
    # the noise-scale model's E[cos] ~ (1 + B_simple / B)^(-1/2), within the draws' spread
    for b, cos in zip((4, 16, 64, 256), cosines):
        assert cos == pytest.approx((1 + trace / g2 / b) ** -0.5, abs=0.05)


def test_cosines_leave_weights_grads_buffers_and_mode_unchanged():
    from bsweep.train.gradient_noise import measure_gradient_cosines

    model, x, y, before = bn_net_in_eval_with_grads()
    got = measure_gradient_cosines(model, nn.functional.cross_entropy, x, y, [1, 8, 32], 3,
                                   torch.Generator().manual_seed(0), chunk=16)
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot(model)))
    assert not model.training and set(got["per_batch"]) == {1, 8, 32}


# --------------------------------------------------------------------------- micro-batches (`bsweep predict`)


def test_micro_batches_recover_the_known_noise_scale_of_least_squares():
    model, x, y, g2, trace, _ = least_squares(seed=3)

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        return half_squared_error(model(x[idx]), y[idx])

    # 24 points of 64 micro-batches of 32, averaged as the predictor averages its points (ratio
    # of means): over 10 generator seeds the ratio's relative error had sd 3.0 % (max 7.4 %), so
    # 12 % is 4 sd; the micro-batch size left out of tr(Sigma), or a summed loss, is off 30x.
    gen = torch.Generator().manual_seed(7)
    points = [measure_microbatch_noise(model, loss_of, len(x), 32, 64, gen) for _ in range(24)]
    mean_g2 = sum(p["grad_norm_sq"] for p in points) / len(points)
    mean_trace = sum(p["trace_sigma"] for p in points) / len(points)
    assert mean_trace == pytest.approx(trace, rel=0.12)
    assert mean_g2 == pytest.approx(g2, rel=0.12)
    assert mean_trace / mean_g2 == pytest.approx(trace / g2, rel=0.12)
    assert points[0]["micro_batch"] == 32 and points[0]["micro_batches"] == 64


def test_micro_batches_leave_a_batch_norm_model_as_found():
    model, x, y, before = bn_net_in_eval_with_grads()
    result = measure_microbatch_noise(model, lambda idx: nn.functional.cross_entropy(model(x[idx]), y[idx]),
                                      len(x), 8, 4, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(before, snapshot(model)))
    assert not model.training
    assert math.isfinite(result["grad_norm_sq"]) and result["trace_sigma"] > 0
    with pytest.raises(ValueError, match="micro_batches"):
        measure_microbatch_noise(model, lambda idx: model(x[idx]).sum(), len(x), 8, 1, torch.Generator())
