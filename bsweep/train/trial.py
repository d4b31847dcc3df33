"""Run one planned trial end to end: skip it if finished, else train it and write its record.

`run_trial_task` is what Hydra's task function calls for every job, whatever the launcher, so
"skip complete trials" and "record failures, keep going" hold for local, parallel and cluster
runs alike. The record lifecycle is `records.take` + `records.Attempt`, shared with the fused
launcher; the training loop is `engine.train`.
"""

from __future__ import annotations

import io
import logging
import os
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bsweep import records
from bsweep.config import Config, DataConfig
from bsweep.train.data import TensorData, load_data
from bsweep.train.device import environment, free_memory, settle
from bsweep.train.engine import Alone, train
from bsweep.interrupt import Interrupted, requested, stop_on_signals
from bsweep.train.perf import choose
from bsweep.placement import PARALLEL_ENV, choose_device, cores, launcher_jobs, threads_for
from bsweep.plan import absolute_results_dir, point, structured, study_dir, trial_id

log = logging.getLogger("bsweep")

# Datasets already on a device, keyed by (data config, device): a sweep running in one process
# loads each dataset once, not once per trial.
_DATA_CACHE: dict[tuple, TensorData] = {}


def data_for(cfg: DataConfig, device: torch.device) -> TensorData:
    key = (repr(cfg), str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # keep one dataset at a time: device memory is the scarce thing
        _DATA_CACHE[key] = load_data(cfg, device)
    return _DATA_CACHE[key]


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
    """Train the trial `cfg` describes unless it is finished or another live process holds it.
    Never raises for a trial's own failure: that is written to its record, and the sweep goes on.
    Ctrl-C or SIGTERM stops it at the next step, checkpointed and recorded `interrupted`; once
    asked to stop, the process starts no further trial (`bsweep.interrupt`).
    """
    with stop_on_signals():
        return _run_trial(cfg)


def _run_trial(cfg: DictConfig) -> dict:
    container = OmegaConf.to_container(cfg, resolve=True)
    absolute_results_dir(container)
    config = structured(container)
    tid = trial_id(cfg)
    if requested() is not None:
        log.info("trial %s (%s): not started (%s)", tid, point(config), requested())
        return {"trial_id": tid, "status": "interrupted", "skipped": True}
    try:
        return _train_trial(config, container, tid)
    except Interrupted as e:  # recorded `interrupted` by the Attempt; the launcher goes on to its end
        log.warning("trial %s (%s): %s", tid, point(config), e)
        return {"trial_id": tid, "status": "interrupted", "skipped": False}


def _train_trial(config: Config, container: dict, tid: str) -> dict:
    held = records.take(study_dir(config), tid, container)
    if isinstance(held, str):
        log.info("trial %s (%s): %s, skipped", tid, point(config), held)
        return {"trial_id": tid, "status": held, "skipped": True}
    jobs, job_num = _job_context()
    device = place(config, jobs, job_num)
    with records.Attempt([held], {**environment(device), "parallel_jobs": jobs}) as attempt:
        log.info("trial %s (%s): training on %s", tid, point(config), device)
        try:
            data = data_for(config.data, device)
            perf = choose(config, data, study_dir(config))  # measured once per study and batch size
            attempt.note([held], **perf.describe())
            keep = checkpoint_for(config, [held], device)
            on_measure = lambda step, steps, rows: attempt.progress([held], step, steps, rows)  # noqa: E731
            [result] = train(Alone(config, data, perf), [config], data, perf, keep, on_measure)
            note_resume(keep, attempt, [held], f"trial {tid} ({point(config)})")
        except Exception as e:  # a trial's failure is a record, not the end of the sweep
            status = attempt.fail(held, e, traceback.format_exc())
            log.error("trial %s (%s): %s: %s", tid, point(config), status, records.error_line(e).splitlines()[0][:300])
            del e  # drop the frames (and the tensors they hold) before the next trial
            free_memory(device)
            return {"trial_id": tid, "status": status, "skipped": False}
        attempt.finish(held, result.status, result.measurements, result.total_steps)
    last = result.measurements[-1]
    log.info("trial %s (%s): %s, test acc %.4f after %d steps, %.1f s training",
             tid, point(config), result.status, last["test_acc"], last["step"], last["train_seconds"])
    return {"trial_id": tid, "status": result.status, "skipped": False}
