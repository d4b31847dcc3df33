"""Where the `bsweep_fused` launcher's chunks train: `hydra.launcher.backend`.

Each backend runs `executor.train_group` on one fused chunk somewhere and hands back a
`concurrent.futures.Future` of its result, so `executor.run_jobs` schedules chunks the same way
whatever runs them (costliest first, one chunk per slot, the rest of a group handed back):

- local: worker processes on this machine (`workers.worker_pool`);
- submitit: one job per chunk through submitit's executor (SLURM, or its local executor), with
  the settings Hydra's submitit launcher takes, under the same names (`hydra.launcher.submitit.*`);
- ray: one `ray.remote` task per chunk with its own `num_cpus` / `num_gpus` (fractions share a
  GPU), on a local or an existing Ray cluster (`hydra.launcher.ray.init.address=auto`).

Claims and heartbeats in the study folder keep each trial to one process across nodes, as with
any launcher; the folder must be on a filesystem every node sees.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

BACKENDS = ("local", "submitit", "ray")


@dataclass
class SubmititConf:
    """submitit's settings, named as Hydra's submitit launcher names them (its BaseQueueConf
    and SlurmQueueConf), and `cluster`: "slurm", or "local" for submitit's local executor."""

    cluster: str = "slurm"
    submitit_folder: str = "${hydra.sweep.dir}/.submitit/%j"
    timeout_min: int = 60
    cpus_per_task: Optional[int] = None
    gpus_per_node: Optional[int] = None
    tasks_per_node: int = 1
    mem_gb: Optional[int] = None
    nodes: int = 1
    name: str = "${hydra.job.name}"
    stderr_to_stdout: bool = False
    # SLURM only (https://slurm.schedmd.com/sbatch.html)
    partition: Optional[str] = None
    qos: Optional[str] = None
    comment: Optional[str] = None
    constraint: Optional[str] = None
    exclude: Optional[str] = None
    gres: Optional[str] = None
    cpus_per_gpu: Optional[int] = None
    gpus_per_task: Optional[int] = None
    mem_per_gpu: Optional[str] = None
    mem_per_cpu: Optional[str] = None
    account: Optional[str] = None
    signal_delay_s: int = 120
    max_num_timeout: int = 0
    additional_parameters: dict[str, Any] = field(default_factory=dict)
    # jobs queued or running at once: the launcher's slots for chunks
    array_parallelism: int = 256
    setup: Optional[list[str]] = None


@dataclass
class RayConf:
    """`init`: keyword arguments of `ray.init` (address=auto joins a running cluster; empty
    starts a local one). `remote`: each chunk's task resources (`ray.remote`'s num_cpus,
    num_gpus, memory...; num_gpus=0.25 puts four chunks on one GPU)."""

    # null values are left out of the call, so ray's own defaults hold; other keys with +
    init: dict[str, Any] = field(default_factory=lambda: {"address": None, "num_cpus": None, "num_gpus": None,
                                                          "include_dashboard": False})
    remote: dict[str, Any] = field(default_factory=lambda: {"num_cpus": 1, "num_gpus": 0, "memory": None})


def backend_problems(launcher: dict) -> list[str]:
    """What is wrong with a `bsweep_fused` launcher config's backend (checked before anything
    trains): an unknown backend or submitit cluster, or the engine's package missing."""
    import importlib.util

    backend = launcher.get("backend", "local")
    if backend not in BACKENDS:
        return [f"hydra.launcher.backend={backend!r} is not known; choose one of: {', '.join(BACKENDS)}"]
    if backend == "submitit":
        cluster = (launcher.get("submitit") or {}).get("cluster", "slurm")
        if cluster not in ("slurm", "local"):
            return [f"hydra.launcher.submitit.cluster={cluster!r} is not known; choose slurm or local"]
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        return ["hydra.launcher.backend=ray needs Ray, which is not installed: pip install 'bsweep[ray]'"]
    return []


# The keys of Hydra's BaseQueueConf: submitit's own names; the others get the cluster's prefix.
_GENERIC = ("timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name",
            "stderr_to_stdout")


class Backend:
    """Runs chunks somewhere: `slots` at once, each `submit` a Future of its result."""

    slots: int = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        raise NotImplementedError

    def close(self) -> None:
        """Ends what this backend started (called once the launch's chunks have all ended)."""


class SubmititBackend(Backend):
    def __init__(self, conf: dict[str, Any]) -> None:
        import submitit

        conf = dict(conf)
        cluster = conf.pop("cluster")  # slurm or local (`backend_problems`)
        init = {"folder": conf.pop("submitit_folder")}
        max_num_timeout = conf.pop("max_num_timeout")
        if cluster == "slurm":
            init["slurm_max_num_timeout"] = max_num_timeout
        self.slots = max(1, int(conf.pop("array_parallelism")))
        if cluster == "local":  # the local executor knows only the generic keys
            conf = {k: v for k, v in conf.items() if k in _GENERIC}
        params = {k if k in _GENERIC else f"{cluster}_{k}": v for k, v in conf.items()}
        self.executor = submitit.AutoExecutor(cluster=cluster, **init)
        self.executor.update_parameters(**{k: v for k, v in params.items() if v is not None})

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        job = self.executor.submit(fn, *args)
        return _watched(job.done, job.result)


class RayBackend(Backend):
    def __init__(self, conf: dict[str, Any], n_jobs: int) -> None:
        import ray

        # A connection this launch makes is this launch's to end (`close`): a local instance it
        # started stops with it (left running, its raylet keeps a process tree alive and keeps
        # printing into the caller's output); a cluster joined by `address=auto` runs on. Ray that
        # the caller had initialized already is left as found.
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(**{k: v for k, v in dict(conf.get("init") or {}).items() if v is not None})
        self.resources = {k: v for k, v in dict(conf.get("remote") or {}).items() if v is not None}
        cpus = float(self.resources.get("num_cpus", 1) or 1)
        # groups in flight: n_jobs when given, else what the cluster's CPUs hold
        self.slots = n_jobs if n_jobs > 1 else max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        self._remote: dict[Callable[..., Any], Any] = {}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        import ray

        if fn not in self._remote:
            self._remote[fn] = ray.remote(**self.resources)(fn)
        return self._remote[fn].remote(*args).future()

    def close(self) -> None:
        import ray

        if self.started:
            ray.shutdown()


# How often a watcher asks submitit whether a job ended (seconds): submitit itself reads SLURM's
# state at most every few seconds, and a chunk trains for seconds to hours.
POLL_SECONDS = 1.0


def _watched(done: Callable[[], bool], result: Callable[[], Any]) -> Future:
    """A Future set from a thread that polls `done` and then reads `result` (its value, or the
    exception it raises: a job killed or failed)."""
    future: Future = Future()

    def watch() -> None:
        while not done():
            time.sleep(POLL_SECONDS)
        try:
            future.set_result(result())
        except BaseException as e:  # the job's own failure, handed to the scheduler
            future.set_exception(e)

    threading.Thread(target=watch, daemon=True).start()
    return future
