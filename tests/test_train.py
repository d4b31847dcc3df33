import math

import pytest
import torch

from bsweep.config import BudgetConfig, EvalConfig, ScheduleConfig
from bsweep.train.data import load_data
from bsweep.train.engine import FunctionalSGD
from bsweep.train.schedule import lr_factor, measurement_steps, total_steps
from tests.conftest import train_alone


def test_budget_rule_any_stops_at_the_first_limit_and_all_at_the_last():
    assert total_steps(BudgetConfig(epochs=2, steps=None), 1000, 10) == 200
    assert total_steps(BudgetConfig(epochs=2, steps=50, rule="any"), 1000, 10) == 50
    assert total_steps(BudgetConfig(epochs=2, steps=500, rule="all"), 1000, 10) == 500
    assert total_steps(BudgetConfig(epochs=2, steps=50, rule="all"), 1000, 10) == 200
    # the last partial batch of an epoch is dropped: every step has the full batch size
    assert total_steps(BudgetConfig(epochs=1, steps=None), 1000, 300) == 3


@pytest.mark.parametrize("batch_size", [1, 3, 32, 500, 1000])
def test_cadence_resolves_samples_to_target_within_the_growth_factor(batch_size):
    cadence = EvalConfig(first_samples=64, growth=1.05, max_gap_samples=4000)
    steps = total_steps(BudgetConfig(epochs=20), 1000, batch_size)
    points = measurement_steps(cadence, batch_size, steps)
    assert points[0] == 0 and points[-1] == steps and points == sorted(set(points))
    samples = [p * batch_size for p in points]
    for prev, nxt in zip(samples[1:], samples[2:]):
        # a crossing between two measurements is known to within one gap: at most 5 % of the
        # samples seen, widened by one batch where grid points round up to whole steps
        assert nxt - prev <= 0.05 * nxt + 1 + batch_size


def test_cadence_is_the_same_grid_in_samples_for_every_batch_size():
    cadence = EvalConfig(first_samples=100, growth=1.1, max_gap_samples=10**9)
    small = {p * 1 for p in measurement_steps(cadence, 1, 5000)}
    larger = {p * 4 for p in measurement_steps(cadence, 4, 1250)}
    # every grid point is measured at the first step reaching it: within one batch
    for s in sorted(small)[1:-1]:
        assert any(0 <= t - s < 4 for t in larger), s


def test_lr_schedules():
    const, cos, warm = ScheduleConfig("constant"), ScheduleConfig("cosine"), ScheduleConfig("warmup", 0.1)
    assert lr_factor(const, 50, 100) == 1.0
    assert lr_factor(cos, 0, 100) == 1.0 and lr_factor(cos, 50, 100) == pytest.approx(0.5)
    assert lr_factor(cos, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(warm, 0, 100) == pytest.approx(0.1) and lr_factor(warm, 9, 100) == 1.0
    assert lr_factor(warm, 60, 100) == 1.0


@pytest.fixture
def tiny_data(tiny_config):
    return load_data(tiny_config.data)


def test_training_is_deterministic_on_cpu(tiny_config, tiny_data):
    a = train_alone(tiny_config, tiny_data).measurements
    b = train_alone(tiny_config, tiny_data).measurements
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("train_seconds", "eval_seconds")} for r in rows]
    assert strip(a) == strip(b)


def test_training_learns_and_measures_on_the_cadence(tiny_config, tiny_data):
    tiny_config.study.budget.epochs = 4
    result = train_alone(tiny_config, tiny_data)
    m = result.measurements
    assert result.status == "complete"
    assert m[0]["step"] == 0 and math.isnan(m[0]["train_loss"])
    assert m[-1]["step"] == result.total_steps == 4 * (256 // tiny_config.batch_size)
    assert [r["step"] for r in m] == sorted({r["step"] for r in m})
    assert all(r["train_seconds"] >= 0 for r in m)
    assert [r["train_seconds"] for r in m] == sorted(r["train_seconds"] for r in m)
    evals = [r["eval_seconds"] for r in m]  # cumulative, and each row's own evaluation included
    assert evals == sorted(evals) and evals[0] > 0
    assert m[-1]["test_loss"] < m[0]["test_loss"]


def test_a_huge_learning_rate_diverges_and_is_recorded_not_raised(tiny_config, tiny_data):
    tiny_config.lr = 1e8
    tiny_config.norm.kind = "none"
    result = train_alone(tiny_config, tiny_data)
    assert result.status == "diverged"
    last = result.measurements[-1]
    assert not (math.isfinite(last["train_loss"]) and math.isfinite(last["test_loss"]))


def test_stop_at_target_ends_at_the_first_measurement_reaching_it(tiny_config, tiny_data):
    tiny_config.study.target = 0.15
    tiny_config.study.budget.epochs = 5
    tiny_config.study.budget.stop_at_target = True
    result = train_alone(tiny_config, tiny_data)
    # both halves of the test set must reach it (the tuned view reads the held-out half)
    accs = [min(r["val_acc"], r["heldout_acc"]) for r in result.measurements]
    assert accs[-1] >= 0.15 and all(a < 0.15 for a in accs[1:-1])
    assert result.measurements[-1]["step"] < result.total_steps


def test_evaluation_scores_the_test_set_and_each_interleaved_half(tiny_config, tiny_data):
    import torch
    import torch.nn.functional as F

    from bsweep.train.engine import Alone, PerfChoice, evaluate

    members = Alone(tiny_config, tiny_data, PerfChoice())
    # an odd evaluation batch, so halves straddle batch boundaries at odd offsets
    scores = evaluate(members, tiny_data, batch_size=7, amp=False)
    members.model.eval()
    with torch.no_grad():
        for name, part in (("test", slice(None)), ("val", slice(0, None, 2)), ("heldout", slice(1, None, 2))):
            x, y = tiny_data.x_test[part], tiny_data.y_test[part]
            logits = members.model(x)
            assert scores[f"{name}_acc"] == [pytest.approx((logits.argmax(1) == y).double().mean().item(), abs=1e-12)]
            assert scores[f"{name}_loss"] == [pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)]
    result = train_alone(tiny_config, tiny_data)
    for row in result.measurements:
        assert row["test_acc"] == pytest.approx((row["val_acc"] + row["heldout_acc"]) / 2)  # 64 + 64 samples


def test_each_row_has_the_step_to_step_jitter_of_its_training_losses(tiny_config, tiny_data):
    from bsweep.train.engine import window_statistics

    # rows: the step before the window, then the window's 3 steps
    window = torch.tensor([[1.0], [2.0], [4.0], [4.0], [9.0]], dtype=torch.float64)
    mean, jitter = window_statistics(window, 3, 1, before=True)
    assert mean == [pytest.approx(10 / 3)] and jitter == [pytest.approx(math.sqrt((1 + 4 + 0) / 3 / 2))]
    mean, jitter = window_statistics(window, 1, 1, before=False)  # one step, nothing before it
    assert mean == [2.0] and math.isnan(jitter[0])
    tiny_config.study.budget.epochs = 2
    m = train_alone(tiny_config, tiny_data).measurements
    assert math.isnan(m[0]["train_loss_jitter"])
    # every later row has one: a window of one step differs from the step before it
    assert all(math.isfinite(r["train_loss_jitter"]) and r["train_loss_jitter"] >= 0 for r in m[1:])


def test_cosine_checkpoints_change_nothing_in_training_and_fill_their_rows_only(tiny_config, tiny_data):
    tiny_config.study.budget.epochs = 2
    plain = train_alone(tiny_config, tiny_data).measurements
    tiny_config.noise.cosine_at = [0.5, 1.0]
    tiny_config.noise.cosine_batch_sizes = [1, 8, 4096]  # 4096 is clipped to the 256 examples
    tiny_config.noise.cosine_draws = 2
    rows = train_alone(tiny_config, tiny_data).measurements
    keep = ("step", "train_loss", "test_loss", "test_acc")
    assert [{k: r[k] for k in keep} for r in rows] == [{k: r[k] for k in keep} for r in plain]
    measured = [r["step"] for r in rows if not math.isnan(r["cosine_b1"])]
    steps = rows[-1]["step"]
    # the first measurement point at or after half the steps, and the last one
    assert measured == [min(r["step"] for r in rows if r["step"] >= steps / 2), steps]
    assert "cosine_b256" in rows[0] and "cosine_b4096" not in rows[0]


def _sgd_pair(momentum: float, nesterov: bool, weight_decay: float):
    """The same seeded network twice: one stepped by torch.optim.SGD, one by FunctionalSGD."""
    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        nets.append(torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                        torch.nn.Linear(4 * 6, 3)))
    ref = torch.optim.SGD(nets[0].parameters(), lr=0.05, momentum=momentum, nesterov=nesterov,
                          weight_decay=weight_decay, foreach=True)
    ours = FunctionalSGD(nets[1].parameters(), 0.05, momentum, nesterov, weight_decay, fused=False)
    return nets, ref, ours


def _train(net, opt, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(5, 1, 8, generator=g), torch.randint(0, 3, (5,), generator=g)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        opt.zero_grad()


@pytest.mark.parametrize("momentum,nesterov,weight_decay", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 1e-3)])
def test_functional_sgd_updates_and_checkpoints_exactly_as_torch_optim_sgd(momentum, nesterov, weight_decay):
    nets, ref, ours = _sgd_pair(momentum, nesterov, weight_decay)
    for opt, net in ((ref, nets[0]), (ours, nets[1])):
        _train(net, opt, 6, seed=1)
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(a, b)  # the same bits, not merely close
    saved_ref, saved_ours = ref.state_dict(), ours.state_dict()
    assert saved_ours["param_groups"] == saved_ref["param_groups"]
    assert saved_ours["state"].keys() == saved_ref["state"].keys()
    for i in saved_ref["state"]:
        assert torch.equal(saved_ours["state"][i]["momentum_buffer"], saved_ref["state"][i]["momentum_buffer"])
    # each resumes from the other's checkpoint and steps on in step
    nets2, ref2, ours2 = _sgd_pair(momentum, nesterov, weight_decay)
    for net2, net in zip(nets2, nets):
        net2.load_state_dict(net.state_dict())
    ref2.load_state_dict(saved_ours)
    ours2.load_state_dict(saved_ref)
    for opt, net in ((ref2, nets2[0]), (ours2, nets2[1])):
        _train(net, opt, 4, seed=2)
    for a, b in zip(nets2[0].parameters(), nets2[1].parameters()):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_a_trial_alone_with_sgd_does_not_load_torch_dynamo():
    # torch.optim.Optimizer's first use imports torch._dynamo (2.6-3.6 s a process on the AVX2
    # EPYC): a process that trains a trial alone with SGD must not pay it
    import subprocess
    import sys

    code = ("import sys; from tests.conftest import TINY, train_alone; from bsweep.plan import compose_config, "
            "structured; from bsweep.train.data import load_data; cfg = structured(compose_config(TINY)); "
            "train_alone(cfg, load_data(cfg.data)); print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "no dynamo"
