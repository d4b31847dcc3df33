"""`hydra/launcher=bsweep_fused`: train a sweep's trials as fused groups (see bsweep.train.fused).

The jobs of a sweep are grouped by `bsweep.plan.fusion_key` (everything equal but lr and seed);
finished trials are skipped (`records.is_finished`); each group is trained by
`bsweep.train.trial.train_trials`, the one trial entry point, at a width chosen by measurement
(`bsweep.train.perf.choose_width`), and every member is written as its own trial record.
`bsweep.sweep.executor` schedules the groups: in this process, or in
`hydra.launcher.n_jobs` worker processes (each with `threads` torch threads), costliest first,
one fused chunk per worker at a time.
Jobs with `perf.fuse=off` or gradient measurements (`noise.enabled`, `noise.cosine_at`) train one member at a time,
in the same workers.

    bsweep sweep study=claims_quick hydra/launcher=bsweep_fused hydra.launcher.n_jobs=2
"""


import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from bsweep import plan
from bsweep.plan import apply_values, split_job

from bsweep.sweep.backends import RayConf, SubmititConf, backend_problems
from bsweep.sweep.executor import NAME
from bsweep.sweep.workers import workers_for

log = logging.getLogger(__name__)


@dataclass
class BsweepFusedLauncherConf:
    _target_: str = "hydra_plugins.bsweep_fused_launcher.bsweep_fused_launcher.BsweepFusedLauncher"
    # Processes training groups at once; 1 = in this process; -1 = one per CPU core (each runs
    # `threads` torch threads: 1 by default, the fastest per core for small CNNs). With the ray
    # backend: Ray tasks in flight (default: the cluster's CPUs over ray.remote.num_cpus).
    n_jobs: int = 1
    # Where fused chunks train: local (processes here), submitit (a SLURM job per chunk, or
    # submitit's local executor), ray (a Ray task per chunk). See bsweep/sweep/backends.py, docs/cluster.md.
    backend: str = "local"
    submitit: SubmititConf = field(default_factory=SubmititConf)
    ray: RayConf = field(default_factory=RayConf)


ConfigStore.instance().store(
    group="hydra/launcher", name=NAME, node=BsweepFusedLauncherConf, provider="bsweep"
)


class BsweepFusedLauncher(Launcher):
    def __init__(self, n_jobs: int = 1, backend: str = "local", submitit: Any = None, ray: Any = None) -> None:
        problems = backend_problems({"backend": backend, "submitit": submitit or {}})
        if problems:  # `bsweep sweep` says so before training; `python -m bsweep.app -m` here
            raise ValueError("\n".join(problems))
        self.n_jobs = n_jobs
        self.backend = backend
        # Set by a sweeper that adds jobs as others end (`hydra/sweeper=bsweep_bracket`): called
        # with each finished group's [(overrides, return value)], it returns more job overrides,
        # trained in this same launch as soon as a worker is free; their JobReturns are left in
        # `follow_up_returns` (a launch returns one JobReturn per job of its batch, as Hydra
        # expects).
        self.follow_up: Optional[Callable[[list], list]] = None
        self.follow_up_returns: list = []
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from bsweep.sweep.executor import Job, run_jobs

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info("bsweep_fused: %d jobs", len(job_overrides))

        self._composed: dict = {}
        self._task_cfgs: dict[int, DictConfig] = {}
        jobs = self._jobs([list(o) for o in job_overrides], 0)
        extra: dict[int, Job] = {}

        def follow_up(ended: list) -> list:
            """The follow-up hook's jobs (see `follow_up` in __init__), numbered after the batch."""
            asked = self.follow_up([(job.overrides, value) for job, value in ended]) if self.follow_up else []
            new = self._jobs(asked, len(job_overrides) + len(extra))
            extra.update({job.index: job for job in new})
            return new

        returns: list[Optional[JobReturn]] = [None] * len(job_overrides)
        n_jobs = workers_for(self.n_jobs)
        # hydra.job.env_set (bsweep's sweep id, trials at once) reaches fused groups as it reaches
        # Hydra's own jobs: set while each group trains, in a worker or here.
        env_set = {str(k): str(v) for k, v in (self.config.hydra.job.get("env_set") or {}).items()}
        backend = self._backend()
        try:
            results = run_jobs(jobs, n_jobs, follow_up if self.follow_up else None, env_set, backend)
        finally:
            if backend is not None:
                backend.close()
        self.follow_up_returns = []
        for i, value in results.items():
            job = extra[i] if i in extra else _job(jobs, i)
            ret = TaskReturn(
                overrides=job.overrides, cfg=self._task_cfgs.pop(i),
                hydra_cfg=self.config, working_dir=os.getcwd(), task_name=self.config.hydra.job.name,
            )
            if isinstance(value, BaseException):
                ret.status, ret.return_value = JobStatus.FAILED, value
            else:
                ret.status, ret.return_value = JobStatus.COMPLETED, value
            if i in extra:
                self.follow_up_returns.append(ret)
            else:
                returns[i] = ret
        assert all(r is not None for r in returns)
        return returns  # type: ignore[return-value]

    def _backend(self) -> Any:
        """The chunks' engine for `hydra.launcher.backend` (None: this machine's processes),
        its settings read from the launcher's config, interpolations resolved."""
        from bsweep.sweep.backends import RayBackend, SubmititBackend

        assert self.config is not None
        launcher = self.config.hydra.launcher
        if self.backend == "submitit":
            return SubmititBackend(OmegaConf.to_container(launcher.submitit, resolve=True))
        if self.backend == "ray":
            return RayBackend(OmegaConf.to_container(launcher.ray, resolve=True), workers_for(self.n_jobs) if self.n_jobs != 1 else 1)
        return None

    def _jobs(self, job_overrides: list[list[str]], first: int) -> list:
        """The jobs for these overrides, numbered from `first`, each with its resolved task config.

        `bsweep sweep` composed every job of its plan already, and its plan file holds each
        job's resolved config (`bsweep.plan.planned_configs`). Other jobs (a bracketing round's
        new lrs, `python -m bsweep.app -m`) are composed here; jobs that differ only in plain
        `key=value` overrides share one composition of the task's part alone, with their values
        set on a copy, as `bsweep.plan.expand` does (docs/performance.md, "Planning and
        sweeping"). Every job trains in the worker processes, noise-tracked and `perf.fuse=off`
        ones too (one member at a time there: `perf.choose_width`)."""
        from bsweep.sweep.executor import Job

        assert self.config is not None and self.hydra_context is not None
        parser, jobs = OverridesParser.create(), []
        planned = plan.planned_configs(job_overrides, self.config)  # what `bsweep sweep` composed
        for i, (overrides, config) in enumerate(zip(job_overrides, planned)):
            task_cfg = None
            if config is None:
                structure, values = split_job(parser, overrides)
                if structure not in self._composed:
                    task = self.hydra_context.config_loader.load_sweep_config(self.config, list(structure))
                    with open_dict(task):
                        del task["hydra"]
                    self._composed[structure] = task
                task_cfg = apply_values(self._composed[structure], values)
                config = OmegaConf.to_container(task_cfg, resolve=True)
            self._task_cfgs[first + i] = task_cfg if task_cfg is not None else config  # each JobReturn's cfg
            jobs.append(Job(first + i, list(overrides), config))
        return jobs


class TaskReturn(JobReturn):
    """A JobReturn whose `cfg` (the job's task config, as Hydra's launchers give it) may be
    handed over as the plan's resolved dict and is made a DictConfig only when read: making
    one costs more than the rest of a planned job's set-up (docs/performance.md, "Planning and
    sweeping"), and no sweep of bsweep's reads it."""

    @property
    def cfg(self) -> Any:
        if isinstance(self._cfg, dict):
            self._cfg = OmegaConf.create(self._cfg)
        return self._cfg

    @cfg.setter
    def cfg(self, value: Any) -> None:
        self._cfg = value


def _job(jobs: list, i: int) -> Any:
    return next(j for j in jobs if j.index == i)
