"""`bsweep bench`: isolated step times written to results/<study>/bench.parquet."""

import pandas as pd
from typer.testing import CliRunner

from bsweep import bench
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
    assert len(list((results / "smoke" / "perf").glob("*.json"))) == 4
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
