"""Running a sweep's jobs as fused chunks: skip the finished, group by `plan.fusion_key`, order
and split the groups by predicted cost, and hand each chunk to a free worker (`workers`) or
backend (`backends`), where `train_group` trains it through `bsweep.train.trial.train_trials`.

The cost model predicts seconds of training from a trial's config alone (no torch): the
scheduler orders and splits its groups by it, and a sweep's progress weighs what remains by it
(`bsweep.sweep.progress`). A group is any list of objects with a `config` (a launcher job, a
planned trial)."""

from __future__ import annotations

import itertools
import logging
import os
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from bsweep.sweep.backends import Backend
from bsweep.sweep.workers import pool_running, worker_pool

log = logging.getLogger("bsweep")

# The launcher's name in Hydra's config store: `hydra/launcher=bsweep_fused`.
NAME = "bsweep_fused"


class HasConfig(Protocol):
    config: Any  # a resolved config: a dict, or a composed DictConfig


# A group's predicted seconds, to schedule the costliest first and to split a group that alone
# would outlast the others. Measured with 1 thread per worker, the default CNN on mnist1d, fused
# width 6 (docs/performance.md, "Trials and workers"); only their ratios matter here.
MEMBER_STEP_SECONDS = 2.5e-4  # per member-step at batch 1
MEMBER_SAMPLE_SECONDS = 2.7e-5  # per member-step per sample of the batch
EVAL_SAMPLE_SECONDS = 7.5e-6  # per member per test sample at each measurement
# A fused chunk's own cost: build, warm-up and records; the perf probe and width search are
# remembered by the machine.
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
    one when it is free (as `run_jobs` hands them out)."""
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


@dataclass
class Job:
    index: int  # position in the launcher's batch
    overrides: list[str]
    config: dict  # the resolved task config (no hydra node), as run_trial_task would get it


# Called with a finished group's (job, return value) pairs; returns the jobs to train next (the
# bracketing sweeper's next lrs for points whose trials have all ended), or none.
FollowUp = Callable[[list[tuple[Job, Any]]], list[Job]]


def run_jobs(jobs: list[Job], n_jobs: int = 1, follow_up: FollowUp | None = None,
             env: dict[str, str] | None = None, backend: Backend | None = None) -> dict[int, Any]:
    """Train `jobs` as fused groups; return {job index: the task's return value (a dict)}.

    A trial's own failure is written to its record and returned as a status, as with any
    launcher; only a crash of the machinery itself comes back as an exception. With `follow_up`,
    each group's end (or a finished trial's skip) may add jobs, trained as soon as a worker is
    free, and their return values come back too. `env`: variables set while each group trains
    (the launch's `hydra.job.env_set`), in worker processes as in this one.

    Work is handed out one fused chunk at a time, costliest first, each to the next free
    worker: a group wider than the width its worker picks trains its first chunk there and
    hands the other chunks back, to whichever worker is free next, instead of queueing them all
    behind one worker while another idles.

    `backend`: where chunks train (`backends`: submitit jobs, Ray tasks), `backend.slots` at a
    time; None: `n_jobs` worker processes here (`workers`), or this process for one.

    Ctrl-C or SIGTERM (`bsweep.interrupt`): no further chunk is handed out; the chunks training
    (signalled too, where the signal went to the process group) checkpoint and end, and every
    job not started comes back `interrupted` (skipped).
    """
    from bsweep.interrupt import stop_on_signals

    with stop_on_signals():
        return _run_jobs(jobs, n_jobs, follow_up, env, backend)


def _run_jobs(jobs: list[Job], n_jobs: int, follow_up: FollowUp | None, env: dict[str, str] | None,
              backend: Backend | None) -> dict[int, Any]:
    from bsweep.interrupt import requested

    slots = backend.slots if backend is not None else n_jobs
    out: dict[int, Any] = {}
    ready: list[tuple[float, list[Job], int | None]] = []  # (predicted seconds, jobs, width)

    def queue(groups: list[list[Job]], chunks: bool = False) -> None:
        """`chunks`: each group is one fused chunk already (a worker handed it back)."""
        ready.extend((cost(g), g, len(g) if chunks else None) for g in groups)
        ready.sort(key=lambda item: item[0], reverse=True)  # stable: equal costs keep their order

    def admit(new: list[Job]) -> None:
        if requested() is not None:
            out.update(not_started(new))
            return
        skipped, groups = _skip_finished_and_group(new)
        out.update(skipped)
        # here, splitting a group that would leave a worker idle shortens the wall time; a
        # cluster's slots are many, and filling them by splitting groups would undo fusion
        queue(balance(groups, n_jobs) if backend is None else groups)
        if skipped and follow_up is not None:
            admit(follow_up([(job, skipped[job.index]) for job in new if job.index in skipped]))

    def ended(group: list[Job], trained: Any) -> None:
        """`trained`: what `train_group` returned, or the exception that killed its worker."""
        if isinstance(trained, BaseException):  # every member the worker held failed
            results, rest = {job.index: trained for job in group}, []
        else:
            results, rest = trained
        queue(rest, chunks=True)
        out.update(results)
        if follow_up is not None:
            admit(follow_up([(job, results[job.index]) for job in group if job.index in results]))

    admit(jobs)
    log.info("bsweep_fused: %d trials to train in %d groups, %d %s",
             sum(len(g) for _, g, _ in ready), len(ready), slots,
             "processes" if backend is None else f"{type(backend).__name__.removesuffix('Backend').lower()} slots")
    if backend is None and (n_jobs <= 1 or (len(ready) <= 1 and follow_up is None and not pool_running(n_jobs))):
        while ready and requested() is None:
            _, group, width = ready.pop(0)
            ended(group, train_group(group, 1, 0, env or {}, width))
        out.update(not_started([job for _, group, _ in ready for job in group]))
        return out
    _hand_out(ready, out, ended, n_jobs, slots, env or {}, backend)
    return out


def _hand_out(ready: list[tuple[float, list[Job], int | None]], out: dict[int, Any],
              ended: Callable[[list[Job], Any], None], n_jobs: int, slots: int, env: dict[str, str],
              backend: Backend | None) -> None:
    """Hand the `ready` chunks, costliest first, to `slots` workers (or backend slots) one at a
    time until none is left or a stop is requested; `ended` takes each chunk's result."""
    from bsweep.interrupt import requested

    pool, numbers = backend or worker_pool(n_jobs), itertools.count()
    # a worker here places its chunk among n_jobs (threads, GPU by number); a submitit job or a
    # Ray task has its own allocation: the only job in it
    among = n_jobs if backend is None else 1
    pending: dict[Future, list[Job]] = {}
    while ready or pending:
        if requested() is not None:  # hand out nothing more; wait for the chunks training
            out.update(not_started([job for _, group, _ in ready for job in group]))
            ready.clear()
            if not pending:
                break
        while ready and len(pending) < slots:  # one chunk per slot: the rest stay reorderable
            _, group, width = ready.pop(0)
            number = next(numbers) if backend is None else 0
            pending[pool.submit(train_group, group, among, number, env, width)] = group
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            group = pending.pop(future)
            try:
                trained = future.result()
            except BaseException as e:
                trained = e
            ended(group, trained)


def not_started(jobs: list[Job]) -> dict[int, Any]:
    """{job index: return value} of jobs a stop request kept from starting."""
    from bsweep.plan import trial_id

    return {job.index: {"trial_id": trial_id(job.config), "status": "interrupted", "skipped": True} for job in jobs}


def _skip_finished_and_group(jobs: list[Job]) -> tuple[dict[int, Any], list[list[Job]]]:
    """({job index: return value} of the jobs whose trial finished before, the others grouped by
    `fusion_key`)."""
    from bsweep import records
    from bsweep.plan import absolute_results_dir, fusion_key, study_dir, trial_id

    skipped: dict[int, Any] = {}
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        cfg = job.config
        absolute_results_dir(cfg)  # workers may start elsewhere: pin it
        tid = trial_id(cfg)
        tdir = records.trial_dir(study_dir(_Dot(cfg)), tid)
        if records.is_finished(tdir):
            state = records.read_status(tdir)["status"]
            log.info("trial %s (%s): already %s, skipped", tid, _point(cfg), state)
            skipped[job.index] = {"trial_id": tid, "status": state, "skipped": True}
            continue
        groups.setdefault(fusion_key(cfg), []).append(job)
    return skipped, list(groups.values())


class _Dot(dict):
    """Attribute access on a plain config dict (for plan.study_dir)."""

    def __getattr__(self, name: str) -> Any:
        value = self[name]
        return _Dot(value) if isinstance(value, dict) else value


def _point(cfg: dict) -> str:
    from bsweep.plan import point  # not bsweep.train: the launching process imports no torch

    return point(_Dot(cfg))


def train_group(group: list[Job], jobs: int = 1, group_num: int = 0, env: dict[str, str] | None = None,
                width: int | None = None) -> tuple[dict[int, Any], list[list[Job]]]:
    """Train the first fused chunk of one fusion group in this process (one of `jobs` at once),
    with `env` set, and write its members' records (`bsweep.train.trial.train_trials`). Returns
    ({job index: return value} of the chunk's jobs, the group's other chunks, untrained).
    `width`: how many members fuse per chunk; None: as many as `perf.choose_width` picks."""
    from bsweep.interrupt import requested, stop_on_signals

    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with stop_on_signals():
            if requested() is not None:
                return not_started(group), []
            from bsweep.train.trial import train_trials  # torch: in the process that trains

            results, rest = train_trials([job.config for job in group], jobs, group_num, width, fused=True)
            return {group[i].index: value for i, value in results.items()}, [[group[i] for i in part] for part in rest]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
