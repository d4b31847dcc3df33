"""Calibrated throughput: isolated seconds per step against batch size (`bsweep bench`).

Measured seconds of a trial depend on what else ran beside it (parallel processes, fused
partners, other users). Steps do not. This module times the training step of the configured
model, norm, optimizer and device alone, so analysis can compute calibrated seconds-to-target =
steps-to-target x seconds_per_step at the trial's batch size.

    results/<study>/bench.parquet   one row per (batch_size, norm, model, device, fused_width):
        batch_size, norm, device, seconds_per_step, samples_per_second, fused_width,
        data, model_width, model_depth, optim, amp, channels_last, threads, device_name,
        torch_version, time

`fused_width` 1 is the calibrated number (one trial alone, `train.train_step`, the step
`train_trial` times). Rows with a larger width time one step of the fused model of that many
members (`fused._step`) and report it *per member*: seconds_per_step = fused step / width,
samples_per_second = width x batch / fused step; they show what fusion buys at each batch size.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import pandas as pd
import torch

from bsweep.config import Config
from bsweep.data import TensorData
from bsweep.perf import PerfChoice

BENCH_FILE = "bench.parquet"
KEY_COLUMNS = ["batch_size", "norm", "data", "model_width", "model_depth", "optim", "device", "fused_width"]
# Seconds of timed steps per block, and blocks per point: the best block is kept (a busy machine
# only ever slows a block down, so the minimum is the closest to "isolated").
BLOCK_SECONDS = 0.25
BLOCKS = 3


def steps_per_block(step: Callable[[], None], device: torch.device, block_seconds: float,
                    min_steps: int = 3, max_steps: int = 2000) -> int:
    """Warm `step` up (allocator, kernel choice), then how many calls fill about `block_seconds`."""
    from bsweep.train import synchronize

    for _ in range(3):
        step()
    synchronize(device)
    t = time.perf_counter()
    step()
    synchronize(device)
    one = max(time.perf_counter() - t, 1e-6)
    return max(min_steps, min(max_steps, int(block_seconds / one)))


def time_block(step: Callable[[], None], device: torch.device, n: int) -> float:
    """Mean seconds per call over `n` calls of `step()`, the device synchronized at both ends."""
    from bsweep.train import synchronize

    synchronize(device)
    t = time.perf_counter()
    for _ in range(n):
        step()
    synchronize(device)
    return (time.perf_counter() - t) / n


def time_steps(step: Callable[[], None], device: torch.device, block_seconds: float = BLOCK_SECONDS,
               blocks: int = BLOCKS) -> float:
    """Best-of-`blocks` mean seconds per call of `step()`, each block about `block_seconds`."""
    n = steps_per_block(step, device, block_seconds)
    return min(time_block(step, device, n) for _ in range(blocks))


def single_step(cfg: Config, data: TensorData, batch_size: int, perf: PerfChoice = PerfChoice()) -> Callable[[], None]:
    """One training step of a trial like `cfg` at `batch_size` on a random batch (the step
    `train_trial` runs, with a tiny lr so that repeating it cannot diverge). Seeds torch's
    global RNG with `cfg.seed` to initialize the model."""
    from bsweep.models import make_cnn
    from bsweep.train import make_optimizer, prepare_model, train_step

    device = data.x_train.device
    amp, cl = perf.amp, perf.channels_last
    torch.manual_seed(cfg.seed)
    model = prepare_model(make_cnn(data.input_shape, data.n_classes, cfg.model, cfg.norm), device, cl, perf.compile)
    opt = make_optimizer(cfg.optim, model.parameters(), cfg.lr * 1e-3)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)
    n = data.n_train

    def step() -> None:
        perm = torch.randint(0, n, (batch_size,), generator=gen, device=device)
        train_step(model, opt, data.x_train[perm], data.y_train[perm], amp, cl)

    return step


def single_step_seconds(cfg: Config, data: TensorData, batch_size: int, perf: PerfChoice = PerfChoice(), **kw) -> float:
    """Seconds per step of one trial like `cfg` at `batch_size`, the step train_trial runs."""
    return time_steps(single_step(cfg, data, batch_size, perf), data.x_train.device, **kw)


def fused_step_seconds(cfg: Config, data: TensorData, batch_size: int, width: int,
                       perf: PerfChoice = PerfChoice(), **kw) -> float:
    """Seconds per step of a fused model of `width` trials like `cfg` (the whole fused step)."""
    import copy

    from bsweep import fused

    c = copy.deepcopy(cfg)
    c.batch_size = batch_size
    device = data.x_train.device
    amp, cl = perf.amp, perf.channels_last
    group = fused.build_group([c] * width, data, perf.compile)
    lr_full = group.base_lr[group.member_of] * 1e-3
    gen = torch.Generator(device=device)
    gen.manual_seed(0)

    def step() -> None:
        idx = torch.randint(0, data.n_train, (width, batch_size), generator=gen, device=device)
        fused._step(group, data, idx, lr_full, amp, cl)

    return time_steps(step, device, **kw)


@dataclass
class BenchPoint:
    cfg: Config  # model, norm, optimizer, data, device of the point
    batch_size: int


def points_of(configs: list[Config]) -> list[BenchPoint]:
    """One point per distinct (data, model, norm, optimizer, device, batch size) of a plan."""
    seen, out = set(), []
    for c in configs:
        key = (repr(c.data), repr(c.model), repr(c.norm), repr(c.optim), c.device, c.batch_size)
        if key not in seen:
            seen.add(key)
            out.append(BenchPoint(c, c.batch_size))
    return sorted(out, key=lambda p: (p.cfg.norm.kind, p.batch_size))


def run_bench(configs: list[Config], widths: tuple[int, ...] = (1,), on_row=None, **kw) -> pd.DataFrame:
    """Time every point of `configs` at each fused width in `widths`; rows as in BENCH_FILE."""
    from bsweep.data import load_data
    from bsweep.perf import choose
    from bsweep.plan import study_dir
    from bsweep.runner import environment
    from bsweep.train import resolve_device

    rows = []
    cache: dict = {}
    for point in points_of(configs):
        cfg = point.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.set_flush_denormal(True)  # as the runner does
        device = resolve_device(cfg.device)
        key = (repr(cfg.data), str(device))
        if key not in cache:
            cache.clear()
            cache[key] = load_data(cfg.data, device)
        data = cache[key]
        env = environment(device)
        # the settings the study's trials ran with at this point (perf/ in the study folder)
        perf = choose(cfg, data, study_dir(cfg))
        for width in widths:
            if width == 1:
                seconds = single_step_seconds(cfg, data, point.batch_size, perf, **kw)
            else:
                seconds = fused_step_seconds(cfg, data, point.batch_size, width, perf, **kw) / width
            row = {
                "batch_size": point.batch_size,
                "norm": cfg.norm.kind,
                "device": str(device),
                "seconds_per_step": seconds,
                "samples_per_second": point.batch_size / seconds,
                "fused_width": width,
                "data": cfg.data.name,
                "model_width": cfg.model.width,
                "model_depth": cfg.model.depth,
                "optim": cfg.optim.name,
                **perf.describe(),
                "threads": torch.get_num_threads(),
                "device_name": env["device_name"],
                "torch_version": env["torch_version"],
                "time": time.time(),
            }
            rows.append(row)
            if on_row is not None:
                on_row(row)
    return pd.DataFrame(rows)


def write_bench(study_dir: Path, frame: pd.DataFrame) -> Path:
    """Merge `frame` into study_dir/bench.parquet (a new row replaces one with the same key)."""
    from bsweep import records

    path = Path(study_dir) / BENCH_FILE
    if path.exists():
        try:
            old = pd.read_parquet(path)
            frame = pd.concat([old, frame], ignore_index=True).drop_duplicates(KEY_COLUMNS, keep="last")
        except Exception:  # a damaged table is replaced, not merged
            pass
    frame = frame.sort_values(["norm", "fused_width", "batch_size"]).reset_index(drop=True)
    records.atomic_write_bytes(path, frame.to_parquet(index=False))
    return path


def read_bench(study_dir: Path) -> pd.DataFrame | None:
    """The study's calibrated throughput table, or None when `bsweep bench` has not run."""
    path = Path(study_dir) / BENCH_FILE
    return pd.read_parquet(path) if path.exists() else None
