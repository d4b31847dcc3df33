"""Run one planned trial end to end: skip it if finished, else train it and write its record.

`run_trial_task` is what Hydra's task function calls for every job, whatever the launcher, so
"skip complete trials" and "record failures, keep going" hold for local, parallel and cluster
runs alike.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import sys
import time
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bsweep import records
from bsweep.config import Config, DataConfig
from bsweep.data import TensorData, load_data
from bsweep.perf import choose
from bsweep.placement import PARALLEL_ENV, choose_device, cores, launcher_jobs, threads_for
from bsweep.plan import study_dir, trial_id
from bsweep.train import resolve_device, train_trial

log = logging.getLogger("bsweep")

# Datasets already on a device, keyed by (data config, device): a sweep running in one process
# loads each dataset once, not once per trial.
_DATA_CACHE: dict[tuple, TensorData] = {}


def _data_for(cfg: DataConfig, device: torch.device) -> TensorData:
    key = (tuple(sorted(vars(cfg).items())), str(device))
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()  # keep one dataset at a time: device memory is the scarce thing
        _DATA_CACHE[key] = load_data(cfg, device)
    return _DATA_CACHE[key]


def environment(device: torch.device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": name,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


def ensure_study_file(sdir: Path, cfg: DictConfig) -> None:
    """Write study.yaml from this trial's config if the study has none yet."""
    path = sdir / records.STUDY_FILE
    if not path.exists():
        container = OmegaConf.to_container(cfg, resolve=True)
        records.write_yaml(path, {"study": container["study"], "config": container, "grid": {}})


# Messages of out-of-memory errors that arrive as plain RuntimeError: CUDA's caching allocator
# (older torch), and the CPU allocator ("DefaultCPUAllocator: can't allocate memory", seen under
# a memory cap) and MPS ("MPS backend out of memory").
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory")


def _is_oom(e: BaseException) -> bool:
    oom_types = (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))
    return isinstance(e, oom_types) or any(m in str(e) for m in _OOM_MESSAGES)


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


def _results_dir(config: Config) -> None:
    """Make a relative results_dir absolute against the directory Hydra was started from, so
    jobs that run elsewhere (submitit, a cluster node) write into the same study folder."""
    if not os.path.isabs(config.results_dir):
        try:
            from hydra.utils import to_absolute_path

            config.results_dir = to_absolute_path(config.results_dir)
        except Exception:  # Hydra not initialized: relative to the current directory
            pass


def _point(config: Config) -> str:
    return f"bs={config.batch_size} lr={config.lr:g} norm={config.norm.kind} seed={config.seed}"


def run_trial_task(cfg: DictConfig) -> dict:
    """Train the trial `cfg` describes unless it is finished or another live process holds it.
    Never raises for a trial's own failure: that is written to its record, and the sweep goes on.

    Order on disk: claim -> config, env, status `running` (pid, host, heartbeat) -> train ->
    measurements -> final status. A kill at any point leaves either a finished record (status
    written last) or a `running` status whose owner is gone, which the next sweep redoes.
    """
    config: Config = OmegaConf.to_object(cfg)
    _results_dir(config)
    tid = trial_id(cfg)
    sdir = study_dir(config)
    tdir = records.trial_dir(sdir, tid)
    point = _point(config)
    if records.is_finished(tdir):
        state = records.read_status(tdir)["status"]
        log.info("trial %s (%s): already %s, skipped", tid, point, state)
        return {"trial_id": tid, "status": state, "skipped": True}
    held = records.claim(tdir)
    if held is None:
        log.info("trial %s (%s): running elsewhere (claimed by a live process), skipped", tid, point)
        return {"trial_id": tid, "status": "running elsewhere", "skipped": True}
    try:
        if records.is_finished(tdir):  # finished by another process between the check and the claim
            state = records.read_status(tdir)["status"]
            log.info("trial %s (%s): finished elsewhere, skipped", tid, point)
            return {"trial_id": tid, "status": state, "skipped": True}
        return _train_claimed(cfg, config, tid, sdir, tdir, point, held)
    finally:
        held.release()


def _train_claimed(cfg, config: Config, tid: str, sdir: Path, tdir: Path, point: str,
                   held: records.Claim) -> dict:
    previous = records.trial_state(tdir)
    records.clear_for_rerun(tdir)
    records.append_claim_log(tdir, previous=previous)
    ensure_study_file(sdir, cfg)
    records.write_yaml(tdir / records.CONFIG_FILE, OmegaConf.to_container(cfg, resolve=True))
    jobs, job_num = _job_context()
    threads = threads_for(config.threads, jobs, cores())
    torch.set_num_threads(threads)
    # Denormal floats make CPU kernels up to 100x slower late in training; flushing them to zero
    # changes nothing measurable (test accuracy identical in our runs) and keeps step time flat.
    torch.set_flush_denormal(True)
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    device = resolve_device(choose_device(config.device, job_num, jobs, n_gpus))
    env = {**environment(device), "parallel_jobs": jobs}
    records.write_json(tdir / records.ENV_FILE, env)  # now, so a trial that fails to start has one
    started = time.time()
    me = records.owner()

    def running(**extra) -> None:
        records.write_status(tdir, "running", **me, started=started, heartbeat=time.time(), **extra)

    running()
    beat = records.Heartbeat(lambda: (held.beat(), running()))
    beat.start()
    log.info("trial %s (%s): training on %s", tid, point, device)
    try:
        data = _data_for(config.data, device)
        perf = choose(config, data, sdir)  # measured once per study and batch size where `auto`
        records.write_json(tdir / records.ENV_FILE, {**env, **perf.describe()})
        result = train_trial(config, data, perf=perf)
    except Exception as e:  # a trial's failure is a record, not the end of the sweep
        beat.stop()
        status = "oom" if _is_oom(e) else "failed"
        error = _error_line(e)
        tb = traceback.format_exc()
        del e  # drop the frames (and the tensors they hold) before the next trial
        _free_memory(device)
        records.atomic_write_text(tdir / records.TRACEBACK_FILE, tb)
        records.write_status(tdir, status, error=error, traceback=tb, **me, started=started)
        log.error("trial %s (%s): %s: %s", tid, point, status, error.splitlines()[0][:300])
        return {"trial_id": tid, "status": status, "skipped": False}
    except BaseException as e:  # Ctrl-C, SystemExit: record it, then let it stop the sweep
        beat.stop()
        records.write_status(tdir, "failed", error=f"{type(e).__name__}: interrupted",
                             **me, started=started)
        raise
    beat.stop()
    records.write_measurements(tdir, result.measurements)
    last = result.measurements[-1]
    records.write_status(
        tdir, result.status, steps=last["step"], total_steps=result.total_steps,
        final_test_acc=last["test_acc"], train_seconds=last["train_seconds"], **me,
        started=started,
    )
    log.info(
        "trial %s (%s): %s, test acc %.4f after %d steps, %.1f s training",
        tid, point, result.status, last["test_acc"], last["step"], last["train_seconds"],
    )
    return {"trial_id": tid, "status": result.status, "skipped": False}


def _error_line(e: BaseException) -> str:
    """`Type: message`; where the message is empty (a bare assert), where it was raised."""
    message = str(e).strip()
    if message:
        return f"{type(e).__name__}: {message}"
    frames = traceback.extract_tb(e.__traceback__)
    if not frames:
        return type(e).__name__
    last = frames[-1]
    return f"{type(e).__name__} at {Path(last.filename).name}:{last.lineno} in {last.name}"


def _free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
