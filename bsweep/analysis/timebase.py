"""The time basis of a study: the bench's step times, calibrated seconds, and step memory.

Measured seconds depend on the machine and on what else ran on it: trials that ran fused, in
parallel or on a busy machine say more about their neighbours than about their batch size.
`bsweep bench` (``bench.parquet``) times one step per batch size in isolation; these functions
read it (``load_bench``, ``step_times``), put the study's seconds on that basis
(``calibrate_times``, ``add_calibrated_seconds``) and copy the bench's per-step memory and
per-round step times onto the trials (``add_step_memory``, ``add_step_blocks``).

Pure pandas / numpy: frames in, frames out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bsweep.analysis.metrics import FINISHED_STATUSES, SPLIT_PREFIXES, condition_columns
from bsweep.config import STEP_GROUPS, is_under


def load_bench(study_dir: Path) -> pd.DataFrame | None:
    """``<study_dir>/bench.parquet`` (calibrated step times), or None when there is none."""
    path = Path(study_dir) / "bench.parquet"
    return pd.read_parquet(path) if path.exists() else None


def step_times(summary: pd.DataFrame, bench: pd.DataFrame | None = None) -> pd.DataFrame:
    """Seconds per optimizer step per condition and batch size, and where each number comes from.

    Preferred: the calibrated benchmark ``bench`` (columns ``batch_size``, ``seconds_per_step``
    or ``samples_per_second``, optional ``norm`` and ``device``), restricted to the devices the
    trials ran on: a benchmark from another machine says nothing about these trials. Else the
    trials themselves: training seconds / steps at their last measurement, median over every
    finished trial (all lrs and seeds) at that point; median, because trials that shared the
    machine with others are slow outliers.

    Output: the condition columns, ``batch_size``, ``seconds_per_step``, ``source``
    ("benchmark" or "trials").
    """
    by = condition_columns(summary)
    finished = summary[summary["status"].isin(FINISHED_STATUSES)]
    finished = finished[(finished["last_step"] > 0) & (finished["last_seconds"] > 0)]
    measured = finished.assign(seconds_per_step=finished["last_seconds"] / finished["last_step"])
    table = measured.groupby([*by, "batch_size"], dropna=False)["seconds_per_step"].median().reset_index()
    table["source"] = "trials"
    calibrated = _bench_table(summary, bench)
    if calibrated is not None:
        keys = [c for c in calibrated.columns if c != "seconds_per_step"]
        merged = table.merge(calibrated, on=keys, how="left", suffixes=("", "_bench"))
        has = merged["seconds_per_step_bench"].notna()
        merged.loc[has, "seconds_per_step"] = merged.loc[has, "seconds_per_step_bench"]
        merged.loc[has, "source"] = "benchmark"
        table = merged.drop(columns="seconds_per_step_bench")
    return table[[*by, "batch_size", "seconds_per_step", "source"]]


# bench.parquet's columns for config keys -> the trial table's names for them.
BENCH_KEYS = {"data": "data", "optim": "optim", "model_width": "model.width", "model_depth": "model.depth"}


def bench_gaps(summary: pd.DataFrame, bench: pd.DataFrame) -> list[str]:
    """The step-time keys the study varies that the bench has no column for (their step times
    would be pooled); [] when the bench tells every varying one apart."""
    varying = [c for c in condition_columns(summary) if summary[c].nunique(dropna=False) > 1]
    # a study that varies a key of config.STEP_GROUPS is calibrated only by a bench that tells
    # its values apart
    step_keys = [c for c in varying if is_under(c, STEP_GROUPS)]
    columns = set(bench.columns) | {v for k, v in BENCH_KEYS.items() if k in bench.columns}
    return [c for c in step_keys if c not in columns]


def _bench_table(summary: pd.DataFrame, bench: pd.DataFrame | None,
                 values: tuple[str, ...] = ("seconds_per_step",)) -> pd.DataFrame | None:
    """The bench's width-1 rows on the trials' devices, one per combination of the step keys
    both tables have (median of each column in `values`), typed as the summary's; None when the
    bench cannot tell the study's points apart."""
    got = _bench_rows(summary, bench)
    if got is None:
        return None
    rows, keys = got
    values = [v for v in values if v in rows.columns]
    return rows.groupby(keys, dropna=False)[values].median().reset_index()


def _bench_rows(summary: pd.DataFrame, bench: pd.DataFrame | None) -> tuple[pd.DataFrame, list[str]] | None:
    """The bench's width-1 rows on the trials' devices with their step keys named and typed as
    the summary's, and those keys (the columns both tables have); None when the bench cannot
    tell the study's points apart."""
    if bench is None or bench.empty or "batch_size" not in bench.columns:
        return None
    bench = bench.copy()
    if "fused_width" in bench.columns:  # wider rows time a fused model, per member: not one trial
        bench = bench[bench["fused_width"] == 1]
    if "seconds_per_step" not in bench.columns:
        if "samples_per_second" not in bench.columns:
            return None
        bench["seconds_per_step"] = bench["batch_size"] / bench["samples_per_second"]
    if "device" in bench.columns and "device" in summary.columns:
        devices = set(summary["device"].dropna().astype(str))
        if devices:
            bench = bench[bench["device"].astype(str).isin(devices)]
    bench = bench[bench["seconds_per_step"] > 0]
    if bench.empty:
        return None
    # older bench.parquet files name some config keys their own way; newer rows have every step
    # key dotted. Join on every step key both tables have, so a study that sweeps model.width
    # gets each width's own step time; a swept step key the bench lacks leaves it uncalibrated.
    bench = bench.rename(columns={k: v for k, v in BENCH_KEYS.items() if v not in bench.columns})
    if bench_gaps(summary, bench):
        return None
    keys = [c for c in bench.columns if c in summary.columns and (c == "batch_size" or is_under(c, STEP_GROUPS))]
    for key in keys:
        bench[key] = bench[key].astype(summary[key].dtype, errors="ignore")
    return bench, keys


def add_calibrated_seconds(summary: pd.DataFrame, bench: pd.DataFrame | None = None) -> pd.DataFrame:
    """``summary`` plus ``calibrated_seconds_to_target`` = steps to target x the seconds per
    step of ``step_times`` (the calibrated benchmark where there is one, else the median over
    the study's trials at that batch size), and ``seconds_per_step_source``. Beside the measured
    ``seconds_to_target``, it stays meaningful when trials ran fused, in parallel or on a busy
    machine."""
    out = summary.copy()
    if out.empty or "steps_to_target" not in out.columns:
        out["calibrated_seconds_to_target"] = np.nan
        out["seconds_per_step_source"] = None
        return out
    table = step_times(summary, bench).rename(columns={"source": "seconds_per_step_source"})
    keys = [*condition_columns(summary), "batch_size"]
    merged = out.merge(table, on=keys, how="left")
    merged.index = out.index
    out["calibrated_seconds_to_target"] = merged["steps_to_target"] * merged["seconds_per_step"]
    out["seconds_per_step_source"] = merged["seconds_per_step_source"]
    return out


# C8's columns of a bench row (`bsweep.train.memory`), copied onto every trial of the same step keys.
MEMORY_COLUMNS = ("step_memory_bytes", "peak_memory_bytes", "memory_limit_bytes")


def add_step_memory(summary: pd.DataFrame, bench: pd.DataFrame | None) -> pd.DataFrame:
    """``summary`` plus the bench's MEMORY_COLUMNS at each trial's batch size and step keys (NaN
    where the bench has none: `bsweep bench` did not run, or ran before it measured memory)."""
    out = summary.copy()
    table = _bench_table(summary, bench, MEMORY_COLUMNS) if bench is not None and "step_memory_bytes" in bench.columns else None
    merged = None
    if table is not None:
        keys = [c for c in table.columns if c not in MEMORY_COLUMNS]
        merged = summary[keys].merge(table, on=keys, how="left")
    for column in MEMORY_COLUMNS:
        out[column] = merged[column].to_numpy() if merged is not None and column in merged.columns else np.nan
    return out


def add_step_blocks(summary: pd.DataFrame, bench: pd.DataFrame | None) -> pd.DataFrame:
    """``summary`` plus ``step_block_seconds``: the bench's seconds per step in each of its
    rounds (a tuple, in round order) at each trial's batch size and step keys; None where the
    bench has none (no `bsweep bench`, or one from before it kept every round). Two points'
    tuples from one bench run pair round by round (N5's sign test)."""
    out = summary.copy()
    got = _bench_rows(summary, bench) if bench is not None and "block_seconds" in bench.columns else None
    column: list = [None] * len(out)
    if got is not None:
        rows, keys = got
        rows = rows[rows["block_seconds"].notna()].drop_duplicates(keys, keep="last")

        def key(values) -> tuple[str, ...]:  # str: NaN and None keys match themselves
            return tuple(str(v) for v in values)

        lookup = {key(r[keys]): tuple(float(v) for v in r["block_seconds"]) for _, r in rows.iterrows()}
        column = [lookup.get(key(values)) for values in summary[keys].itertuples(index=False)]
    out["step_block_seconds"] = column
    return out


def calibrate_times(
    summary: pd.DataFrame, measurements: pd.DataFrame, bench: pd.DataFrame | None
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Put every time-based quantity on the calibrated basis when the benchmark covers the study.

    Trials that ran fused, in parallel or on a busy machine have measured seconds that say more
    about their neighbours than about their batch size. When ``bench`` has an isolated step time
    for every finished trial's batch size (and norm), this returns copies in which
    ``seconds_to_target`` = steps to target x that step time, ``samples_per_second`` = batch size /
    step time, and the measurements' ``train_seconds`` = step x step time; the measured values are
    kept as ``measured_seconds_to_target``, ``measured_samples_per_second`` and
    ``measured_train_seconds``. Otherwise the frames come back unchanged. The string says which
    basis is in use, for the report.
    """
    finished = summary["status"].isin(FINISHED_STATUSES)
    gaps = bench_gaps(summary, bench) if bench is not None else []
    if gaps:
        return summary, measurements, (
            f"measured: the calibrated benchmark does not tell apart {', '.join(gaps)} (rerun `bsweep bench`)")
    table = _bench_table(summary, bench)
    if table is None or not finished.any():
        return summary, measurements, "measured (no calibrated benchmark for this study)"
    keys = [c for c in table.columns if c != "seconds_per_step"]
    merged = summary[keys].merge(table, on=keys, how="left")
    per_step = pd.Series(merged["seconds_per_step"].to_numpy(), index=summary.index)
    missing = finished & per_step.isna()
    if missing.any():
        sizes = sorted(set(summary.loc[missing, "batch_size"].dropna().astype(int)))
        return summary, measurements, (
            "measured: the calibrated benchmark lacks batch sizes " + ", ".join(map(str, sizes)))
    out = summary.copy()
    out["measured_seconds_to_target"] = out["seconds_to_target"]
    out["measured_samples_per_second"] = out["samples_per_second"]
    out["seconds_to_target"] = out["steps_to_target"] * per_step
    # the test set's halves too: the tuned view selects on one and reports the other, and a
    # measured half would rank lrs by their fusion group's width and the machine's load
    for half in SPLIT_PREFIXES:
        if f"{half}steps_to_target" in out.columns:
            out[f"measured_{half}seconds_to_target"] = out[f"{half}seconds_to_target"]
            out[f"{half}seconds_to_target"] = out[f"{half}steps_to_target"] * per_step
    out["samples_per_second"] = out["batch_size"].astype(float) / per_step
    m = measurements.copy()
    step_time = m["trial_id"].map(pd.Series(per_step.to_numpy(), index=out["trial_id"]))
    m["measured_train_seconds"] = m["train_seconds"]
    m["train_seconds"] = m["step"] * step_time
    return out, m, (
        "calibrated: seconds = steps x the isolated step time of `bsweep bench` (bench.parquet) "
        "at the trial's batch size and norm; measured seconds are kept beside them. Throughput (C2) "
        "has one calibrated number per batch size, so its spread over seeds is zero.")
