"""`bsweep bench`: isolated step times written to results/<study>/bench.parquet."""

import pandas as pd
import torch
from typer.testing import CliRunner

from bsweep.sweep import bench
from bsweep.train import timing
from bsweep.cli import app
from tests.conftest import TINY, compose

COLUMNS = {"batch_size", "norm", "device", "seconds_per_step", "samples_per_second", "fused_width",
           "amp", "channels_last"}


def test_bench_times_every_batch_size_and_norm_of_the_plan(results):
    out = CliRunner().invoke(app, ["bench", *TINY, f"results_dir={results}", "perf.amp=auto", "--widths", "1,2"],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    table = pd.read_parquet(results / "smoke" / bench.BENCH_FILE)
    assert COLUMNS <= set(table.columns)
    # the smoke grid: batch 16, 64 x norm batch, group; each at width 1 and 2
    assert len(table) == 8
    assert set(zip(table["batch_size"], table["norm"], table["fused_width"])) == {
        (b, n, w) for b in (16, 64) for n in ("batch", "group") for w in (1, 2)}
    assert (table["seconds_per_step"] > 0).all() and (table["device"] == "cpu").all()
    ratio = table["samples_per_second"] * table["seconds_per_step"] / table["batch_size"]
    assert ratio.round(9).eq(1).all()
    # timed with the settings the study's trials use: perf.amp=auto decided once per point
    assert set(table["amp"]) <= {"bf16", "off"} and set(table["channels_last"]) == {"off"}
    # one decision per point, written down where there was a choice to measure: without bf16
    # kernels that pay (AVX2-only CPUs) "auto" has one candidate and nothing to record
    from bsweep.train.perf import bf16_can_pay

    expected = 4 if bf16_can_pay(torch.device("cpu")) else 0
    assert len(list((results / "smoke" / "perf").glob("*.json"))) == expected
    # C8: one step's memory, for a trial alone (width 1 rows)
    alone = table[table["fused_width"] == 1].set_index(["norm", "batch_size"])["step_memory_bytes"]
    assert (alone > 0).all() and (alone.xs(64, level="batch_size") > alone.xs(16, level="batch_size")).all()
    bad = CliRunner().invoke(app, ["bench", *TINY, f"results_dir={results}", "--widths", "0"])
    assert bad.exit_code == 2


def test_a_new_run_replaces_rows_with_the_same_key_and_keeps_the_others(results, tmp_path):
    cfg = compose([*TINY, "batch_size=8"])
    first = bench.run_bench([cfg], (1,), block_seconds=0.01, blocks=1)
    bench.write_bench(tmp_path, first)
    cfg2 = compose([*TINY, "batch_size=32"])
    bench.write_bench(tmp_path, bench.run_bench([cfg, cfg2], (1,), block_seconds=0.01, blocks=1))
    table = bench.read_bench(tmp_path)
    assert sorted(table["batch_size"]) == [8, 32]
    assert bench.read_bench(tmp_path / "nowhere") is None


def test_the_points_are_timed_in_interleaved_rounds(monkeypatch):
    # a load that lasts a round slows one block of every point, not every block of one point
    order: list[int] = []
    slow = iter([5.0, 5.0] + [1.0] * 10)  # the first round (both points) under load

    def block(step, device, calls):
        order.append(id(step))
        return next(slow)

    monkeypatch.setattr(timing, "time_block", block)
    monkeypatch.setattr(timing, "steps_per_block", lambda *a, **k: 1)
    cfgs = [compose([*TINY, "batch_size=8"]), compose([*TINY, "batch_size=32"])]
    table = bench.run_bench(cfgs, (1,), block_seconds=0.01, blocks=3)
    first, second = order[0], order[1]
    # each round starts one point further along: no point always opens a round
    assert first != second and order == [first, second, second, first, first, second]
    assert list(table["seconds_per_step"]) == [1.0, 1.0]  # each point's best block
    # and every round's block is kept, in round order, for paired comparisons (N5)
    assert [list(b) for b in table["block_seconds"]] == [[5.0, 1.0, 1.0], [5.0, 1.0, 1.0]]


def test_step_memory_grows_with_batch_size_is_the_same_on_every_call_and_takes_the_study_limit():
    import torch

    from bsweep.train.data import load_data
    from bsweep.sweep.bench import GIB, device_memory_bytes, step_memory

    cfg = compose([*TINY, "study.memory_limit_gib=2"])
    data = load_data(cfg.data, torch.device("cpu"))
    rows = [step_memory(cfg, data, bs) for bs in (1, 8, 64)]
    memory = [r["step_memory_bytes"] for r in rows]
    assert memory[0] < memory[1] < memory[2]
    again = step_memory(cfg, data, 8)  # shapes and dtypes only: no timing, no rounding
    assert again["step_memory_bytes"] == rows[1]["step_memory_bytes"]
    # the batch's activations: at least the input and the first conv's output per example
    per_example = (memory[2] - memory[1]) / (64 - 8)
    assert per_example > 4 * data.x_train[0].numel()
    assert all(r["memory_limit_bytes"] == 2 * GIB for r in rows)
    assert all(r["peak_memory_bytes"] != r["peak_memory_bytes"] for r in rows)  # NaN: no CPU peak counter
    cfg.study.memory_limit_gib = None
    assert step_memory(cfg, data, 1)["memory_limit_bytes"] == device_memory_bytes(torch.device("cpu")) > GIB


def test_only_points_this_machine_has_not_timed_for_the_study_are_timed_again(tmp_path):
    # `bsweep reproduce` on finished studies keeps their step times (the report then repeats),
    # and times a point that is new, or whose row came from another machine or torch version
    b8, b32 = compose([*TINY, "batch_size=8"]), compose([*TINY, "batch_size=32"])
    group8 = compose([*TINY, "batch_size=8", "norm=group"])
    assert bench.unmeasured(tmp_path, [b8, b32]) == [b8, b32]  # no table yet
    bench.write_bench(tmp_path, bench.run_bench([b8], (1,), block_seconds=0.01, blocks=1))
    assert bench.unmeasured(tmp_path, [b8, b32, group8]) == [group8, b32]  # by batch size
    assert bench.unmeasured(tmp_path, [compose([*TINY, "batch_size=8", "lr=0.3", "seed=4"])]) == []
    assert bench.unmeasured(tmp_path, [compose([*TINY, "batch_size=8", "model.kernel_size=5"])])  # another step
    table = bench.read_bench(tmp_path)
    bench.write_bench(tmp_path, table.assign(device_name="another CPU"))
    assert bench.unmeasured(tmp_path, [b8]) == [b8]
    # a row from before the bench kept its rounds is timed again (N5 pairs rounds)
    (tmp_path / bench.BENCH_FILE).unlink()
    bench.write_bench(tmp_path, table.drop(columns="block_seconds"))
    assert bench.unmeasured(tmp_path, [b8]) == [b8]
