"""Where a job runs: how many trials run at once, torch threads per trial, which GPU. No torch.

Shared by `launch` (which warns at plan time) and `train.trial` (which applies it in every job),
so the same rule holds whatever launcher runs the jobs.
"""

from __future__ import annotations

import os

PARALLEL_ENV = "BSWEEP_PARALLEL_JOBS"  # set by `bsweep sweep` for its jobs: trials at once


def cores() -> int:
    """CPU cores this process may use (its affinity mask: a SLURM allocation, a taskset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def launcher_jobs(launcher: dict | None, cores: int, n_trials: int | None = None) -> int:
    """How many trials a Hydra launcher config runs at once on *this* machine: joblib's n_jobs
    (negative counts back from the core count, as joblib does), every trial for submitit_local
    (it starts them all; `cores` when the count is unknown), one for the basic launcher and for
    cluster launchers (each job has its own allocation). Never more than `n_trials`."""
    target = str((launcher or {}).get("_target_", ""))
    if "joblib" in target.lower():
        n = (launcher or {}).get("n_jobs", -1)
        n = cores + 1 + n if n is not None and n < 0 else (n or 1)
    elif target.endswith("submitit_launcher.LocalLauncher"):
        n = n_trials if n_trials is not None else cores
    else:
        n = 1
    return max(1, min(n, n_trials) if n_trials is not None else n)


def threads_for(requested: int | None, jobs: int, cores: int) -> int:
    """torch intra-op threads per trial so that jobs x threads <= cores: the requested count
    (null = all cores) capped at cores // jobs, and at least 1."""
    fair = max(1, cores // max(1, jobs))
    return fair if requested is None else max(1, min(requested, fair))


def choose_device(name: str, job_num: int, jobs: int, n_gpus: int) -> str:
    """`auto` on a machine with several GPUs and several trials at once: `cuda:{job_num % n_gpus}`,
    so parallel trials spread over the GPUs (several share one when jobs > GPUs). Otherwise the
    name as given (`auto` then resolves to cuda, mps or cpu)."""
    if name == "auto" and n_gpus > 1 and jobs > 1:
        return f"cuda:{job_num % n_gpus}"
    return name
