"""The predictor's training runs (`bsweep predict`): short runs to the target from a given
state, the states they pass through, the gradient noise at those states, and step times.

Every run is the engine's own training loop (`engine.train`) on one trial alone, with the
config's model, data, norm and optimizer; only batch size, lr and budget are the predictor's.
Nothing here writes a record: the predictor's runs are not trials of the study.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch

from bsweep.config import BudgetConfig, Config
from bsweep.train.data import TensorData
from bsweep.train.engine import Alone, PerfChoice, train
from bsweep.train.gradient_noise import measure_microbatch_noise
from bsweep.train.perf import timed_step
from bsweep.train.timing import interleaved_blocks

# A run keeps at most this many states (model and optimizer) of the points it passed, thinned
# evenly when it would keep more: a model of one's own may be large.
MAX_SNAPSHOTS = 64


def run_config(base: Config, batch_size: int, lr: float, max_steps: int, seed: int | None = None) -> Config:
    """`base` trained at `batch_size` and `lr` (no lr scaling) for at most `max_steps` steps,
    stopping at the target, with a constant lr and no gradient measurements of its own."""
    cfg = copy.deepcopy(base)
    cfg.batch_size, cfg.lr, cfg.lr_scaling = int(batch_size), float(lr), "none"
    cfg.seed = base.seed if seed is None else seed
    cfg.study.budget = BudgetConfig(epochs=None, steps=int(max_steps), rule="any", stop_at_target=True)
    cfg.schedule.name, cfg.schedule.warmup_fraction = "constant", 0.0
    cfg.noise.enabled, cfg.noise.cosine_at = False, []
    return cfg


class _Snapshots:
    """An `engine.Checkpoint` that keeps the members' state at every measurement point (in
    memory) and never resumes: the branch points of the pilot."""

    every_seconds = 0.0

    def __init__(self) -> None:
        self.states: dict[int, dict] = {}

    def load(self) -> dict | None:
        return None

    def save(self, state: dict) -> None:
        self.states[int(state["step"])] = state["members"]
        if len(self.states) > MAX_SNAPSHOTS:
            for step in sorted(self.states)[1::2]:
                del self.states[step]


@dataclass
class Run:
    """One predictor run: its config, measurement rows, status, and the states it kept."""

    cfg: Config
    rows: list[dict]
    status: str
    seconds: float  # wall seconds of the run: warm-up, training and evaluation
    states: dict[int, dict] = field(default_factory=dict)

    @property
    def steps_to_target(self) -> float:
        """Steps at the first measurement whose test accuracy reached the target (the
        analysis's own rule, `metrics.summarize_trials`); NaN when none did."""
        hit = next((r["step"] for r in self.rows if r["step"] > 0 and r["test_acc"] >= self.cfg.study.target), None)
        return math.nan if hit is None else float(hit)

    @property
    def final_test_loss(self) -> float:
        return self.rows[-1]["test_loss"] if self.rows else math.nan

    @property
    def train_seconds(self) -> float:
        return self.rows[-1]["train_seconds"] if self.rows else math.nan


def train_run(cfg: Config, data: TensorData, perf: PerfChoice, start: dict | None = None,
              keep_states: bool = False) -> Run:
    """Train `cfg` alone from `start` (a members state of another run: weights and optimizer
    state) or from its own initialization; `keep_states`: keep the state at every measurement
    point (thinned to MAX_SNAPSHOTS)."""
    members = Alone(cfg, data, perf)
    if start is not None:
        members.load_state(start)
    keeper = _Snapshots() if keep_states else None
    began = time.perf_counter()
    [result] = train(members, [cfg], data, perf, checkpoint=keeper)
    return Run(cfg, result.measurements, result.status, time.perf_counter() - began,
               keeper.states if keeper else {})


def noise_at(cfg: Config, data: TensorData, perf: PerfChoice, state: dict, micro_batches: int,
             generator: torch.Generator) -> dict[str, float]:
    """Unbiased |G|^2 and tr(Sigma) at `state` from `micro_batches` gradients of the training
    batch size, each taken as a training step takes it (`measure_microbatch_noise`)."""
    members = Alone(cfg, data, perf)
    members.load_state(state)
    return measure_microbatch_noise(members.model, lambda idx: members.losses(data, idx[None])[0],
                                    data.n_train, cfg.batch_size, micro_batches, generator)


def step_seconds_by_batch(cfg: Config, data: TensorData, perf: PerfChoice, batch_sizes: list[int],
                          block_seconds: float, rounds: int) -> dict[int, float]:
    """Seconds per training step of `cfg` alone at each batch size, the best of `rounds`
    interleaved blocks (`timing.interleaved_blocks`, as `bsweep bench` times them)."""
    device = data.x_train.device
    steps = [(timed_step(cfg, data, 1, perf, b), device) for b in batch_sizes]
    blocks = interleaved_blocks(steps, block_seconds, rounds, min_steps=1)
    return {b: min(times) for b, times in zip(batch_sizes, blocks)}
