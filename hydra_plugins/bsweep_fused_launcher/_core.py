"""The work of the `bsweep_fused` launcher, free of Hydra: group jobs, skip finished trials,
train each group fused (`bsweep.train.engine.train` over `bsweep.train.fused.Fused`), and keep each member's
record through the same lifecycle as the runner (`records.take`, `records.Attempt`).

A group that raises is retried from step 0 at half the width, down to one member, so only a
member that fails alone is recorded failed (or oom); each retry is a line in claims.jsonl."""

from __future__ import annotations

import atexit
import itertools
import logging
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.context import BaseContext
from typing import Any, Callable

from bsweep.sweep.executor import balance, cost

from ._backends import Backend

log = logging.getLogger("bsweep")

# The launcher's name in Hydra's config store: `hydra/launcher=bsweep_fused`.
NAME = "bsweep_fused"


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

    A trial's own failure is written to its record and returned as a status, as the runner
    does; only a crash of the machinery itself comes back as an exception. With `follow_up`,
    each group's end (or a finished trial's skip) may add jobs, trained as soon as a worker is
    free, and their return values come back too. `env`: variables set while each group trains
    (the launch's `hydra.job.env_set`), in worker processes as in this one.

    Work is handed out one fused chunk at a time, costliest first, each to the next free
    worker: a group wider than the width its worker picks trains its first chunk there and
    hands the other chunks back, to whichever worker is free next, instead of queueing them all
    behind one worker while another idles.

    `backend`: where chunks train (`_backends`: submitit jobs, Ray tasks), `backend.slots` at a
    time; None: `n_jobs` worker processes here, or this process for one.

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
            pending[pool.submit(train_group, group, among, number, env or {}, width)] = group
        done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
        for future in done:
            group = pending.pop(future)
            try:
                trained = future.result()
            except BaseException as e:
                trained = e
            ended(group, trained)
    return out


# The worker processes outlive one launch: `bsweep reproduce` sweeps five studies in one process,
# a sweeper without the follow-up hook launches once per round, and two fresh workers took
# ~3.7 s on the 2-core CPU before their first group (spawn, `import torch`, torch.optim's first
# use importing torch._dynamo) and ~1.4 s to exit. A pool is reused while the worker count and
# what workers copied when they started (working directory, environment) are unchanged; a
# launch's own variables (`hydra.job.env_set`) travel with each group instead. Python's exit
# shuts it down.
_POOL: dict = {}
# What a worker imports before its first group: the engine, the fused model and the timing
# helper (bsweep.train.perf), data and placement (bsweep.train.trial); torch with them. Not torch._dynamo,
# which a torch.optim object imports on its first use (~1 s of CPU): fused groups and SGD trials
# alone never build one (`engine.FunctionalSGD`).
WORKER_MODULES = ("bsweep.train.perf", "bsweep.train.trial")
# On Linux workers fork from a server process that imported WORKER_MODULES once
# (multiprocessing's forkserver with a preload), not each from a fresh interpreter: `import
# torch` is 2.5-4.4 s of one core on the 2-core CPUs, paid once per sweep instead of once per
# worker, and started early (`start_server`) it overlaps the launching process's planning. The
# server only imports: torch's thread pools start at first use, in the worker; the threads
# imports do start (numpy's OpenBLAS server, pyarrow's jemalloc background thread) have fork
# handlers, as PyTorch's DataLoader workers rely on when they fork from a busier process.
# `_SERVER["env"]`: the environment it started with, which its children inherit.
_SERVER: dict = {}
# The server's last import, after which it outlives a SIGTERM to the process group (`_server`).
SERVER_MODULE = "hydra_plugins.bsweep_fused_launcher._server"


def forks_from_server() -> bool:
    """Whether workers fork from the preloaded server here (Linux), rather than spawn."""
    return sys.platform == "linux" and "forkserver" in multiprocessing.get_all_start_methods()


def start_server() -> None:
    """Start the fork server now if it is not running (or runs with another environment than
    this process's), without waiting for its imports: they overlap whatever the caller does
    until `worker_pool` forks from it. Nothing where workers spawn."""
    if not forks_from_server():
        return
    from multiprocessing import forkserver

    env = dict(os.environ)
    if _SERVER.get("env") != env:
        stop_server()  # a server started elsewhere, or before the environment changed
    get_context("forkserver").set_forkserver_preload([*WORKER_MODULES, SERVER_MODULE])
    forkserver.ensure_running()  # starts it again if it died
    # At exit (after the pools have joined their workers, which the server has reaped) stop the
    # server and wait for it: no process outlives the sweep, and the workers' resource use
    # reaches this process's parent through it (`getrusage(RUSAGE_CHILDREN)`: the benchmark's
    # peak memory). Stopped, not asked to leave: a process with torch imported took ~2 s of the
    # sweep's exit to tear its modules down. Registered once.
    atexit.unregister(stop_server)
    atexit.register(stop_server)
    _SERVER["env"] = env


def stop_server() -> None:
    """Stop the fork server at once, mid-import too (a sweep that found bad input after
    `start_server`), or nothing where none runs. The stdlib offers no public way, so this uses
    multiprocessing's own stop (`ForkServer._stop`, what its tests use), after a SIGKILL: the
    server ignores SIGTERM (`_server`), and the stop alone waits for its imports to end and for
    every worker forked from it (each holds the pipe whose end tells the server to leave)."""
    if not forks_from_server():  # (multiprocessing.forkserver is Unix-only)
        return
    from multiprocessing import forkserver

    server = forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server._stop()
    _SERVER.clear()


def _context() -> BaseContext:
    """Where new workers come from: the fork server (started now if need be), else spawn."""
    if forks_from_server():
        start_server()
        return get_context("forkserver")
    return get_context("spawn")


def not_started(jobs: list[Job]) -> dict[int, Any]:
    """{job index: return value} of jobs a stop request kept from starting."""
    from bsweep.plan import trial_id

    return {job.index: {"trial_id": trial_id(job.config), "status": "interrupted", "skipped": True} for job in jobs}


def workers_for(n_jobs: int | None) -> int:
    """The launcher's `n_jobs` as a count of processes: <= 0 or null is one per CPU core."""
    from bsweep.placement import cores

    return n_jobs if n_jobs and n_jobs > 0 else cores()


def _pool_key(workers: int) -> tuple:
    # what a worker takes from this process when it starts, and keeps
    return (workers, os.getcwd(), tuple(sorted(os.environ.items())))


def pool_running(workers: int) -> bool:
    """Whether `worker_pool(workers)` would hand out a pool that is already started."""
    pool = _POOL.get("pool")
    return pool is not None and _POOL["key"] == _pool_key(workers) and not getattr(pool, "_broken", False)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """This process's pool of `workers` worker processes, started now if there is none (or the
    last one broke, or the environment changed), each with WORKER_MODULES imported."""
    if pool_running(workers):
        return _POOL["pool"]
    if "pool" in _POOL:
        _POOL.pop("pool").shutdown(wait=True, cancel_futures=True)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_warm)
    for _ in range(workers):  # a worker starts per waiting task: start them all at once
        pool.submit(int)
    _POOL.update(pool=pool, key=_pool_key(workers))
    return pool


def _warm() -> None:
    """A new worker's imports, before its first group (already done where it forked from the
    server), and its quick exit."""
    import importlib

    for module in WORKER_MODULES:
        importlib.import_module(module)
    # Between groups a worker leaves Ctrl-C to the launching process, which hands out no more
    # work; while it trains a group, Ctrl-C and SIGTERM stop it at a step boundary
    # (`train_group`). SIGTERM otherwise ends it, as the pool expects of a broken worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    atexit.register(_exit_now)


def _exit_now() -> None:
    """A worker's last act once the pool has shut it down (every group's records are written by
    then): flush the logs and leave without tearing down torch's modules one by one, which took
    ~1 s a worker on the 2-core CPU with torch._dynamo loaded, while the sweep waited."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed stream: nothing left to lose
            pass
    os._exit(0)


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
    from bsweep.plan import point  # not the runner's module: the launching process has no torch

    return point(_Dot(cfg))


def train_group(group: list[Job], jobs: int = 1, group_num: int = 0, env: dict[str, str] | None = None,
                width: int | None = None) -> tuple[dict[int, Any], list[list[Job]]]:
    """Train the first fused chunk of one fusion group in this process (one of `jobs` at once),
    with `env` set, and write its members' records. Returns ({job index: return value} of the
    chunk's jobs, the group's other chunks, untrained). `width`: how many members fuse per chunk;
    None: as many as `perf.choose_width` picks for the group."""
    from bsweep.interrupt import requested, stop_on_signals

    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        with stop_on_signals():
            if requested() is not None:
                return not_started(group), []
            return _train_group(group, jobs, group_num, width)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _train_group(group: list[Job], jobs: int, group_num: int, width: int | None) -> tuple[dict[int, Any], list[list[Job]]]:
    from bsweep.train.trial import train_trials

    results, rest = train_trials([job.config for job in group], jobs, group_num, width)
    return {group[i].index: value for i, value in results.items()}, [[group[i] for i in part] for part in rest]
