"""The work of the `bsweep_fused` launcher, free of Hydra: group jobs, skip finished trials,
train each group fused (`bsweep.engine.train` over `bsweep.fused.Fused`), and keep each member's
record through the same lifecycle as the runner (`records.take`, `records.Attempt`).

A group that raises is retried from step 0 at half the width, down to one member, so only a
member that fails alone is recorded failed (or oom); each retry is a line in claims.jsonl."""

from __future__ import annotations

import logging
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

log = logging.getLogger("bsweep")


@dataclass
class Job:
    index: int  # position in the launcher's batch
    overrides: list[str]
    config: dict  # the resolved task config (no hydra node), as run_trial_task would get it


def run_jobs(jobs: list[Job], n_jobs: int = 1) -> dict[int, Any]:
    """Train `jobs` as fused groups; return {job index: the task's return value (a dict)}.

    A trial's own failure is written to its record and returned as a status, as the runner
    does; only a crash of the machinery itself comes back as an exception.
    """
    from bsweep import records
    from bsweep.fused import fusion_key
    from bsweep.plan import study_dir, trial_id
    from bsweep.runner import absolute_results_dir

    out: dict[int, Any] = {}
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        cfg = job.config
        absolute_results_dir(cfg)  # workers may start elsewhere: pin it
        tid = trial_id(cfg)
        tdir = records.trial_dir(study_dir(_Dot(cfg)), tid)
        if records.is_finished(tdir):
            state = records.read_status(tdir)["status"]
            log.info("trial %s (%s): already %s, skipped", tid, _point(cfg), state)
            out[job.index] = {"trial_id": tid, "status": state, "skipped": True}
            continue
        groups.setdefault(fusion_key(cfg), []).append(job)
    todo = sorted(groups.values(), key=_cost, reverse=True)  # largest first: even finish
    log.info("bsweep_fused: %d trials to train in %d groups, %d processes", sum(map(len, todo)), len(todo), n_jobs)
    if n_jobs <= 1 or len(todo) <= 1:
        for group in todo:
            out.update(train_group(group))
        return out
    workers = min(n_jobs, len(todo))
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(train_group, group, workers, i): group for i, group in enumerate(todo)}
        for future, group in futures.items():
            try:
                out.update(future.result())
            except BaseException as e:  # the worker died: every unfinished member failed
                for job in group:
                    out[job.index] = e
    return out


def _cost(group: list[Job]) -> float:
    """Rough seconds of a group on a CPU, to start the longest first (any monotone guess does)."""
    from bsweep.config import train_size
    from bsweep.runner import structured
    from bsweep.schedule import total_steps

    cfg = structured(group[0].config)
    steps = total_steps(cfg.study.budget, train_size(cfg.data), cfg.batch_size)
    return len(group) * steps * (1e-4 + 2e-5 * cfg.batch_size)


class _Dot(dict):
    """Attribute access on a plain config dict (for plan.study_dir)."""

    def __getattr__(self, name: str) -> Any:
        value = self[name]
        return _Dot(value) if isinstance(value, dict) else value


def _point(cfg: dict) -> str:
    from bsweep.runner import point

    return point(_Dot(cfg))


def train_group(group: list[Job], jobs: int = 1, group_num: int = 0) -> dict[int, Any]:
    """Train one fusion group in this process (one of `jobs` at once) and write every member's
    record. Members are claimed chunk by chunk, just before they train."""
    from functools import cache

    from bsweep import records
    from bsweep.device import environment
    from bsweep.fused import split
    from bsweep.perf import choose, choose_width
    from bsweep.plan import study_dir, trial_id
    from bsweep.runner import data_for, place, structured

    cfgs = [structured(job.config) for job in group]
    first = cfgs[0]
    device = place(first, jobs, group_num)
    sdir = study_dir(first)

    @cache
    def setup():  # the data and perf settings; raises inside a member's attempt when they fail
        data = data_for(first.data, device)
        return data, choose(first, data, sdir)  # autocast, memory format: as the runner

    try:
        data, perf = setup()
        width = choose_width(first, data, len(group), perf)
    except Exception:  # unloadable data: each member records the error alone, below
        width = 1
    out: dict[int, Any] = {}
    for chunk in split(list(zip(group, cfgs)), width):
        members = []
        for job, cfg in chunk:
            tid = trial_id(job.config)
            held = records.take(sdir, tid, job.config, fused=True)
            if isinstance(held, str):
                log.info("trial %s (%s): %s, skipped", tid, _point(job.config), held)
                out[job.index] = {"trial_id": tid, "status": held, "skipped": True}
            else:
                members.append((job, cfg, held))
        if members:
            with records.Attempt([h for _, _, h in members], {**environment(device), "parallel_jobs": jobs}) as attempt:
                out.update(_train_members(attempt, members, setup, device))
    return out


def _train_members(attempt, members: list, setup, device) -> dict[int, Any]:
    """Train `members` fused; on an exception, again from step 0 in two halves, down to one
    member, which alone is recorded failed. Returns {job index: the task's return value}."""
    import math

    from bsweep import records
    from bsweep.device import free_memory
    from bsweep.engine import train
    from bsweep.fused import build_members, split

    cfgs = [cfg for _, cfg, _ in members]
    held = [h for _, _, h in members]
    ids = [h.trial_id for h in held]
    try:
        data, perf = setup()
        attempt.note(held, **perf.describe(), fused_width=len(members), fused_with=ids)
        for job, _, h in members:
            log.info("trial %s (%s): training fused (%d members) on %s", h.trial_id, _point(job.config),
                     len(members), data.x_train.device)
        results = train(build_members(cfgs, data, perf), cfgs, data, perf)
    except Exception as e:  # never the sweep's end: retry smaller, or record the one member
        tb, error = traceback.format_exc(), records.error_line(e)
        status = attempt.fail(held[0], e, tb) if len(members) == 1 else None
        del e  # drop the frames (and the tensors they hold) before the next attempt
        free_memory(device)
        if status is not None:
            log.error("trial %s (%s): %s: %s", ids[0], _point(members[0][0].config), status, error[:300])
            return {members[0][0].index: {"trial_id": ids[0], "status": status, "skipped": False}}
        halves = split(members, math.ceil(len(members) / 2))
        log.warning("fused group of %d failed (%s): retrying as %s", len(members), error[:300],
                    " + ".join(str(len(half)) for half in halves))
        for half in halves:
            for _, _, h in half:
                records.append_claim_log(h.tdir, fused=True, retry_width=len(half), after=error)
        out: dict[int, Any] = {}
        for half in halves:
            out.update(_train_members(attempt, half, setup, device))
        return out
    out = {}
    for (job, _, h), result in zip(members, results):
        attempt.finish(h, result.status, result.measurements, result.total_steps)
        last = result.measurements[-1]
        log.info("trial %s (%s): %s, test acc %.4f after %d steps, %.1f s training (shared by %d fused)",
                 h.trial_id, _point(job.config), result.status, last["test_acc"], last["step"],
                 last["train_seconds"], len(members))
        out[job.index] = {"trial_id": h.trial_id, "status": result.status, "skipped": False}
    return out
