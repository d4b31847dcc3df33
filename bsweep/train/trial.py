"""Train planned trials through their records: skip the finished, train the others, write each.

`train_trials` is the one way a trial trains, whatever the launcher: Hydra's task function calls
it with one trial (`run_trial_task`, for the basic and joblib launchers), the `bsweep_fused`
launcher with a fusion group. So "skip complete trials" and "record failures, keep going" hold
for local, parallel and cluster runs alike. The record lifecycle is `records.take` +
`records.Attempt`; the training loop is `engine.train`.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf

from bsweep import records
from bsweep.config import Config
from bsweep.interrupt import Interrupted, requested, stop_on_signals
from bsweep.placement import PARALLEL_ENV, choose_device, cores, launcher_jobs, threads_for
from bsweep.plan import absolute_results_dir, point, structured, structured_members, study_dir, trial_id
from bsweep.train.data import TensorData, data_for
from bsweep.train.device import environment, free_memory, settle
from bsweep.train.engine import PerfChoice, train
from bsweep.train.fused import build_members, split
from bsweep.train.perf import choose, choose_width

log = logging.getLogger("bsweep")

def place(config: Config, jobs: int, job_num: int) -> torch.device:
    """Set this process up for a job among `jobs` at once: torch threads capped so that jobs x
    threads <= cores, denormals flushed, and the job's device (GPUs shared out by job number)."""
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return settle(threads_for(config.threads, jobs, cores()), choose_device(config.device, job_num, jobs, n_gpus))


def _job_context() -> tuple[int, int]:
    """(trials running at once, this job's number) from bsweep's env and Hydra's job config."""
    job_num, jobs = 0, None
    env = os.environ.get(PARALLEL_ENV)
    if env and env.isdigit():
        jobs = int(env)
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            hc = HydraConfig.get()
            job_num = int(hc.job.get("num") or 0)
            if jobs is None:
                launcher = OmegaConf.to_container(hc.launcher, resolve=False)
                jobs = launcher_jobs(launcher, cores())
    except Exception:  # outside Hydra (tests, notebooks): one trial at a time
        pass
    return (jobs or 1), job_num


class FileCheckpoint:
    """`engine.Checkpoint` in a trial's folder (a fused chunk's: its first member's), for the
    trials `trial_ids` in this order; a saved state of other trials, or one that cannot be
    read, is not resumed. Saves are atomic (records.atomic_write_bytes): a kill mid-write
    leaves the previous state."""

    def __init__(self, tdir: Path, trial_ids: list[str], every_seconds: float, device: torch.device) -> None:
        self.path, self.ids, self.every_seconds, self.device = Path(tdir) / records.CHECKPOINT_FILE, list(trial_ids), every_seconds, device
        self.resumed_step: int | None = None

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        try:
            saved = torch.load(self.path, map_location=self.device, weights_only=False)
        except Exception as e:  # damaged or from an incompatible version: train from step 0
            log.warning("checkpoint %s unreadable (%s): training from step 0", self.path, e)
            return None
        if not isinstance(saved, dict) or saved.get("trial_ids") != self.ids:
            return None
        self.resumed_step = saved["state"]["step"]
        return saved["state"]

    def save(self, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save({"trial_ids": self.ids, "state": state}, buffer)
        records.atomic_write_bytes(self.path, buffer.getvalue())


def checkpoint_for(config: Config, held: list[records.Held], device: torch.device) -> FileCheckpoint | None:
    """The checkpoint of the trials `held` (trained together), or None with checkpoint_seconds=null."""
    if config.checkpoint_seconds is None:
        return None
    return FileCheckpoint(held[0].tdir, [h.trial_id for h in held], float(config.checkpoint_seconds), device)


def note_resume(keep: FileCheckpoint | None, attempt: records.Attempt, held: list[records.Held], what: str) -> None:
    """Log and record (env.json, status) the step the trials `held` resumed from, if they did."""
    if keep is not None and keep.resumed_step is not None:
        log.info("%s: resumed from its checkpoint at step %d", what, keep.resumed_step)
        attempt.note(held, resumed_from_step=keep.resumed_step)


def checkpointed_members(tdir: Path) -> list[str] | None:
    """The trial ids a checkpoint in `tdir` was saved for (several: a fused chunk), or None."""
    path = Path(tdir) / records.CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        return list(saved["trial_ids"])
    except Exception:
        return None


def run_trial_task(cfg: DictConfig) -> dict:
    """Train the trial `cfg` describes unless it is finished or another live process holds it:
    `train_trials` with one member, for Hydra's task function (basic and joblib launchers).
    Never raises for a trial's own failure: that is written to its record, and the sweep goes on.
    Ctrl-C or SIGTERM stops it at the next step, checkpointed and recorded `interrupted`; once
    asked to stop, the process starts no further trial (`bsweep.interrupt`).
    """
    with stop_on_signals():
        container = OmegaConf.to_container(cfg, resolve=True)
        absolute_results_dir(container)
        config = structured(container)
        tid = trial_id(cfg)
        if requested() is not None:
            log.info("trial %s (%s): not started (%s)", tid, point(config), requested())
            return {"trial_id": tid, "status": "interrupted", "skipped": True}
        jobs, job_num = _job_context()
        results, _ = train_trials([container], jobs, job_num, width=1, fused=False)
        return results[0]


def train_trials(configs: list[dict], jobs: int, job_num: int, width: int | None = None, *,
                 fused: bool) -> tuple[dict[int, dict], list[list[int]]]:
    """Train the first chunk of `configs` (K >= 1 resolved trial configs of one fusion group)
    in this process, one of `jobs` at once, and write each member's record: leased
    (`records.take`), trained (`engine.train`), finished or failed (`records.Attempt`). A
    chunk that raises is retried from step 0 at half its width, down to one member, which
    alone is recorded failed (or oom). Ctrl-C or SIGTERM: the chunk checkpoints and is
    recorded `interrupted`, the other chunks are not started.

    `width`: members per chunk; None: `perf.choose_width`'s pick. A chunk a checkpoint was saved
    for comes first, as it was. `fused`: the `bsweep_fused` launcher's trials (its lease, the
    fusion width in the record, its log lines); False: one trial of another launcher.
    Returns ({position in `configs`: return value} of the trained or skipped members, the other
    chunks as positions in `configs`, untrained)."""
    cfgs = structured_members(configs)
    first, sdir = cfgs[0], study_dir(cfgs[0])
    device = functools.cache(lambda: place(first, jobs, job_num))

    @functools.cache
    def setup() -> tuple[TensorData, PerfChoice]:  # raises inside a member's attempt when it fails
        data = data_for(first.data, device())
        return data, choose(first, data, sdir)  # measured once per study and batch size

    if width is None:
        device()  # (a placement that fails is the machinery's failure, not a member's)
        try:
            data, perf = setup()
            width = choose_width(first, data, len(cfgs), perf)
        except Exception:  # unloadable data: each member records the error alone, below
            width = 1
    chunk, *rest = _resume_first(configs, width, sdir) if len(configs) > 1 else [[0]]
    out: dict[int, dict] = {}
    members: list[_Member] = []
    for i in chunk:  # leased just before they train
        tid = trial_id(configs[i])
        held = records.take(sdir, tid, configs[i], **({"fused": True} if fused else {}))
        if isinstance(held, str):
            log.info("trial %s (%s): %s, skipped", tid, point(cfgs[i]), held)
            out[i] = {"trial_id": tid, "status": held, "skipped": True}
        else:
            members.append(_Member(i, cfgs[i], held))
    if not members:
        return out, rest
    try:
        with records.Attempt([m.held for m in members], {**environment(device()), "parallel_jobs": jobs}) as attempt:
            out.update(_train_members(attempt, members, setup, device(), fused))
    except Interrupted as e:  # recorded `interrupted` by the Attempt; the rest not started
        log.warning("%s: %s", _what(members, fused), e)
        out.update({m.index: {"trial_id": m.held.trial_id, "status": "interrupted", "skipped": False}
                    for m in members if m.index not in out})
        out.update({i: {"trial_id": trial_id(configs[i]), "status": "interrupted", "skipped": True}
                    for part in rest for i in part})
        return out, []
    return out, rest


@dataclass
class _Member:
    index: int  # position in train_trials' configs
    config: Config
    held: records.Held


def _what(members: list[_Member], fused: bool) -> str:
    """The members in a log line: a trial alone, or a fused chunk by its trial ids."""
    if not fused:
        return f"trial {members[0].held.trial_id} ({point(members[0].config)})"
    return f"fused chunk {','.join(m.held.trial_id for m in members)}"


def _resume_first(configs: list[dict], width: int, sdir: Path) -> list[list[int]]:
    """The positions of `configs` in chunks of `width` (`fused.split`), except that a chunk a
    checkpoint was saved for (a killed or preempted run's, all its members here) comes first,
    as it was, so it resumes instead of starting again at whatever width is chosen now."""
    ids = [trial_id(c) for c in configs]
    positions = list(range(len(configs)))
    for tid in ids:
        saved = checkpointed_members(records.trial_dir(sdir, tid))
        if saved and saved[0] == tid and set(saved) <= set(ids):
            others = [i for i, t in zip(positions, ids) if t not in saved]
            return [[ids.index(t) for t in saved], *split(others, width)]
    return split(positions, width)


def _train_members(attempt: records.Attempt, members: list[_Member], setup: Callable, device: torch.device,
                   fused: bool) -> dict[int, dict]:
    """Train `members` together; on an exception, again from step 0 in two halves, down to one
    member, which alone is recorded failed. Returns {position: the task's return value}."""
    cfgs, held = [m.config for m in members], [m.held for m in members]
    ids = [h.trial_id for h in held]
    try:
        if not fused:
            log.info("trial %s (%s): training on %s", ids[0], point(cfgs[0]), device)
        data, perf = setup()
        fusion = {"fused_width": len(members), "fused_with": ids} if fused else {}
        attempt.note(held, **perf.describe(), **fusion)
        for m in members if fused else []:
            log.info("trial %s (%s): training fused (%d members) on %s", m.held.trial_id, point(m.config),
                     len(members), data.x_train.device)
        keep = checkpoint_for(cfgs[0], held, device)
        on_measure = lambda step, steps, rows: attempt.progress(held, step, steps, rows)  # noqa: E731
        results = train(build_members(cfgs, data, perf), cfgs, data, perf, keep, on_measure)
        note_resume(keep, attempt, held, _what(members, fused))
    except Exception as e:  # never the sweep's end: retry smaller, or record the one member
        tb, error = traceback.format_exc(), records.error_line(e)
        status = attempt.fail(held[0], e, tb) if len(members) == 1 else None
        del e  # drop the frames (and the tensors they hold) before the next attempt
        free_memory(device)
        if status is not None:
            shown = error[:300] if fused else error.splitlines()[0][:300]
            log.error("trial %s (%s): %s: %s", ids[0], point(cfgs[0]), status, shown)
            return {members[0].index: {"trial_id": ids[0], "status": status, "skipped": False}}
        return _retry_halves(attempt, members, setup, device, fused, error)
    out = {}
    for m, result in zip(members, results):
        attempt.finish(m.held, result.status, result.measurements, result.total_steps)
        last = result.measurements[-1]
        shared = f" (shared by {len(members)} fused)" if fused else ""
        log.info("trial %s (%s): %s, test acc %.4f after %d steps, %.1f s training%s", m.held.trial_id,
                 point(m.config), result.status, last["test_acc"], last["step"], last["train_seconds"], shared)
        out[m.index] = {"trial_id": m.held.trial_id, "status": result.status, "skipped": False}
    return out


def _retry_halves(attempt: records.Attempt, members: list[_Member], setup: Callable, device: torch.device,
                  fused: bool, error: str) -> dict[int, dict]:
    """Train a failed chunk's members again in two halves, each noted in claims.jsonl."""
    halves = split(members, math.ceil(len(members) / 2))
    log.warning("fused group of %d failed (%s): retrying as %s", len(members), error[:300],
                " + ".join(str(len(half)) for half in halves))
    for half in halves:
        for m in half:
            records.append_lease_log(m.held.tdir, fused=True, retry_width=len(half), after=error)
    out: dict[int, dict] = {}
    for half in halves:
        out.update(_train_members(attempt, half, setup, device, fused))
    return out
