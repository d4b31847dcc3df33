"""The fast loop's options: what each option does to results (what `auto` picks: test_perf.py)."""

import copy
import math

import pytest
import torch

from bsweep.train.data import load_data
from bsweep.train.engine import PerfChoice
from tests.conftest import TINY, compose, train_alone, train_fused

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def rows(result):
    return [{k: v for k, v in r.items() if k not in ("train_seconds", "eval_seconds")} for r in result.measurements]


def test_bf16_autocast_is_applied_and_stays_close_to_float32():
    cfg = compose([*TINY, "study.budget.epochs=2"])
    data = load_data(cfg.data)
    exact = train_alone(cfg, data)
    half = train_alone(cfg, data, PerfChoice(amp=True))
    assert rows(half) != rows(exact)  # autocast really ran
    a, b = exact.measurements[-1], half.measurements[-1]
    # bf16 keeps 8 bits of mantissa: losses move by about 1e-2 relative on this problem
    assert b["test_loss"] == pytest.approx(a["test_loss"], rel=0.1)
    assert abs(b["test_acc"] - a["test_acc"]) <= 0.1


def test_channels_last_changes_layout_not_results():
    cfg = compose([*TINY, "data=digits", "data.n_train=256", "data.n_test=128", "norm=group"])
    data = load_data(cfg.data)
    assert data.x_train.dim() == 4
    plain = train_alone(cfg, data)
    nhwc = train_alone(cfg, data, PerfChoice(channels_last=True))
    for a, b in zip(plain.measurements, nhwc.measurements):
        for col in ("train_loss", "test_loss", "test_acc"):
            if not math.isnan(a[col]):
                assert b[col] == pytest.approx(a[col], rel=1e-4, abs=1e-6)


def test_warmup_schedule_applies_from_the_first_step():
    # two steps, warmup over both: the updates use lr/2 then lr. A hand-written loop with the
    # same seeds must land on the same test loss (it would not if step 0 used the base lr).
    import torch.nn.functional as F

    from bsweep.train.engine import Alone, evaluate
    from bsweep.train.models import make_cnn

    cfg = compose([*TINY, "batch_size=64", "schedule=warmup", "schedule.warmup_fraction=1.0",
                   "study.budget.epochs=null", "study.budget.steps=2", "lr=0.5"])
    data = load_data(cfg.data)
    ramp = train_alone(cfg, data)
    torch.manual_seed(cfg.seed)
    model = make_cnn(data.input_shape, data.n_classes, cfg.model, cfg.norm)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.optim.momentum)
    order = torch.Generator()
    order.manual_seed(cfg.seed)
    perm = torch.randperm(data.n_train, generator=order)
    for step, factor in enumerate((0.5, 1.0)):
        for g in opt.param_groups:
            g["lr"] = cfg.lr * factor
        idx = perm[step * 64 : (step + 1) * 64]
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    members = Alone(cfg, data, PerfChoice())
    members.model = model
    [test_loss] = evaluate(members, data, cfg.study.eval.batch_size, amp=False)["test_loss"]
    assert ramp.measurements[-1]["step"] == 2
    assert ramp.measurements[-1]["test_loss"] == pytest.approx(test_loss, rel=1e-5)


@cuda
def test_the_training_step_does_not_synchronize_with_the_host_on_cuda():
    from bsweep.train.engine import train_step
    from bsweep.train.fused import build_members

    cfg = compose(TINY)
    data = load_data(cfg.data, "cuda")
    for k in (1, 3):  # alone and fused
        members = build_members([cfg] * k, data, PerfChoice())
        idx = torch.randperm(data.n_train, device="cuda")[: cfg.batch_size].repeat(k, 1)
        train_step(members, data, idx, amp=False)  # first step: lazy state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(3):
                idx = torch.randperm(data.n_train, device="cuda")[: cfg.batch_size].repeat(k, 1)
                train_step(members, data, idx, amp=False)
        finally:
            torch.cuda.set_sync_debug_mode("default")


@cuda
def test_fused_members_match_their_trials_alone_on_cuda():
    base = compose([*TINY, "device=cuda", "perf.amp=off", "batch_size=8"])
    data = load_data(base.data, "cuda")
    cfgs = []
    for lr, seed in [(0.05, 0), (0.02, 1), (1e8, 2)]:
        c = copy.deepcopy(base)
        c.lr, c.seed = lr, seed
        cfgs.append(c)
    cfgs[2].norm.kind = cfgs[0].norm.kind
    together = train_fused(cfgs, data)
    for cfg, member in zip(cfgs, together):
        alone = train_alone(cfg, data)
        assert member.status == alone.status
        for a, b in zip(alone.measurements, member.measurements):
            for col in ("train_loss", "test_loss", "test_acc"):
                if math.isfinite(a[col]):
                    # cuDNN picks different kernels for grouped and plain convs (and TF32 where
                    # enabled): looser than on CPU
                    assert b[col] == pytest.approx(a[col], rel=1e-2, abs=1e-3)


@cuda
def test_bf16_autocast_trains_on_cuda():
    cfg = compose([*TINY, "device=cuda", "study.budget.epochs=3"])
    result = train_alone(cfg, load_data(cfg.data, "cuda"), PerfChoice(amp=True))
    assert result.status == "complete"
    assert result.measurements[-1]["test_loss"] < result.measurements[0]["test_loss"]
