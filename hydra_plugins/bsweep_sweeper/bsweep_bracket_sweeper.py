"""`hydra/sweeper=bsweep_bracket`: the study's grid, then more learning rates wherever a point's
best lr sits on the edge of the lrs tried, until it is bracketed.

    bsweep sweep study=claims_quick hydra/sweeper=bsweep_bracket
    bsweep sweep study=claims_quick hydra/sweeper=bsweep_bracket hydra.sweeper.max_rounds=2

It runs the grid as `hydra/sweeper=bsweep` does (Hydra's basic sweeper), then rounds: after each,
`bsweep.analysis.bracket.decide` reads the sweep's trials from disk and names, per scientific
point (every swept key but the nuisance keys) and edge, the lr half a decade beyond it on the
1-3 grid; the next round trains that lr at every value of the other nuisance keys (seeds) the
edge lr was trained with. The added trials are ordinary jobs of the same launcher, with their
own trial ids, so a resumed sweep skips whatever finished and makes the same decisions.

Every decision, and why each point stopped, goes to `results/<study>/bracket.json`; the report
shows it. Rounds are global: a round starts when the previous one has finished (all points
of one round run in parallel, as the launcher runs any batch).
"""


import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn

from hydra_plugins.bsweep_sweeper.bsweep_sweeper import BsweepSweeper

log = logging.getLogger(__name__)

# Defaults, as config keys (`hydra.sweeper.<key>`): the lr bounds never crossed (1e-5 to 10 spans
# what SGD and Adam train small CNNs with; beyond, an edge is reported as not bracketed) and
# the lrs added per point and side at most (3: one and a half decades past the grid).
LR_MIN = 1e-5
LR_MAX = 10.0
MAX_ROUNDS = 3


@dataclass
class BsweepBracketSweeperConf:
    _target_: str = "hydra_plugins.bsweep_sweeper.bsweep_bracket_sweeper.BsweepBracketSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None
    lr_min: float = LR_MIN
    lr_max: float = LR_MAX
    max_rounds: int = MAX_ROUNDS
    criteria: List[str] = field(default_factory=lambda: ["final_test_acc", "steps_to_target"])


ConfigStore.instance().store(group="hydra/sweeper", name="bsweep_bracket", node=BsweepBracketSweeperConf,
                             provider="bsweep")


class BsweepBracketSweeper(BsweepSweeper):
    def __init__(self, max_batch_size: Optional[int] = None, params: Optional[Dict[str, str]] = None,
                 lr_min: float = LR_MIN, lr_max: float = LR_MAX, max_rounds: int = MAX_ROUNDS,
                 criteria: Sequence[str] = ("final_test_acc", "steps_to_target")) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.lr_min, self.lr_max, self.max_rounds = lr_min, lr_max, max_rounds
        self.criteria = tuple(criteria)

    def _study_dir(self) -> Path:
        from hydra.utils import to_absolute_path

        assert self.config is not None
        return Path(to_absolute_path(str(self.config.results_dir))) / str(self.config.study.name)

    def sweep(self, arguments: List[str]) -> Any:
        from bsweep.analysis.bracket import settings_problems, with_lr

        problems = settings_problems(self.lr_min, self.lr_max, self.max_rounds, self.criteria)
        given = [*arguments, *(f"{k}={v}" for k, v in (self.params or {}).items())]
        swept = {o.key_or_group for o in OverridesParser.create().parse_overrides(given) if o.is_sweep_override()}
        if swept & {"study", "study.name", "results_dir"}:
            problems.append("hydra/sweeper=bsweep_bracket brackets one study per sweep: "
                            "do not sweep study, study.name or results_dir")
        if problems:
            raise ValueError("; ".join(problems))
        returns: list[Sequence[JobReturn]] = list(super().sweep(arguments))
        launched = {r.return_value["trial_id"]: list(r.overrides) for rs in returns for r in rs}
        job_idx = sum(len(rs) for rs in returns)
        study = self._study_dir()
        history: list[dict] = []
        rounds: dict[tuple[tuple, str], int] = {}
        while True:
            decisions = self._decide(study, launched, rounds)
            batch, asked = [], []
            for d in decisions:
                if d.next_lr is None:
                    continue
                template = self._trials_at(study, launched, d)
                jobs = [with_lr(launched[t], d.next_lr) for t in template]
                jobs = [j for j in jobs if j not in batch]
                batch.extend(jobs)
                rounds[(d.point, d.side)] = rounds.get((d.point, d.side), 0) + 1
                asked.append({"point": d.label, "side": d.side, "edge_lr": d.edge_lr, "lr": d.next_lr,
                              "criteria": list(d.criteria), "jobs": len(jobs)})
            self._write(study, history, decisions, done=not batch)
            if not batch:
                return returns
            log.info("bsweep_bracket: round %d, %d trials: %s", len(history) + 1, len(batch),
                     "; ".join(f"{a['point']} {a['side']} -> lr {a['lr']:g}" for a in asked))
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            for r in results:
                launched[r.return_value["trial_id"]] = list(r.overrides)
            history.append({"round": len(history) + 1, "added": asked,
                            "trial_ids": [r.return_value["trial_id"] for r in results]})
            returns.append(results)

    def _summary(self, study: Path, launched: dict[str, list[str]]):
        from bsweep.analysis.load import load_measurements, load_trials
        from bsweep.analysis.metrics import summarize_trials

        trials = load_trials(study)
        trials = trials[trials["trial_id"].isin(launched)]
        measurements = load_measurements(study)
        measurements = measurements[measurements["trial_id"].isin(launched)]
        return summarize_trials(trials.reset_index(drop=True), measurements)

    def _decide(self, study: Path, launched: dict[str, list[str]], rounds: dict):
        from bsweep.analysis.bracket import decide

        self._last = self._summary(study, launched)
        return decide(self._last, float(self.lr_min), float(self.lr_max), int(self.max_rounds), rounds,
                      self.criteria)

    def _trials_at(self, study: Path, launched: dict[str, list[str]], d) -> list[str]:
        """The trials of the decision's point at its edge lr (one per seed, say): the next lr is
        trained at each of their values of the other nuisance keys."""
        frame = self._last
        for c, v in zip(d.columns, d.point):
            frame = frame[frame[c] == v]
        return list(frame.loc[frame["lr"] == d.edge_lr, "trial_id"])

    def _write(self, study: Path, history: list[dict], decisions: list, done: bool) -> None:
        from bsweep import records
        from bsweep.analysis.bracket import RECORD_FILE

        record = {
            "sweeper": "bsweep_bracket",
            "lr_min": float(self.lr_min), "lr_max": float(self.lr_max), "max_rounds": int(self.max_rounds),
            "criteria": list(self.criteria), "time": time.time(), "done": done,
            "rounds": history,
            # where bracketing stopped without bracketing (or, while running, what it asks next)
            "open_edges": [{"point": d.label, "side": d.side, "edge_lr": d.edge_lr, "criteria": list(d.criteria),
                            "next_lr": d.next_lr, "reason": d.reason} for d in decisions],
        }
        records.write_json(study / RECORD_FILE, record)
