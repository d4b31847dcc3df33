"""Hydra's application entry: the task function every Hydra launcher calls once per trial.

`bsweep run` and `bsweep sweep` hand the user's overrides to `main` untouched (with `-m` for a
sweep), so Hydra's own multirun syntax, launchers and `hydra.*` settings behave as in any Hydra
app. `python -m bsweep.app [-m] OVERRIDES` is the same entry without the CLI around it.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from bsweep.config import register_configs
from bsweep.plan import CONFIG_DIR

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> dict:
    # here, not at import: a sweep whose launcher trains elsewhere (bsweep_fused's worker
    # processes, a cluster) does not load torch in the process that launches it
    from bsweep.train.trial import run_trial_task

    return run_trial_task(cfg)


if __name__ == "__main__":
    main()
