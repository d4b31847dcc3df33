"""Calibrated throughput: isolated seconds per step against batch size (`bsweep bench`).

Measured seconds of a trial depend on what else ran beside it (parallel processes, fused
partners, other users). Steps do not. This module times the training step of the configured
model, norm, optimizer and device alone, so analysis can compute calibrated seconds-to-target =
steps-to-target x seconds_per_step at the trial's batch size.

    results/<study>/bench.parquet   one row per (batch_size, norm, model, device, fused_width):
        batch_size, norm, device, seconds_per_step (the best block), block_seconds (every
        round's block, per member, in round order), samples_per_second, fused_width,
        step_memory_bytes, peak_memory_bytes, memory_limit_bytes (C8, `step_memory`; width 1),
        data, model_width, model_depth, optim, amp, channels_last, threads, device_name,
        torch_version, time

`fused_width` 1 is the calibrated number (one trial alone). Rows with a larger width time one
step of the fused model of that many members and report it *per member*: seconds_per_step =
fused step / width, samples_per_second = width x batch / fused step; they show what fusion buys
at each batch size. Both time the engine's own training step (`perf.timed_step`).

A command: only the CLI and `reproduce` import this module.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from bsweep import records
from bsweep.config import RUNTIME_KEYS, STEP_GROUPS, Config, dotted, is_under
from bsweep.train.data import TensorData, load_data
from bsweep.train.device import environment, resolve_device, settle, synchronize
from bsweep.train.engine import Alone, autocast, train_step
from bsweep.train.perf import PerfChoice, choose, timed_step
from bsweep.plan import study_dir
from bsweep.train.timing import interleaved_blocks, time_steps

BENCH_FILE = "bench.parquet"
# Each point is timed in ROUNDS interleaved blocks of about BLOCK_SECONDS (the best counts; every
# round's block is kept). 16 of 0.05 s rather than the 3 of 0.25 s of `timing.time_steps`: on
# the shared 2-core VM a whole bench of norm_quick read weight norm against batch norm at batch
# 8 as 1.01 in one run and 1.11 in the next with 3 x 0.25 s; and 16 rounds give the paired
# comparison of two points (N5) a sign test that decides at 12 of 16 (a 3.8 % error rate),
# where 8 rounds of 0.1 s left batch 64 undecided.
BLOCK_SECONDS = 0.05
ROUNDS = 16
KEY_COLUMNS = ["batch_size", "norm", "data", "model_width", "model_depth", "optim", "device", "fused_width"]
# Every key of config.STEP_GROUPS is a column of a bench row under its dotted name
# (model.kernel_size, norm.groups, ...), so analysis can match a row to a study's points on
# every key the study sweeps (`analysis.timebase`), not just the above.


def step_keys(cfg: Config) -> dict[str, object]:
    """The config's keys under STEP_GROUPS, dotted as a composed config names them (a model of
    the user's own: model._target_ and its arguments), runtime keys (data.root ...) left out."""
    return {k: v for k, v in dotted(cfg).items() if is_under(k, STEP_GROUPS) and not is_under(k, RUNTIME_KEYS)}


def step_seconds(cfg: Config, data: TensorData, batch_size: int, width: int = 1,
                 perf: PerfChoice = PerfChoice(), **kw) -> float:
    """Seconds per step of `width` trials like `cfg` at `batch_size`, fused when width > 1 (the
    whole fused step); `kw` goes to `timing.time_steps` (block_seconds, blocks)."""
    return time_steps(timed_step(cfg, data, width, perf, batch_size), data.x_train.device, **kw)


@dataclass
class BenchPoint:
    cfg: Config  # model, norm, optimizer, data, device of the point
    batch_size: int


def points_of(configs: list[Config]) -> list[BenchPoint]:
    """One point per distinct (data, model, norm, optimizer, device, batch size) of a plan, by
    batch size: the norms at one batch size are neighbours in the order, so in a round their
    blocks run within a fraction of a second of each other (N5 compares them round by round; a
    norm_quick round is ~0.8 s), except in the few rounds whose start, which moves one point a
    round, falls between them."""
    seen, out = set(), []
    for c in configs:
        key = (repr(c.data), repr(c.model), repr(c.norm), repr(c.optim), c.device, c.batch_size)
        if key not in seen:
            seen.add(key)
            out.append(BenchPoint(c, c.batch_size))
    return sorted(out, key=lambda p: (p.batch_size, p.cfg.norm.kind))


def run_bench(configs: list[Config], widths: tuple[int, ...] = (1,), on_row=None,
              block_seconds: float = BLOCK_SECONDS, blocks: int = ROUNDS) -> pd.DataFrame:
    """Time every point of `configs` at each fused width in `widths`; rows as in BENCH_FILE.

    The points' blocks are interleaved: `blocks` rounds of one block (about `block_seconds`) of
    every point, each point's best block kept. A load that comes and goes while the bench runs
    (another process, the machine's own drift) then slows one round of every point rather than
    every block of a few: timed point after point, a norm_quick bench read weight norm at twice
    its step time at all three of its batch sizes, and N5's verdict (weight norm cheaper than
    batch norm) turned on it."""
    timed = []  # (point, width, device, perf, memory, step)
    datasets: dict = {}
    for point in points_of(configs):
        cfg = point.cfg
        device = settle(cfg.threads or torch.get_num_threads(), cfg.device)  # as a trial does (`trial.place`)
        key = (repr(cfg.data), str(device))
        if key not in datasets:
            datasets[key] = load_data(cfg.data, device)
        data = datasets[key]
        # the settings the study's trials ran with at this point (perf/ in the study folder)
        perf = choose(cfg, data, study_dir(cfg))
        # C8: one trial alone, in float32 whatever perf chose (bf16 autocast halves saved
        # activations where a CPU has it), so every machine accounts the same bytes
        memory = step_memory(cfg, data, point.batch_size)
        for width in widths:
            timed.append((point, width, device, perf, memory, timed_step(cfg, data, width, perf, point.batch_size)))
    rounds = interleaved_blocks([(step, device) for _, _, device, _, _, step in timed], block_seconds, blocks)
    rows = []
    for (point, width, device, perf, memory, _), fused_steps in zip(timed, rounds):
        seconds = min(fused_steps) / width
        row = {
            **row_key(point.cfg, point.batch_size, device, width),
            "seconds_per_step": seconds,
            "samples_per_second": point.batch_size / seconds,
            # every round's block, in round order: the blocks of one round ran close in time, so
            # two points compare round by round (N5's sign test, `analysis.claims.normalization`)
            "block_seconds": [t / width for t in fused_steps],
            **(memory if width == 1 else {}),
            **perf.describe(),
            "threads": torch.get_num_threads(),
            "time": time.time(),
        }
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return pd.DataFrame(rows)


def row_key(cfg: Config, batch_size: int, device: torch.device, width: int) -> dict[str, object]:
    """What a bench row is of: the point, the step's settings, the width and the machine (the
    device, its name, torch's version)."""
    env = environment(device)
    return {"batch_size": batch_size, "norm": cfg.norm.kind, "device": str(device), "fused_width": width,
            "data": cfg.data.name, "model_width": cfg.model.width, "model_depth": cfg.model.depth,
            "optim": cfg.optim.name, "model": cfg.model.name, **step_keys(cfg),
            "device_name": env["device_name"], "torch_version": env["torch_version"]}


def unmeasured(study_dir: Path, configs: list[Config]) -> list[Config]:
    """The configs of the points of `configs` whose step time alone (width 1) the study's
    bench.parquet lacks for this machine: the same device, device name and torch version, and
    every key the row is matched on, and every round's block (`block_seconds`). `bsweep
    reproduce` times only these again, so a rerun on
    finished studies judges on the same calibrated seconds instead of on a new bench taken
    under whatever load the machine has then."""
    table = read_bench(study_dir)
    points = points_of(configs)
    if table is None or table.empty:
        return [p.cfg for p in points]
    missing = []
    for point in points:
        want = row_key(point.cfg, point.batch_size, resolve_device(point.cfg.device), 1)
        match = pd.Series(True, index=table.index)
        for column, value in want.items():
            if column not in table.columns:
                match &= False
            elif value is None or (isinstance(value, float) and value != value):
                match &= table[column].isna()
            else:
                match &= table[column] == value
        # a row without its rounds (a bench from before they were kept) cannot pair (N5)
        match &= table["block_seconds"].notna() if "block_seconds" in table.columns else False
        if not match.any():
            missing.append(point.cfg)
    return missing


def calibrate(study_dir: Path, configs: list[Config], again: bool = False) -> int:
    """Time alone the points of `configs` whose step time the study's bench.parquet lacks for
    this machine (`unmeasured`; every point when `again`), and merge them in. Returns how many
    points it timed."""
    todo = configs if again else unmeasured(study_dir, configs)
    if todo:
        write_bench(study_dir, run_bench(todo, (1,)))
    return len(points_of(todo))


def write_bench(study_dir: Path, frame: pd.DataFrame) -> Path:
    """Merge `frame` into study_dir/bench.parquet (a new row replaces one with the same key)."""
    path = Path(study_dir) / BENCH_FILE
    if path.exists():
        try:
            old = pd.read_parquet(path)
            frame = pd.concat([old, frame], ignore_index=True)
            keys = list(dict.fromkeys(KEY_COLUMNS + [c for c in frame.columns if is_under(c, STEP_GROUPS)]))
            frame = frame.drop_duplicates(keys, keep="last")
        except Exception:  # a damaged table is replaced, not merged
            pass
    frame = frame.sort_values(["norm", "fused_width", "batch_size"]).reset_index(drop=True)
    records.atomic_write_bytes(path, frame.to_parquet(index=False))
    return path


def read_bench(study_dir: Path) -> pd.DataFrame | None:
    """The study's calibrated throughput table, or None when `bsweep bench` has not run."""
    path = Path(study_dir) / BENCH_FILE
    return pd.read_parquet(path) if path.exists() else None


# Memory of one training step against batch size (claim C8), for `bsweep bench`.
#
# Two numbers per point (model, norm, optimizer, batch size), for one trial alone:
#
# - **accounted** (every device): the parameters, their gradients, the optimizer's state, the
#   batch, and every tensor autograd saves for the backward pass (`saved_tensors_hooks`, each
#   storage counted once, parameters and the stored dataset left out). It follows from shapes and
#   dtypes only, so it is the same on every machine and the verdict reads it. It leaves out the
#   backward pass's transient buffers and the allocator's rounding, so it is a lower bound of the
#   process's need.
# - **peak** (CUDA only): `torch.cuda.max_memory_allocated` over one step, above what was
#   allocated before it, plus the parameters and optimizer state already held. NaN elsewhere: a
#   CPU allocator has no peak counter of torch's own, and the process's resident set mixes in the
#   interpreter, the libraries and the dataset.
#
# Also the memory the step could use: the limit the study sets (`study.memory_limit_gib`), else
# the device's (a GPU's total memory; on a CPU the machine's physical memory).
GIB = 2**30  # bytes


def device_memory_bytes(device: torch.device) -> int:
    """The memory a step on `device` can use at most: the GPU's, or the machine's RAM."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _nbytes(tensors) -> int:
    return sum(t.untyped_storage().nbytes() for t in tensors)


def step_memory(cfg: Config, data: TensorData, batch_size: int, perf: PerfChoice = PerfChoice()) -> dict[str, float]:
    """{"step_memory_bytes", "peak_memory_bytes", "memory_limit_bytes"} of one training step of
    `cfg`'s trial alone at `batch_size` (see the comment above `GIB`). Torch's RNGs are left as they
    were; nothing of the caller's is trained."""
    cfg = copy.deepcopy(cfg)
    cfg.batch_size = min(batch_size, data.n_train)
    device = data.x_train.device
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_available() else []):
        members = Alone(cfg, data, perf)
    members.set_lr([cfg.lr * 1e-3])
    idx = torch.arange(cfg.batch_size, device=device).view(1, -1)
    train_step(members, data, idx, perf.amp)  # the optimizer's state exists from the first step on
    params = list(members.model.parameters())
    state = [v for s in members.opt.state.values() for v in s.values() if torch.is_tensor(v) and v.device == device]
    held = _nbytes(params) + _nbytes(state)

    skip = {t.untyped_storage().data_ptr() for t in [*params, data.x_train, data.y_train]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast(device, perf.amp):
            losses = members.losses(data, idx)
    losses.backward()
    grads = _nbytes(p.grad for p in params if p.grad is not None)
    members.optimizer_step()
    accounted = held + grads + sum(saved.values())  # the batch is among the saved tensors

    peak = float("nan")
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        train_step(members, data, idx, perf.amp)
        synchronize(device)
        peak = float(torch.cuda.max_memory_allocated(device) - before + held)
    limit = cfg.study.memory_limit_gib * GIB if cfg.study.memory_limit_gib else device_memory_bytes(device)
    return {"step_memory_bytes": float(accounted), "peak_memory_bytes": peak, "memory_limit_bytes": float(limit)}
