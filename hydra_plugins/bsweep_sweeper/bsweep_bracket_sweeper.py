"""`hydra/sweeper=bsweep_bracket`: the study's grid, then more learning rates wherever a point's
best lr sits on the edge of the lrs tried, until it is bracketed.

    bsweep sweep study=claims_quick hydra/sweeper=bsweep_bracket
    bsweep sweep study=claims_quick hydra/sweeper=bsweep_bracket hydra.sweeper.max_rounds=2

It runs the grid as `hydra/sweeper=bsweep` does (Hydra's basic sweeper). Whenever every job of a
scientific point (every swept key but the nuisance keys) has ended,
`bsweep.sweep.bracket.decide` reads the sweep's trials from disk and names, per edge where
that point's best lr sits, the lr half a decade beyond it on the 1-3 grid; the point's next
round trains that lr at every value of the other nuisance keys (seeds) the edge lr was trained
with. Under `hydra/launcher=bsweep_fused` a point's next round starts as soon as its own jobs
end (the launcher's `follow_up` hook), in the same launch, so no worker waits for other
points; under other launchers a round starts when the previous one has ended. The added
trials are ordinary jobs of the same launcher, with their own trial ids, so a resumed sweep
skips whatever finished and makes the same decisions.

Every decision, and why each point stopped, goes to `results/<study>/bracket.json`; the report
shows it.
"""


import logging
import time
from collections import Counter
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
        from bsweep.sweep.bracket import ONE_STUDY, settings_problems
        from bsweep.analysis.load import RecordCache

        problems = settings_problems(self.lr_min, self.lr_max, self.max_rounds, self.criteria)
        given = [*arguments, *(f"{k}={v}" for k, v in (self.params or {}).items())]
        swept = {o.key_or_group for o in OverridesParser.create().parse_overrides(given) if o.is_sweep_override()}
        if swept & {"study", "study.name", "results_dir"}:
            problems.append(ONE_STUDY)
        if problems:
            raise ValueError("; ".join(problems))
        assert self.config is not None
        self._study = self._study_dir()
        self._parser = OverridesParser.create()
        self._nuisance = {"lr", "seed", *map(str, self.config.study.get("nuisance") or [])}
        self._launched: dict[str, list[str]] = {}  # trial id -> its job's overrides
        self._pending: Counter = Counter()  # a point's jobs launched and not ended yet
        self._rounds: dict[tuple[tuple, str], int] = {}
        self._history: list[dict] = []
        self._records = RecordCache()  # the study is read after every point that ends: each finished trial once
        self._swept = sorted(swept - self._nuisance)  # what names a point in the log and the record
        if hasattr(self.launcher, "follow_up"):  # bsweep_fused: a point's next lr as soon as it ends
            self.launcher.follow_up = self._follow_up
        returns: list[Sequence[JobReturn]] = list(super().sweep(arguments))
        for rs in returns:
            for r in rs:
                self._launched[r.return_value["trial_id"]] = list(r.overrides)
        job_idx = sum(len(rs) for rs in returns)
        # Rounds for launchers without the hook (and anything the hook left): a round starts
        # when the previous one has ended.
        while batch := self._next_round(None):
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=job_idx)
            job_idx += len(batch)
            for r in results:
                self._launched[r.return_value["trial_id"]] = list(r.overrides)
            returns.append(results)
        self._write(done=True)
        return returns

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        # Called by the basic sweeper just before each batch launches: count its jobs per point.
        super().validate_batch_is_legal(batch)
        for overrides in batch:
            self._pending[self._point_key(overrides)] += 1

    def _point_key(self, overrides: Sequence[str]) -> tuple:
        """A job's scientific point, from its overrides: all but the nuisance keys."""
        parsed = self._parser.parse_overrides(list(overrides))
        return tuple(sorted(o.input_line for o in parsed if o.key_or_group not in self._nuisance))

    def _follow_up(self, ended: list) -> list:
        """The fused launcher's hook: `ended` is a finished group's [(overrides, return value)];
        for every point whose jobs have now all ended, the next lrs it needs, at once."""
        complete = set()
        for overrides, value in ended:
            key = self._point_key(overrides)
            self._pending[key] -= 1
            if isinstance(value, dict) and "trial_id" in value:
                self._launched[value["trial_id"]] = list(overrides)
            if self._pending[key] <= 0:
                complete.add(key)
        if not complete:
            return []
        batch = self._next_round(complete)
        for overrides in batch:
            self._pending[self._point_key(overrides)] += 1
        return batch

    def _next_round(self, points: Optional[set]) -> list:
        """The jobs of the next lr for every open edge (of the given points only, when given),
        recorded in the history; [] when there is nothing to add."""
        from bsweep.sweep.bracket import with_lr

        decisions = self._decide()
        batch, asked = [], []
        for d in decisions:
            if d.next_lr is None:
                continue
            template = self._trials_at(d)
            if not template or (points is not None and self._point_key(self._launched[template[0]]) not in points):
                continue
            jobs = [j for j in (with_lr(self._launched[t], d.next_lr) for t in template) if j not in batch]
            batch.extend(jobs)
            self._rounds[(d.point, d.side)] = self._rounds.get((d.point, d.side), 0) + 1
            asked.append({"point": d.label, "side": d.side, "edge_lr": d.edge_lr, "lr": d.next_lr,
                          "criteria": list(d.criteria), "jobs": len(jobs), "round": self._rounds[(d.point, d.side)],
                          "overrides": jobs})
        self._open = decisions
        if asked:
            self._history.append({"round": len(self._history) + 1, "added": asked})
            log.info("bsweep_bracket: %d trials: %s", len(batch),
                     "; ".join(f"{a['point']} {a['side']} -> lr {a['lr']:g}" for a in asked))
        self._write(done=False)
        return batch

    def _summary(self):
        from bsweep.analysis.load import load_trials_and_measurements
        from bsweep.analysis.metrics import summarize_trials

        trials, measurements = load_trials_and_measurements(self._study, cache=self._records)
        trials = trials[trials["trial_id"].isin(self._launched)]
        measurements = measurements[measurements["trial_id"].isin(self._launched)]
        return summarize_trials(trials.reset_index(drop=True), measurements)

    def _decide(self):
        from bsweep.sweep.bracket import decide

        self._last = self._summary()
        return decide(self._last, float(self.lr_min), float(self.lr_max), int(self.max_rounds), self._rounds,
                      self.criteria, self._swept)

    def _trials_at(self, d) -> list[str]:
        """The trials of the decision's point at its edge lr (one per seed, say): the next lr is
        trained at each of their values of the other nuisance keys."""
        frame = self._last
        for c, v in zip(d.columns, d.point):
            frame = frame[frame[c] == v]
        return list(frame.loc[frame["lr"] == d.edge_lr, "trial_id"])

    def _write(self, done: bool) -> None:
        from bsweep import records

        by_overrides = {tuple(o): t for t, o in self._launched.items()}
        rounds = []
        for h in self._history:
            jobs = [o for a in h["added"] for o in a["overrides"] if tuple(o) in by_overrides]
            # each added trial's id and job overrides: `bsweep sweep` counts them in its summary
            rounds.append({"round": h["round"],
                           "added": [{k: v for k, v in a.items() if k != "overrides"} for a in h["added"]],
                           "trial_ids": [by_overrides[tuple(o)] for o in jobs],
                           "trial_overrides": [list(o) for o in jobs]})
        record = {
            "sweeper": "bsweep_bracket",
            "lr_min": float(self.lr_min), "lr_max": float(self.lr_max), "max_rounds": int(self.max_rounds),
            "criteria": list(self.criteria), "time": time.time(), "done": done,
            "rounds": rounds,
            # where bracketing stopped without bracketing (or, while running, what it asks next)
            "open_edges": [{"point": d.label, "side": d.side, "edge_lr": d.edge_lr, "criteria": list(d.criteria),
                            "next_lr": d.next_lr, "reason": d.reason} for d in getattr(self, "_open", [])],
        }
        records.write_json(self._study / records.BRACKET_FILE, record)
