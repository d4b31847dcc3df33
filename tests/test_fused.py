"""Fused trials are exact: every member matches the same trial trained alone by `train_trial`."""

import copy
import math

import pytest
import torch

from bsweep import fused
from bsweep.data import load_data
from bsweep.train import train_trial
from tests.conftest import TINY, compose

# Relative tolerance on every measurement (train loss, test loss, test accuracy). Measured worst
# case over all norms and both optimizers: 2e-6 (float32 rounding of grouped vs plain kernels).
RTOL = 1e-4
COLUMNS = ("train_loss", "test_loss", "test_acc")


@pytest.fixture(scope="module")
def data():
    return load_data(compose(TINY).data)


def members(overrides, points):
    base = compose([*TINY, *overrides])
    out = []
    for lr, seed in points:
        c = copy.deepcopy(base)
        c.lr, c.seed = lr, seed
        out.append(c)
    return out


def assert_same_rows(alone, together):
    assert together.status == alone.status
    assert len(together.measurements) == len(alone.measurements)
    for a, b in zip(alone.measurements, together.measurements):
        assert (a["step"], a["samples"], a["lr"]) == (b["step"], b["samples"], b["lr"])
        for col in COLUMNS:
            if math.isnan(a[col]):
                assert math.isnan(b[col]), (a["step"], col)
            else:
                assert b[col] == pytest.approx(a[col], rel=RTOL, abs=1e-7), (a["step"], col)


@pytest.mark.parametrize("optim,lrs", [("sgd", (0.05, 0.01, 0.1)), ("adam", (0.003, 0.001, 0.01))])
@pytest.mark.parametrize("norm", ["batch", "group"])
def test_every_member_matches_its_trial_alone_step_for_step(data, optim, lrs, norm):
    # batch 2 for 2 epochs of 256 samples: 256 steps, 19 measurements per member
    cfgs = members([f"optim={optim}", f"norm={norm}", "batch_size=2", "study.budget.epochs=2"],
                   [(lrs[0], 0), (lrs[1], 1), (lrs[2], 0)])
    together = fused.train_fused(cfgs, data)
    assert together[0].total_steps == 256
    for cfg, member in zip(cfgs, together):
        assert_same_rows(train_trial(cfg, data), member)
    # and the members really differ from each other (so matching is not trivial)
    finals = {m.measurements[-1]["test_loss"] for m in together}
    assert len(finals) == 3


@pytest.mark.parametrize("norm", ["none", "layer", "instance", "weight", "lrn"])
def test_the_other_norms_fuse_exactly_too(data, norm):
    cfgs = members([f"norm={norm}", "batch_size=16", "optim.nesterov=true", "optim.weight_decay=0.001",
                    "schedule=cosine", "schedule.warmup_fraction=0.1"], [(0.05, 0), (0.02, 1)])
    for cfg, member in zip(cfgs, fused.train_fused(cfgs, data)):
        assert_same_rows(train_trial(cfg, data), member)


def test_a_diverging_member_is_recorded_and_does_not_disturb_the_others(data):
    cfgs = members(["norm=none", "batch_size=16", "study.budget.epochs=2"],
                   [(0.05, 0), (1e8, 1), (0.01, 2)])
    together = fused.train_fused(cfgs, data)
    assert [m.status for m in together] == ["complete", "diverged", "complete"]
    for cfg, member in zip(cfgs, together):
        assert_same_rows(train_trial(cfg, data), member)
    assert together[1].measurements[-1]["step"] < together[0].measurements[-1]["step"]


def test_stop_at_target_stops_each_member_on_its_own(data):
    cfgs = members(["batch_size=16", "study.target=0.2", "study.budget.stop_at_target=true",
                    "study.budget.epochs=5"], [(0.05, 0), (0.001, 1)])
    together = fused.train_fused(cfgs, data)
    for cfg, member in zip(cfgs, together):
        assert_same_rows(train_trial(cfg, data), member)


def test_only_lr_and_seed_may_differ(data):
    a, b = members(["batch_size=16"], [(0.05, 0), (0.05, 1)])
    b.batch_size = 32
    assert fused.fusion_key(a) != fused.fusion_key(b)
    with pytest.raises(ValueError, match="only in lr and seed"):
        fused.train_fused([a, b], data)
    c = copy.deepcopy(a)
    c.lr, c.seed = 0.3, 7
    assert fused.fusion_key(a) == fused.fusion_key(c)


def test_fused_model_forward_equals_members_forward(data):
    from bsweep.models import make_cnn

    cfg = compose([*TINY, "model=cnn", "norm=group"])
    nets = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        nets.append(make_cnn(data.input_shape, data.n_classes, cfg.model, cfg.norm))
    model = fused.FusedCNN(nets)
    fused.flatten_parameters(model)  # parameters become views of one buffer: values unchanged
    idx = torch.stack([torch.arange(5), torch.arange(5, 10), torch.arange(10, 15)])
    x, _ = fused.stacked_batch(data, idx)
    out = model(x)
    for k, net in enumerate(nets):
        torch.testing.assert_close(out[k], net(data.x_train[idx[k]]), rtol=1e-5, atol=1e-6)


def test_width_is_forced_or_measured(data):
    cfg = compose([*TINY, "batch_size=4"])
    cfg.perf.fuse = "off"
    assert fused.choose_width(cfg, data, 6) == 1
    cfg.perf.fuse = "3"
    assert fused.choose_width(cfg, data, 6) == 3 and fused.choose_width(cfg, data, 2) == 2
    cfg.perf.fuse = "auto"
    width = fused.choose_width(cfg, data, 4)
    table = fused._WIDTH_CACHE[next(iter(fused._WIDTH_CACHE))]
    assert width in table and table[width] == min(table.values()) and set(table) <= {1, 2, 4}
    cfg.perf.fuse = "many"
    with pytest.raises(ValueError, match="perf.fuse"):
        fused.choose_width(cfg, data, 4)


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
    from bsweep.plan import expand

    args = [*TINY, f"results_dir={results}", "lr=0.05,0.1", "hydra/launcher=bsweep_fused"]
    out = CliRunner().invoke(app, ["sweep", *args], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    study = results / "smoke"
    trials = load_trials(study)
    assert len(trials) == 8 and set(trials["status"]) == {"complete"}
    planned = expand(args)
    assert {p.trial_id for p in planned} == set(trials["trial_id"])  # the same ids as unfused
    # every member's record holds the rows train_trial gives the same trial alone
    p = next(p for p in planned if "lr=0.1" in p.overrides and "norm=group" in p.overrides)
    tdir = records.trial_dir(study, p.trial_id)
    env = json.loads((tdir / records.ENV_FILE).read_text())
    assert env["fused_width"] >= 1 and p.trial_id in env["fused_with"]
    got = records.read_measurements(tdir)
    cfg = OmegaConf_to_object(p.config)
    alone = train_trial(cfg, load_data(cfg.data)).measurements
    assert list(got["step"]) == [r["step"] for r in alone]
    for col in COLUMNS:
        assert list(got[col]) == pytest.approx([r[col] for r in alone], rel=RTOL, nan_ok=True)
    stamps = {q: q.stat().st_mtime_ns for q in study.glob("trials/*/measurements.parquet")}
    again = CliRunner().invoke(app, ["sweep", *args], catch_exceptions=False)
    assert again.exit_code == 0 and "8 already finished, 0 to run" in again.output
    assert {q: q.stat().st_mtime_ns for q in study.glob("trials/*/measurements.parquet")} == stamps


def OmegaConf_to_object(cfg):
    from omegaconf import OmegaConf

    return OmegaConf.to_object(cfg)
