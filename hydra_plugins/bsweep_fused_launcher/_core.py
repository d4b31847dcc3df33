"""The work of the `bsweep_fused` launcher, free of Hydra: group jobs, skip finished trials,
train each group fused, write each member's trial record (the format `bsweep.runner` writes)."""

from __future__ import annotations

import logging
import os
import time
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

    out: dict[int, Any] = {}
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        cfg = job.config
        if not os.path.isabs(cfg["results_dir"]):  # workers may start elsewhere: pin it
            cfg["results_dir"] = os.path.abspath(cfg["results_dir"])
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
    with ProcessPoolExecutor(max_workers=min(n_jobs, len(todo)), mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(train_group, group): group for group in todo}
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
    from bsweep.train import total_steps

    cfg = _structured(group[0].config)
    steps = total_steps(cfg.study.budget, train_size(cfg.data), cfg.batch_size)
    return len(group) * steps * (1e-4 + 2e-5 * cfg.batch_size)


class _Dot(dict):
    """Attribute access on a plain config dict (for plan.study_dir)."""

    def __getattr__(self, name: str) -> Any:
        value = self[name]
        return _Dot(value) if isinstance(value, dict) else value


def _structured(cfg: dict):
    from omegaconf import OmegaConf

    from bsweep.config import Config

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), cfg))


def _point(cfg: dict) -> str:
    return f"bs={cfg['batch_size']} lr={cfg['lr']:g} norm={cfg['norm']['kind']} seed={cfg['seed']}"


_DATA: dict = {}


def train_group(group: list[Job]) -> dict[int, Any]:
    """Train one fusion group (in this process) and write every member's record."""
    import torch
    from omegaconf import OmegaConf

    from bsweep import records
    from bsweep.data import load_data
    from bsweep.fused import choose_width, split, train_fused
    from bsweep.perf import choose
    from bsweep.plan import study_dir, trial_id
    from bsweep.runner import ensure_study_file, environment
    from bsweep.train import resolve_device

    cfgs = [_structured(job.config) for job in group]
    first = cfgs[0]
    if first.threads:
        torch.set_num_threads(first.threads)
    torch.set_flush_denormal(True)  # as the runner: denormals slow CPU kernels up to 100x
    device = resolve_device(first.device)
    out: dict[int, Any] = {}
    tdirs = []
    held = []
    claim = getattr(records, "claim", None)  # the runner's trial lock, where records has one
    members = []
    for job, cfg in zip(group, cfgs):
        tid = trial_id(job.config)
        sdir = study_dir(cfg)
        tdir = records.trial_dir(sdir, tid)
        if claim is not None:
            c = claim(tdir)
            if c is None:
                out[job.index] = {"trial_id": tid, "status": "running elsewhere", "skipped": True}
                continue
            held.append(c)
        if records.is_finished(tdir):
            out[job.index] = {"trial_id": tid, "status": records.read_status(tdir)["status"], "skipped": True}
            continue
        previous = records.trial_state(tdir)  # as the runner does: one attempt per folder
        records.clear_for_rerun(tdir)
        records.append_claim_log(tdir, previous=previous, fused=True)
        ensure_study_file(sdir, OmegaConf.create(job.config))
        records.write_yaml(tdir / records.CONFIG_FILE, job.config)
        members.append((job, cfg, tid, tdir))
    try:
        if not members:
            return out
        key = (repr(first.data), str(device))
        if key not in _DATA:
            _DATA.clear()
            _DATA[key] = load_data(first.data, device)
        data = _DATA[key]
        perf = choose(first, data, study_dir(first))  # autocast, memory format: as the runner
        width = choose_width(first, data, len(members), perf)
        for chunk in split(members, width):
            out.update(_train_chunk(chunk, data, device, perf))
    finally:
        for c in held:
            c.release()
    return out


def _train_chunk(chunk: list, data, device, perf) -> dict[int, Any]:
    from bsweep import records
    from bsweep.fused import train_fused
    from bsweep.runner import environment

    ids = [tid for _, _, tid, _ in chunk]
    env = {**environment(device), **perf.describe(), "fused_width": len(chunk), "fused_with": ids}
    me = records.owner()  # pid, host and the sweep id, as the runner's records carry

    def running() -> None:
        for _, _, _, tdir in chunk:
            records.write_status(tdir, "running", **me, heartbeat=time.time(), fused_with=ids)

    for job, cfg, tid, tdir in chunk:
        records.write_json(tdir / records.ENV_FILE, env)
        log.info("trial %s (%s): training fused (%d members) on %s", tid, _point(job.config), len(chunk), device)
    running()
    beat = records.Heartbeat(running)  # other hosts judge liveness by this heartbeat
    beat.start()
    out: dict[int, Any] = {}
    try:
        results = train_fused([cfg for _, cfg, _, _ in chunk], data, perf=perf)
    except Exception as e:  # the group's failure is every member's record, not the sweep's end
        beat.stop()
        oom = isinstance(e, MemoryError) or "out of memory" in str(e)
        status = "oom" if oom else "failed"
        for job, cfg, tid, tdir in chunk:
            records.write_status(tdir, status, error=f"{type(e).__name__}: {e}",
                                 traceback=traceback.format_exc(), fused_with=ids, **me)
            out[job.index] = {"trial_id": tid, "status": status, "skipped": False}
        log.error("fused group %s: %s: %s", ids, type(e).__name__, e)
        return out
    beat.stop()
    for (job, cfg, tid, tdir), result in zip(chunk, results):
        records.write_measurements(tdir, result.measurements)
        last = result.measurements[-1]
        records.write_status(
            tdir, result.status, steps=last["step"], total_steps=result.total_steps,
            final_test_acc=last["test_acc"], train_seconds=last["train_seconds"],
            fused_width=len(chunk), fused_with=ids, **me,
        )
        log.info("trial %s (%s): %s, test acc %.4f after %d steps, %.1f s training (shared by %d fused)",
                 tid, _point(job.config), result.status, last["test_acc"], last["step"], last["train_seconds"], len(chunk))
        out[job.index] = {"trial_id": tid, "status": result.status, "skipped": False}
    return out
