"""perf.amp / perf.channels_last: fixed settings, and `auto` decided by measuring, once per study."""

import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from bsweep.train import perf
from bsweep.train.data import load_data
from bsweep.train.perf import PerfChoice, candidates, choose, pick
from bsweep.validate import problems
from tests.conftest import TINY, compose, train_alone, train_fused

# The probe's own tests: `auto` where TINY pins float32 and the contiguous layout.
AUTO = ["perf.amp=auto", "perf.channels_last=auto"]

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
EXACT, BF16 = PerfChoice(False, False), PerfChoice(True, False)
NHWC, BOTH = PerfChoice(False, True), PerfChoice(True, True)


@pytest.fixture(autouse=True)
def fresh_memo(tmp_path_factory, monkeypatch):
    """A fresh process: nothing remembered in memory, and a machine cache of its own."""
    monkeypatch.setenv("BSWEEP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    perf._MEMO.clear()
    perf._WIDTH_CACHE.clear()
    yield
    perf._MEMO.clear()
    perf._WIDTH_CACHE.clear()


def test_candidates_follow_the_settings_and_the_data():
    cfg = compose([*TINY, *AUTO])
    assert candidates(cfg, images=True) == [EXACT, NHWC, BF16, BOTH]
    assert candidates(cfg, images=False) == [EXACT, BF16]  # 1-D data has no memory format
    cfg.perf.amp, cfg.perf.channels_last = "off", "on"
    assert candidates(cfg, images=True) == [NHWC]
    cfg.perf.amp = "bf16"
    assert candidates(cfg, images=False) == [BF16]
    cfg.perf.amp = "false"  # what YAML makes of an unquoted `off` in some places
    assert candidates(cfg, images=False) == [EXACT]


def test_the_builtin_cnn_takes_channels_last_on_signals_a_model_of_ones_own_only_on_images():
    cfg = compose([*TINY])
    data = load_data(cfg.data)
    assert data.x_train.dim() == 3 and perf.takes_channels_last(cfg, data)
    custom = compose([*TINY, "model=custom", "model._target_=examples.tiny_models.PlainMLP"])
    assert not perf.takes_channels_last(custom, data)


def test_float32_is_the_default_on_every_machine():
    # bf16 "auto" chose by the machine (and the run): a study's precision must not
    cfg = compose([])
    assert cfg.perf.amp == "off"
    assert candidates(cfg, images=True) == [EXACT, NHWC]


def test_amp_auto_is_float32_without_a_probe_where_bf16_is_emulated():
    cfg = compose([*TINY, "perf.amp=auto", "perf.channels_last=auto"])
    assert candidates(cfg, images=True, bf16=False) == [EXACT, NHWC]
    assert candidates(cfg, images=False, bf16=False) == [EXACT]  # nothing to measure
    cfg = compose([*TINY, "perf.amp=on"])
    assert candidates(cfg, images=False, bf16=False) == [BF16]  # asked for: kept


def test_pick_needs_a_clear_gain_to_leave_float32():
    # bf16 15 % faster: not enough (it moves results); 25 % faster: taken
    assert pick({EXACT: 1.0, BF16: 1 / 1.15}) == EXACT
    assert pick({EXACT: 1.0, BF16: 1 / 1.25}) == BF16
    # channels_last needs 5 %; both together need both margins
    assert pick({EXACT: 1.0, NHWC: 1 / 1.03}) == EXACT
    assert pick({EXACT: 1.0, NHWC: 1 / 1.08}) == NHWC
    assert pick({EXACT: 1.0, NHWC: 1 / 1.08, BF16: 1 / 1.1, BOTH: 1 / 1.24}) == NHWC
    assert pick({EXACT: 1.0, NHWC: 1 / 1.08, BF16: 1 / 1.1, BOTH: 1 / 1.5}) == BOTH
    # slower candidates never win
    assert pick({EXACT: 1.0, BF16: 2.0, NHWC: 1.5}) == EXACT
    # the first key is the reference, whatever it is (amp forced on: only the layout is open)
    assert pick({BF16: 1.0, BOTH: 1 / 1.1}) == BOTH


def test_the_probe_stops_early_only_when_every_candidate_is_clear():
    assert perf.decided({EXACT: 1.0, BF16: 2.0})  # bf16 twice as slow
    assert perf.decided({EXACT: 1.0, BF16: 1 / 2.0})  # twice as fast
    assert not perf.decided({EXACT: 1.0, BF16: 1 / 1.2})  # right at the margin
    assert not perf.decided({EXACT: 1.0, BF16: 2.0, NHWC: 1 / 1.05})


@pytest.mark.parametrize("overrides,bound,width", [
    ([], False, perf.PROBE_WIDTH),  # may fuse, and fusing pays: timed fused
    ([], True, 1),  # compute-bound: timed alone
    (["perf.fuse=off"], False, 1),  # never fuses: timed as it trains
    (["noise.enabled=true"], False, 1),  # measures its own gradients: trains alone
])
def test_the_layout_is_timed_fused_where_the_trial_trains_fused(monkeypatch, overrides, bound, width):
    # channels_last ran BatchNorm 1.3x faster fused at batch 16 and lost alone: the probe times
    # the step the trial will train with
    monkeypatch.setattr(perf, "compute_bound", lambda *a: bound)
    cfg = compose([*TINY, "perf.channels_last=auto", "batch_size=16", *overrides])
    data = load_data(cfg.data)
    seconds, rows = perf.measure(cfg, data, perf.candidates(cfg, images=True, bf16=False))
    assert list(seconds) == [EXACT, NHWC]
    assert [r["width"] for r in rows] == [width, width]
    assert [r["ms_per_member_step"] for r in rows] == pytest.approx([seconds[EXACT] * 1e3, seconds[NHWC] * 1e3])


def test_fixed_settings_are_not_measured(monkeypatch):
    cfg = compose([*TINY, "perf.amp=bf16", "perf.channels_last=off"])
    data = load_data(cfg.data)
    monkeypatch.setattr(perf, "measure", lambda *a: pytest.fail("measured a fixed setting"))
    assert choose(cfg, data) == BF16


def test_auto_measures_once_per_study_and_remembers_on_disk(tmp_path, monkeypatch):
    # the probe's bookkeeping on every CPU: bf16 is timed here even where it cannot pay
    monkeypatch.setattr(perf, "bf16_can_pay", lambda device: True)
    cfg = compose([*TINY, *AUTO, "batch_size=64"])
    data = load_data(cfg.data)
    rng = torch.random.get_rng_state()
    first = choose(cfg, data, tmp_path)
    assert torch.equal(torch.random.get_rng_state(), rng)  # the probe leaves the RNG alone
    files = list((tmp_path / "perf").glob("*.json"))
    assert len(files) == 1
    record = json.loads(files[0].read_text())
    assert record["key"]["batch_size"] == 64 and record["key"]["amp"] == "auto"
    # the built-in CNN's layers are 2-D, on signals too: both layouts are candidates
    assert [(m["amp"], m["channels_last"]) for m in record["measured"]] == [
        ("off", "off"), ("off", "on"), ("bf16", "off"), ("bf16", "on")]
    assert all(m["ms_per_member_step"] > 0 and m["width"] in (1, perf.PROBE_WIDTH) for m in record["measured"])
    assert PerfChoice(**record["choice"]) == first

    # another process (fresh memo) reads the study's decision instead of measuring again,
    # even where its own measurement would differ
    perf._MEMO.clear()
    other = PerfChoice(not first.amp, False)
    record["choice"] = {"amp": other.amp, "channels_last": False}
    files[0].write_text(json.dumps(record))
    assert choose(cfg, data, tmp_path) == other
    # another batch size is another decision
    cfg.batch_size = 16
    choose(cfg, data, tmp_path)
    assert len(list((tmp_path / "perf").glob("*.json"))) == 2


def test_the_machine_remembers_a_choice_for_the_next_study(tmp_path, monkeypatch):
    monkeypatch.setattr(perf, "bf16_can_pay", lambda device: True)
    cfg = compose([*TINY, *AUTO, "batch_size=64"])
    data = load_data(cfg.data)
    first = choose(cfg, data, tmp_path / "study_a")
    [mfile] = (perf.cache_dir() / "perf").glob("choice-*.json")
    assert json.loads(mfile.read_text())["key"]["kernels"] == torch.backends.cpu.get_cpu_capability()

    # a new process and another study on this machine: no probe, the same choice, and the
    # study keeps its own record of it
    perf._MEMO.clear()
    real = perf.measure
    monkeypatch.setattr(perf, "measure", lambda *a: pytest.fail("measured again"))
    assert choose(cfg, data, tmp_path / "study_b") == first
    assert len(list((tmp_path / "study_b" / "perf").glob("*.json"))) == 1

    # a damaged machine record is measured afresh and replaced
    mfile.write_text("{not json")
    perf._MEMO.clear()
    calls = []
    monkeypatch.setattr(perf, "measure", lambda *a: calls.append(1) or real(*a))
    choose(cfg, data, tmp_path / "study_c")
    assert calls and json.loads(mfile.read_text())["key"]["batch_size"] == 64


def test_the_machine_remembers_a_width_search(monkeypatch):
    cfg = compose([*TINY, "batch_size=4"])
    data = load_data(cfg.data)
    table = perf.width_table(cfg, data, 4)
    perf._WIDTH_CACHE.clear()  # a new process
    monkeypatch.setattr(perf, "time_steps", lambda *a, **k: pytest.fail("timed again"))
    assert perf.width_table(cfg, data, 4) == table
    with pytest.raises(pytest.fail.Exception, match="timed again"):
        perf.width_table(cfg, data, 3)  # another group size is another search
    cfg.batch_size = 8
    with pytest.raises(pytest.fail.Exception, match="timed again"):
        perf.width_table(cfg, data, 4)  # another batch size too


def test_one_slow_timing_does_not_end_the_width_search(monkeypatch):
    # seconds per step at widths 1, 2, 4: width 2's first timing is a spike (another process,
    # a page fault); timed again beside width 1 it is what it costs; the search goes on and
    # picks width 4
    timings = {1: [1.8e-3, 1.9e-3], 2: [6.1e-3, 1.9e-3], 4: [2.6e-3]}
    built: list[int] = []
    monkeypatch.setattr(perf, "timed_step", lambda cfg, data, w, p: built.append(w) or w)
    monkeypatch.setattr(perf, "time_steps", lambda w, *a, **k: timings[w].pop(0))
    monkeypatch.setattr(perf, "time_interleaved", lambda steps, *a, **k: [timings[w].pop(0) for w, _ in steps])
    cfg = compose([*TINY, "batch_size=16"])
    table = perf.width_table(cfg, load_data(cfg.data), 4)
    assert built == [1, 2, 4] and all(not t for t in timings.values())
    assert table == pytest.approx({1: 1.8e-3, 2: 0.95e-3, 4: 0.65e-3})
    # a burst of load that lasts: width 2 is slow twice, but so is width 1 beside it
    perf._WIDTH_CACHE.clear()
    timings.update({1: [1.0e-3, 3.0e-3], 2: [4.0e-3, 4.0e-3], 4: [2.0e-3]})
    cfg.batch_size = 64
    assert perf.width_table(cfg, load_data(cfg.data), 4) == pytest.approx({1: 1.0e-3, 2: 2.0e-3, 4: 0.5e-3})
    # a width slower on both timings, and than the best beside it, is a trend: the search stops
    perf._WIDTH_CACHE.clear()
    timings.update({1: [1.0e-3, 1.0e-3], 2: [4.0e-3, 3.9e-3], 4: [1e-9]})
    cfg.batch_size = 32
    assert perf.width_table(cfg, load_data(cfg.data), 4) == pytest.approx({1: 1.0e-3, 2: 1.95e-3})


def test_the_first_writer_wins(tmp_path):
    path = tmp_path / "perf" / "k.json"
    assert perf._store(path, {"choice": {"amp": True, "channels_last": False}}) == BF16
    assert perf._store(path, {"choice": {"amp": False, "channels_last": False}}) == BF16
    assert [p.name for p in path.parent.iterdir()] == ["k.json"]  # no temp files left


def test_bad_settings_are_config_errors():
    cfg = compose(TINY)
    cfg.perf.amp, cfg.perf.channels_last, cfg.perf.fuse = "fp8", "maybe", "many"
    found = "\n".join(problems(cfg))
    assert "perf.amp='fp8' is not known; choose auto, bf16 (or on) or off" in found
    assert "perf.channels_last='maybe' is not known; choose auto, on or off" in found
    assert "perf.fuse='many' is not known; choose auto, off or a width >= 1" in found


def test_a_sweep_records_the_settings_each_trial_ran_with(tmp_path):
    from bsweep.analysis.load import load_trials
    from bsweep.cli import app
    from typer.testing import CliRunner

    results = tmp_path / "results"
    # images, so there is a layout to decide on every CPU (bf16 is not probed where emulated)
    out = CliRunner().invoke(app, ["sweep", *TINY, f"results_dir={results}", "batch_size=16,64",
                                   "norm=batch", "data=digits", "perf.amp=auto", "perf.channels_last=auto"])
    assert out.exit_code == 0, out.output
    trials = load_trials(results / "smoke")
    assert set(trials["amp"]) <= {"bf16", "off"} and len(trials) == 2
    assert set(trials["channels_last"]) <= {"on", "off"}
    assert len(list((results / "smoke" / "perf").glob("*.json"))) == 2  # one decision per batch size


def test_compile_is_on_or_off_only():
    cfg = compose([*TINY, "perf.compile=on", "perf.amp=off"])
    assert candidates(cfg, images=False) == [PerfChoice(False, False, True)]
    cfg.perf.compile = "auto"
    assert "perf.compile='auto' is not known; choose on or off" in problems(cfg)


@pytest.mark.slow
def test_compiled_trials_match_eager_ones_alone_and_fused():
    """perf.compile=on (torch.compile, inductor on CPU; the first compile takes ~15 s): the same
    measurements as eager within float tolerance, for a trial alone and for a fused group."""
    import copy
    import math

    cfg = compose([*TINY, "perf.amp=off", "norm=batch", "batch_size=32"])
    data = load_data(cfg.data)
    from torch._dynamo.utils import counters

    eager = train_alone(cfg, data, perf=EXACT)
    torch._dynamo.reset()  # compile afresh here, whatever ran before in this process
    counters.clear()
    compiled = train_alone(cfg, data, perf=PerfChoice(compile=True))
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really compiled the model
    assert len(compiled.measurements) == len(eager.measurements)
    for a, b in zip(eager.measurements, compiled.measurements):
        for col in ("train_loss", "test_loss", "test_acc"):
            if not math.isnan(a[col]):
                assert b[col] == pytest.approx(a[col], rel=1e-4, abs=1e-6)

    cfgs = [copy.deepcopy(cfg) for _ in range(2)]
    cfgs[1].lr, cfgs[1].seed = 0.02, 1
    together = train_fused(cfgs, data, perf=PerfChoice(compile=True))
    for c, member in zip(cfgs, together):
        alone = train_alone(c, data, perf=EXACT)
        for a, b in zip(alone.measurements, member.measurements):
            for col in ("train_loss", "test_loss"):
                if not math.isnan(a[col]):
                    assert b[col] == pytest.approx(a[col], rel=1e-4, abs=1e-6)


@cuda
def test_auto_measures_on_cuda_and_the_choice_trains(tmp_path):
    cfg = compose([*TINY, *AUTO, "device=cuda", "data=digits", "data.n_train=256", "data.n_test=128",
                   "norm=group", "batch_size=64"])
    data = load_data(cfg.data, "cuda")
    choice = choose(cfg, data, tmp_path)
    record = json.loads(next((tmp_path / "perf").glob("*.json")).read_text())
    assert len(record["measured"]) == 4  # float32/bf16 x contiguous/channels_last on 2-D data
    result = train_alone(cfg, data, perf=choice)
    assert result.status == "complete"
    assert result.measurements[-1]["test_loss"] < result.measurements[0]["test_loss"]


@cuda
@pytest.mark.slow
def test_compile_with_cuda_graphs_matches_eager_on_cuda():
    import math

    cfg = compose([*TINY, "device=cuda", "norm=batch", "batch_size=32"])
    data = load_data(cfg.data, "cuda")
    eager = train_alone(cfg, data, perf=EXACT)
    compiled = train_alone(cfg, data, perf=PerfChoice(compile=True))  # mode="reduce-overhead"
    assert len(compiled.measurements) == len(eager.measurements)
    for a, b in zip(eager.measurements, compiled.measurements):
        for col in ("train_loss", "test_loss", "test_acc"):
            if not math.isnan(a[col]):
                # inductor's kernels sum in another order than cuDNN's (and TF32 where enabled)
                assert b[col] == pytest.approx(a[col], rel=1e-2, abs=1e-3)


def test_a_bad_perf_setting_stops_the_sweep_before_training(tmp_path):
    from typer.testing import CliRunner

    from bsweep.cli import app

    out = CliRunner().invoke(app, ["sweep", *TINY, f"results_dir={tmp_path / 'results'}", "perf.amp=fp16"])
    assert out.exit_code == 2
    assert "perf.amp='fp16' is not known; choose auto, bf16 (or on) or off" in out.output
    assert "Traceback" not in out.output
    assert not (tmp_path / "results").exists()


# Ten evaluations of 6 fused members (the default CNN, mnist1d's 1000 test samples at batch 256),
# one thread; prints the page faults they took. argv[1] == "keep": with `keep_freed_memory`.
_FAULTS = """
import resource, sys, torch
from bsweep.train.data import load_data
from bsweep.train.device import keep_freed_memory
from bsweep.train.engine import PerfChoice, evaluate
from bsweep.train.fused import build_members
from bsweep.plan import expand, structured
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.set_num_threads(1)
cfgs = [structured(p.config) for p in expand(["data=mnist1d", "data.n_train=256", "lr=0.01,0.1", "seed=0,1,2"])]
data = load_data(cfgs[0].data, "cpu")
members = build_members(cfgs, data, PerfChoice())
evaluate(members, data, 256, False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    evaluate(members, data, 256, False)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


# glibc's starting mmap and trim thresholds (128 KiB), pinned: tunables turn its raising off
START_THRESHOLDS = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072"}


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc malloc setting")
def test_a_training_process_reuses_freed_memory_instead_of_faulting_it_in_again():
    def faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True,
                             env={**os.environ, **START_THRESHOLDS})
        return int(out.stdout.split()[-1])

    # glibc at its starting thresholds (128 KiB: a block that large is mmap'd, and freed back to
    # the kernel) faults the activations in again on every call (~640,000 faults on the 2-core
    # AVX2-only EPYC); with freed memory kept, a few hundred. glibc's own default raises its thresholds as
    # it goes, by an amount that depends on the order of frees: 3,207 faults in one run, ~265,000
    # in others, so the comparison pins the starting thresholds (tunables set them and turn the
    # raising off), and `keep` overrides them as it does glibc's defaults.
    kept, fresh = faults("keep"), faults("default")
    assert kept * 20 < fresh, (kept, fresh)


def test_the_width_search_stops_at_a_compute_bound_step(monkeypatch):
    # a step that alone fills the core (PROBE_WIDTH of them take longer than
    # FUSED_PROBE_SECONDS, and two members fused, timed beside it, cost as much a member) is not
    # fused: nothing wider than the pair is built or timed
    alone = 2 * perf.FUSED_PROBE_SECONDS / perf.PROBE_WIDTH
    pair_cost = 2.0  # seconds of a fused step of two, in steps alone
    built: list[int] = []
    monkeypatch.setattr(perf, "timed_step", lambda cfg, data, w, p: built.append(w) or w)
    monkeypatch.setattr(perf, "time_steps", lambda w, *a, **k: alone * w)
    monkeypatch.setattr(perf, "time_interleaved",
                        lambda steps, *a, **k: [alone * (pair_cost if w == 2 else w) for w, _ in steps])
    cfg = compose([*TINY, "batch_size=48"])
    assert perf.width_table(cfg, load_data(cfg.data), 4) == pytest.approx({1: alone, 2: alone})
    assert built == [1, 2]
    # slow alone, but two fused cost less than two alone by more than FUSION_GAIN (batch 64 on
    # the AVX2-only EPYC): the search goes on, and does not time the pair again
    perf._WIDTH_CACHE.clear()
    built.clear()
    pair_cost = 2.0 / (perf.FUSION_GAIN * 1.1)
    cfg.batch_size = 44
    assert perf.width_table(cfg, load_data(cfg.data), 4) == pytest.approx({1: alone, 2: alone * pair_cost / 2, 4: alone})
    assert built == [1, 2, 4]
    # fast alone: the search goes on without the pair's side-by-side timing
    perf._WIDTH_CACHE.clear()
    built.clear()
    alone = 0.5 * perf.FUSED_PROBE_SECONDS / perf.PROBE_WIDTH
    monkeypatch.setattr(perf, "time_interleaved", lambda *a, **k: pytest.fail("timed side by side"))
    cfg.batch_size = 40
    assert set(perf.width_table(cfg, load_data(cfg.data), 4)) == {1, 2, 4} and built == [1, 2, 4]


def test_a_step_slow_alone_is_compute_bound_only_when_fusing_two_does_not_pay(monkeypatch):
    cfg = compose([*TINY, "batch_size=16"])
    data = load_data(cfg.data)
    monkeypatch.setattr(perf, "timed_step", lambda cfg, data, w, p: w)
    monkeypatch.setattr(perf, "warm_call_seconds", lambda step, device: 1.0)  # slow alone
    for two_fused, bound in ((2.0, True), (2.0 / perf.FUSION_GAIN * 1.01, True), (2.0 / perf.FUSION_GAIN * 0.99, False)):
        monkeypatch.setattr(perf, "time_interleaved", lambda steps, *a, **k: [1.0 if w == 1 else two_fused for w, _ in steps])
        assert perf.compute_bound(cfg, data, EXACT) is bound, two_fused
    monkeypatch.setattr(perf, "warm_call_seconds", lambda step, device: 1e-6)  # fast alone: never timed as a pair
    monkeypatch.setattr(perf, "time_interleaved", lambda *a, **k: pytest.fail("timed side by side"))
    assert perf.compute_bound(cfg, data, EXACT) is False
