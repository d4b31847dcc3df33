"""`hydra/sweeper=bsweep` (bsweep's default): Hydra's basic sweeper, written against Hydra's
public `Sweeper` interface, taking its jobs from the plan `bsweep sweep` made.

`bsweep sweep` expands the grid and composes every job once (`bsweep.plan.expand`), writes the
plan to a file and names it in `hydra.job.env_set` (`bsweep.plan.PLAN_ENV`). Here the jobs come
from that plan, and a batch of planned jobs is launched without composing them again. Without a
plan (`python -m bsweep.app -m ...`), or for jobs the plan does not hold (a bracketing round's
new lrs), the jobs are expanded as Hydra's basic sweeper expands them, and a batch is checked
before it launches by composing one job per config-group structure (`bsweep.plan.split_job`):
what can fail in Hydra's composition itself fails as before. Batching (`max_batch_size`),
`hydra.sweeper.params` and the sweep's `multirun.yaml` are the basic sweeper's.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


@dataclass
class BsweepSweeperConf:
    _target_: str = "hydra_plugins.bsweep_sweeper.bsweep_sweeper.BsweepSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="bsweep", node=BsweepSweeperConf, provider="bsweep")


class BsweepSweeper(Sweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None) -> None:
        assert max_batch_size is None or max_batch_size > 0
        self.max_batch_size = max_batch_size
        self.params = params or {}
        self.hydra_context: Optional[HydraContext] = None
        self.config: Optional[DictConfig] = None
        self.launcher: Optional[Launcher] = None
        self.planned: set = set()  # the plan's jobs (override tuples): composed when planned

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def jobs(self, arguments: List[str]) -> List[List[str]]:
        """Every job of the sweep, in Hydra's order: the plan's, or expanded here."""
        from bsweep.plan import job_override_lists, planned_jobs

        assert self.config is not None and self.hydra_context is not None
        jobs = planned_jobs(self.config, self.params, arguments)
        if jobs is not None:
            self.planned = {tuple(job) for job in jobs}
            return jobs
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        try:
            return job_override_lists(self.params, arguments, parser)
        except ValueError as e:  # a sweep that is not a list of values (an interval)
            raise HydraException(f"{type(self).__name__}: {e}") from None

    def sweep(self, arguments: List[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        jobs = self.jobs(arguments)
        size = self.max_batch_size or len(jobs) or 1
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns: List[Sequence[JobReturn]] = []
        initial_job_idx = 0
        for start in range(0, len(jobs), size):
            batch = jobs[start:start + size]
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            for r in results:
                _ = r.return_value  # raises where the job failed, as Hydra's sweeper does
            initial_job_idx += len(batch)
            returns.append(results)
        return returns

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose one job per config-group structure of the jobs the plan does not hold."""
        from bsweep.plan import split_job

        parser, seen = OverridesParser.create(), set()
        for overrides in batch:
            if tuple(overrides) in self.planned:
                continue
            structure, _ = split_job(parser, list(overrides))
            if structure not in seen:
                seen.add(structure)
                super().validate_batch_is_legal([overrides])
