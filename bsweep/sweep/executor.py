"""Predicted seconds of training, from a trial's config alone (no torch): the `bsweep_fused`
launcher orders and splits its groups by it, and a sweep's progress weighs what remains by it
(`bsweep.sweep.progress`). A group is any list of objects with a `config` (a launcher job, a planned
trial)."""

from __future__ import annotations

from typing import Any, Protocol, Sequence


class HasConfig(Protocol):
    config: Any  # a resolved config: a dict, or a composed DictConfig


# A group's predicted seconds, to schedule the costliest first and to split a group that alone
# would outlast the others. Measured on the 2-core AVX-512 EPYC, 1 thread per worker, default
# CNN on mnist1d, fused width 6 (an AVX2 CPU is ~3x slower throughout; only ratios matter here):
MEMBER_STEP_SECONDS = 2.5e-4  # per member-step at batch 1 (0.27 ms measured)
MEMBER_SAMPLE_SECONDS = 2.7e-5  # per member-step per sample of the batch (0.45 ms at 4, 0.67 ms at 16)
EVAL_SAMPLE_SECONDS = 7.5e-6  # per member per test sample at each measurement (45 ms for 6 x 1000)
# A fused chunk's own cost: build, warm-up and records, ~4 s over a worker's 20 chunks of
# claims_quick (0.25 budget); the perf probe and width search are remembered by the machine.
CHUNK_SETUP_SECONDS = 0.2
# (train, test) samples assumed for a dataset of the user's own that states no n_train/n_test:
# costs only order and split groups, and a wrong guess scales every group of that dataset alike.
UNKNOWN_DATA_SIZES = (10_000, 2_000)


def cost(group: Sequence[HasConfig]) -> float:
    """Predicted seconds of training `group` fused in one worker."""
    from bsweep.config import FULL_SIZES
    from bsweep.plan import structured
    from bsweep.train.schedule import measurement_steps, total_steps

    cfg = structured(group[0].config)
    # a dataset of the user's own with no n_train / n_test: sizes unknown without loading it
    n_train, n_test = cfg.data.n_train, cfg.data.n_test
    guess = FULL_SIZES.get(cfg.data.name, UNKNOWN_DATA_SIZES)
    steps = total_steps(cfg.study.budget, n_train or guess[0], cfg.batch_size)
    evals = len(measurement_steps(cfg.study.eval, cfg.batch_size, steps))
    n_test = n_test or guess[1]
    return CHUNK_SETUP_SECONDS + len(group) * (steps * (MEMBER_STEP_SECONDS + MEMBER_SAMPLE_SECONDS * cfg.batch_size)
                                               + evals * n_test * EVAL_SAMPLE_SECONDS)


def makespan(costs: list[float], workers: int) -> float:
    """Predicted wall seconds when `workers` take the groups costliest first, each the next
    one when it is free (as the fused launcher's `run_jobs` hands them out)."""
    loads = [0.0] * max(1, workers)
    for c in sorted(costs, reverse=True):
        loads[loads.index(min(loads))] += c
    return max(loads)


def balance(groups: list[list[HasConfig]], workers: int) -> list[list[HasConfig]]:
    """The groups to hand out, costliest first. The costliest group is split in two while it
    leaves a worker idle or costs more than the workers' fair share (total / workers), and the
    split shortens the predicted wall time (`makespan`): a lone group of 6 on 2 workers trains
    as 3 + 3. Each part pays its own set-up and a narrower fusion, so nothing else is split."""
    groups = [g for g in groups if g]
    costs = [cost(g) for g in groups]
    while workers > 1 and groups:
        i = max(range(len(groups)), key=costs.__getitem__)
        # only a group that outlasts the workers' fair share, or one that leaves a worker
        # idle, is split: splitting merely to pack tighter costs fusion width the model ignores
        if len(groups[i]) < 2 or (len(groups) >= workers and costs[i] <= sum(costs) / workers):
            break
        half = (len(groups[i]) + 1) // 2
        parts = [groups[i][:half], groups[i][half:]]
        trial = costs[:i] + [cost(p) for p in parts] + costs[i + 1:]
        # with fewer groups than workers someone idles anyway: a split that does not lengthen
        # the wall time is taken (the next split may then shorten it); after that, only gains
        before, after = makespan(costs, workers), makespan(trial, workers)
        if after > before or (after == before and len(groups) >= workers):
            break
        groups[i:i + 1], costs = parts, trial
    order = sorted(range(len(groups)), key=costs.__getitem__, reverse=True)
    return [groups[i] for i in order]
