"""Fused trials are exact: every member matches the same trial trained alone.

Exactness is proven in float64, where rounding cannot hide a bug: grouped and plain kernels sum
in different orders, and SGD amplifies last-bit differences step by step (in float32 on an AVX2
CPU a member's test loss drifted 1.5e-4 relative from its trial alone by step 191 of Adam), so a
float32 comparison over many steps tests the CPU, not the fusion. float32 is checked over the
first steps only, before chaos amplifies rounding.
"""

import copy
import dataclasses
import math

import pytest
import torch

from bsweep.train import fused
from bsweep.plan import fusion_key
from bsweep.train.data import load_data
from bsweep.train.engine import PerfChoice
from bsweep.train.perf import choose_width, width_table
from tests.conftest import TINY, compose, train_alone, train_fused

# float64: the largest relative difference in train and test loss measured fused vs alone over
# 256 steps at batch 2, every norm x both optimizers x 3 members, was 1.0e-15 with AVX-512
# kernels and 2.0e-15 with AVX2 ones; 1e-10 leaves 5 orders of magnitude for other CPUs and
# still catches any real mixing of members (differences of 1e-3 and more).
RTOL64 = 1e-10
# float32 over the first STEPS32 steps: the worst relative difference in train and test loss,
# every norm x both optimizers x 3 members, was 2.5e-7 with AVX-512 kernels and 2.5e-7 with AVX2
# (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2) up to step 10 (1.8e-6 by step 24, 1.2e-6 by
# 256: it grows with steps). 1e-5 is 40x the measured worst.
RTOL32 = 1e-5
STEPS32 = 10
COLUMNS = ("train_loss", "train_loss_jitter", "test_loss", "test_acc")


@pytest.fixture(scope="module")
def data():
    return load_data(compose(TINY).data)


@pytest.fixture
def float64(data):
    """The data in float64, and float64 as torch's default dtype, so models are built in it."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield dataclasses.replace(data, x_train=data.x_train.double(), x_test=data.x_test.double())
    torch.set_default_dtype(old)


def members(overrides, points):
    base = compose([*TINY, *overrides])
    out = []
    for lr, seed in points:
        c = copy.deepcopy(base)
        c.lr, c.seed = lr, seed
        out.append(c)
    return out


def assert_same_rows(alone, together, rtol, until=None, columns=COLUMNS):
    assert together.status == alone.status
    rows = [(a, b) for a, b in zip(alone.measurements, together.measurements) if until is None or a["step"] <= until]
    assert until is not None or len(together.measurements) == len(alone.measurements)
    assert len(rows) >= 2
    for a, b in rows:
        assert (a["step"], a["samples"], a["lr"]) == (b["step"], b["samples"], b["lr"])
        for col in columns:
            if math.isnan(a[col]):
                assert math.isnan(b[col]), (a["step"], col)
            else:
                assert b[col] == pytest.approx(a[col], rel=rtol, abs=1e-12), (a["step"], col)


@pytest.mark.parametrize("optim,lrs", [("sgd", (0.05, 0.01, 0.1)), ("adam", (0.003, 0.001, 0.01))])
@pytest.mark.parametrize("norm", ["batch", "group"])
def test_every_member_matches_its_trial_alone_step_for_step_in_float64(float64, optim, lrs, norm):
    # batch 2 for 2 epochs of 256 samples: 256 steps, 19 measurements per member
    cfgs = members([f"optim={optim}", f"norm={norm}", "batch_size=2", "study.budget.epochs=2"],
                   [(lrs[0], 0), (lrs[1], 1), (lrs[2], 0)])
    together = train_fused(cfgs, float64)
    assert together[0].total_steps == 256
    for cfg, member in zip(cfgs, together):
        assert_same_rows(train_alone(cfg, float64), member, RTOL64)
    # and the members really differ from each other (so matching is not trivial)
    assert len({m.measurements[-1]["test_loss"] for m in together}) == 3


@pytest.mark.parametrize("norm", ["none", "layer", "instance", "weight", "lrn"])
def test_the_other_norms_fuse_exactly_too(float64, norm):
    cfgs = members([f"norm={norm}", "batch_size=16", "optim.nesterov=true", "optim.weight_decay=0.001",
                    "schedule=cosine", "schedule.warmup_fraction=0.1"], [(0.05, 0), (0.02, 1)])
    for cfg, member in zip(cfgs, train_fused(cfgs, float64)):
        assert_same_rows(train_alone(cfg, float64), member, RTOL64)


@pytest.mark.parametrize("optim,lrs", [("sgd", (0.05, 0.01)), ("adam", (0.003, 0.01))])
@pytest.mark.parametrize("norm", ["batch", "group", "weight"])
def test_in_float32_members_match_over_the_first_steps(data, optim, lrs, norm):
    cfgs = members([f"optim={optim}", f"norm={norm}", "batch_size=2", "study.budget.epochs=null",
                    f"study.budget.steps={STEPS32}", "study.eval.first_samples=2", "study.eval.growth=1.25"],
                   [(lrs[0], 0), (lrs[1], 1)])
    for cfg, member in zip(cfgs, train_fused(cfgs, data)):
        assert_same_rows(train_alone(cfg, data), member, RTOL32, until=STEPS32)


@pytest.mark.parametrize("optim,lrs", [("sgd", (0.05, 0.01, 0.1)), ("adam", (0.003, 0.001, 0.01))])
def test_channels_last_members_match_their_trials_alone_and_stay_channels_last(data, optim, lrs):
    # float32 (oneDNN has no channels_last in float64). The flat buffer holds each weight in its
    # own memory order and the optimizer reads each gradient in it: a mix-up would move a member
    # by far more than rounding.
    cl = PerfChoice(channels_last=True)
    cfgs = members([f"optim={optim}", "norm=batch", "batch_size=4", "study.budget.epochs=null",
                    f"study.budget.steps={STEPS32}", "study.eval.first_samples=4", "study.eval.growth=1.25"],
                   [(lrs[0], 0), (lrs[1], 1), (lrs[2], 0)])
    model = fused.build_members(cfgs, data, cl).model
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > len(cfgs)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert all(not c.weight.is_contiguous() for c in convs)
    # not the loss jitter: a spread of loss differences of ~0.01 between losses of ~2.3, its
    # relative rounding is ~200x the losses' (1.2e-5 measured here)
    for cfg, member in zip(cfgs, train_fused(cfgs, data, cl)):
        assert_same_rows(train_alone(cfg, data, cl), member, RTOL32, until=STEPS32,
                         columns=("train_loss", "test_loss", "test_acc"))


def test_a_diverging_member_is_recorded_and_does_not_disturb_the_others(float64):
    cfgs = members(["norm=none", "batch_size=16", "study.budget.epochs=2"], [(0.05, 0), (1e200, 1), (0.01, 2)])  # 1e200: float64 overflows too
    together = train_fused(cfgs, float64)
    assert [m.status for m in together] == ["complete", "diverged", "complete"]
    for cfg, member in zip(cfgs, together):
        assert_same_rows(train_alone(cfg, float64), member, RTOL64)
    assert together[1].measurements[-1]["step"] < together[0].measurements[-1]["step"]


def test_stop_at_target_stops_each_member_on_its_own(float64):
    cfgs = members(["batch_size=16", "study.target=0.2", "study.budget.stop_at_target=true",
                    "study.budget.epochs=5"], [(0.05, 0), (0.001, 1)])
    together = train_fused(cfgs, float64)
    for cfg, member in zip(cfgs, together):
        assert_same_rows(train_alone(cfg, float64), member, RTOL64)
    assert together[0].measurements[-1]["step"] != together[1].measurements[-1]["step"]


def test_only_lr_and_seed_may_differ(data):
    a, b = members(["batch_size=16"], [(0.05, 0), (0.05, 1)])
    b.batch_size = 32
    assert fusion_key(a) != fusion_key(b)
    with pytest.raises(ValueError, match="only in lr and seed"):
        train_fused([a, b], data)
    c = copy.deepcopy(a)
    c.lr, c.seed = 0.3, 7
    assert fusion_key(a) == fusion_key(c)


def test_fused_model_forward_equals_members_forward(float64):
    from bsweep.train.models import make_cnn

    cfg = compose([*TINY, "model=cnn", "norm=group"])
    nets = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        nets.append(make_cnn(float64.input_shape, float64.n_classes, cfg.model, cfg.norm))
    group = fused.Fused.__new__(fused.Fused)  # the members' own nets, not seeded copies
    group.k, group.cl, group.optim = 3, False, cfg.optim
    group._setup(fused.FusedCNN(nets))  # parameters become views of one buffer: values unchanged
    idx = torch.stack([torch.arange(5), torch.arange(5, 10), torch.arange(10, 15)])
    out = group.batch_logits(float64, idx)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], net(float64.x_train[idx[k]]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "instance", "weight", "lrn", "none"])
@pytest.mark.parametrize("dataset", ["mnist1d", "digits"])
def test_members_evaluated_one_by_one_equal_the_fused_forward(norm, dataset):
    """Evaluation on the CPU runs each member as a dense network on its slice of the fused
    weights (faster than the grouped conv at evaluation batches); it must equal the fused model."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        cfg = compose([*TINY, f"data={dataset}", f"norm={norm}"])
        data = load_data(cfg.data)
        data = dataclasses.replace(data, x_train=data.x_train.double(), x_test=data.x_test.double())
        cfgs = [dataclasses.replace(cfg, seed=s, lr=lr) for s, lr in ((0, 0.05), (1, 0.1), (2, 0.2))]
        group = fused.Fused(cfgs, data, fused.PerfChoice())
        idx = torch.stack([torch.arange(8) + 8 * k for k in range(3)])
        for _ in range(3):  # a few steps, so batch norm's running statistics are not the initial ones
            group.losses(data, idx).sum().backward()
            group.optimizer_step()
        group.model.eval()
        with torch.no_grad():
            x = data.x_test[:17]
            one_by_one = group.logits(x)
            together = group.model(x.repeat(1, 3, *[1] * (x.dim() - 2)))
        torch.testing.assert_close(one_by_one, together, rtol=1e-10, atol=1e-12)
    finally:
        torch.set_default_dtype(old)


def test_width_is_forced_or_measured(data):
    cfg = compose([*TINY, "batch_size=4"])
    cfg.perf.fuse = "off"
    assert choose_width(cfg, data, 6) == 1
    cfg.perf.fuse = "3"
    assert choose_width(cfg, data, 6) == 3 and choose_width(cfg, data, 2) == 2
    cfg.perf.fuse = "auto"
    width = choose_width(cfg, data, 4)
    table = width_table(cfg, data, 4)  # the table the choice was made from (cached)
    assert width in table and table[width] == min(table.values()) and set(table) <= {1, 2, 4}
    cfg.perf.fuse = "many"
    with pytest.raises(ValueError, match="perf.fuse"):
        choose_width(cfg, data, 4)


def test_split_is_even():
    assert fused.split(list(range(14)), 8) == [list(range(7)), list(range(7, 14))]
    assert [len(c) for c in fused.split(list(range(5)), 2)] == [2, 2, 1]
    assert fused.split([1], 4) == [[1]] and fused.split([], 4) == []


def test_the_fused_launcher_sweeps_skips_finished_and_writes_each_member(results):
    import json

    from typer.testing import CliRunner

    from bsweep import records
    from bsweep.analysis.load import load_trials
    from bsweep.cli import app
    from bsweep.plan import expand, structured

    # device=cpu: the exactness asked here is the CPU's (with a GPU, device=auto would compare
    # cuDNN's TF32 convolutions with the CPU alone; test_fast_loop pins fused == alone on CUDA)
    args = [*TINY, f"results_dir={results}", "lr=0.05,0.1", "hydra/launcher=bsweep_fused", "device=cpu"]
    out = CliRunner().invoke(app, ["sweep", *args], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    study = results / "smoke"
    trials = load_trials(study)
    assert len(trials) == 8 and set(trials["status"]) == {"complete"}
    planned = expand(args)
    assert {p.trial_id for p in planned} == set(trials["trial_id"])  # the same ids as unfused
    # every member's record holds the rows the same trial gives alone (steps exactly; values
    # over the first steps, before float32 rounding is amplified)
    p = next(p for p in planned if "lr=0.1" in p.overrides and "norm=group" in p.overrides)
    tdir = records.trial_dir(study, p.trial_id)
    env = json.loads((tdir / records.ENV_FILE).read_text())
    assert env["fused_width"] >= 1 and p.trial_id in env["fused_with"]
    got = records.read_measurements(tdir)
    cfg = structured(p.config)
    alone = train_alone(cfg, load_data(cfg.data)).measurements
    assert list(got["step"]) == [r["step"] for r in alone]
    for col in COLUMNS:
        assert list(got[col])[:3] == pytest.approx([r[col] for r in alone][:3], rel=RTOL32, nan_ok=True)
    stamps = {q: q.stat().st_mtime_ns for q in study.glob("trials/*/measurements.parquet")}
    again = CliRunner().invoke(app, ["sweep", *args], catch_exceptions=False)
    assert again.exit_code == 0 and "8 already finished, 0 to run" in again.output
    assert {q: q.stat().st_mtime_ns for q in study.glob("trials/*/measurements.parquet")} == stamps


@pytest.mark.parametrize("order", ["sorted", "class_batches", "class_halves"])
def test_unshuffled_orders_fuse_exactly_too(order):
    # each member draws its epochs from its own generator (class_halves: its own split of the
    # classes too), alone and fused alike
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        cfgs = members(["norm=batch", "batch_size=16", f"data.order={order}"], [(0.05, 0), (0.02, 1)])
        loaded = load_data(cfgs[0].data)
        data = dataclasses.replace(loaded, x_train=loaded.x_train.double(), x_test=loaded.x_test.double())
        for cfg, member in zip(cfgs, train_fused(cfgs, data)):
            assert_same_rows(train_alone(cfg, data), member, RTOL64)
    finally:
        torch.set_default_dtype(old)
