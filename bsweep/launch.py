"""Plan, validate, then hand the user's overrides to Hydra's own entry, and watch the study folder.

Progress is read from the trial records on disk, not from the jobs, so the bar is right for any
launcher: in-process, joblib processes or cluster jobs that share the filesystem.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bsweep import records
from bsweep.plan import PlannedTrial, expand, single, study_dir
from bsweep.validate import check_all

# How often the watcher reads the trial records, in seconds: often enough for a live bar,
# rarely enough to cost nothing beside training.
POLL_SECONDS = 0.5
ENDED = ("complete", "diverged", "failed", "oom")


@dataclass
class SweepOutcome:
    planned: list[PlannedTrial]
    states: dict[str, str]  # trial_id -> state after the run
    hydra_exit: int  # Hydra's exit code (non-zero: Hydra itself reported an error)

    @property
    def counts(self) -> Counter:
        return Counter(self.states.values())

    @property
    def ok(self) -> bool:
        bad = self.counts["failed"] + self.counts["oom"] + self.counts["damaged"] + self.counts["new"] + self.counts["running"]
        return self.hydra_exit == 0 and bad == 0


def plan_and_check(overrides: list[str]) -> list[PlannedTrial]:
    """Expand the grid and validate every trial (raises ConfigError / Hydra errors)."""
    planned = expand(overrides)
    check_all([OmegaConf.to_object(p.config) for p in planned])
    return planned


def write_study_file(planned: list[PlannedTrial], overrides: list[str]) -> None:
    """study.yaml: the study node, the grid (values per swept key) and the launching command."""
    grid: dict[str, list[str]] = {}
    for p in planned:
        for o in p.overrides:
            key, _, value = o.partition("=")
            grid.setdefault(key, [])
            if value not in grid[key]:
                grid[key].append(value)
    swept = {k: v for k, v in grid.items() if len(v) > 1}
    first = OmegaConf.to_container(planned[0].config, resolve=True)
    for sdir in sorted({study_dir(p.config) for p in planned}):
        records.write_yaml(
            sdir / records.STUDY_FILE,
            {"study": first["study"], "grid": swept, "n_trials": len(planned),
             "command": "bsweep sweep " + " ".join(overrides), "config": first},
        )


def trial_states(planned: list[PlannedTrial]) -> dict[str, str]:
    return {
        p.trial_id: records.trial_state(records.trial_dir(study_dir(p.config), p.trial_id))
        for p in planned
    }


def call_hydra(argv: list[str]) -> int:
    """Run bsweep's @hydra.main entry with `argv` as its command line; return its exit code."""
    from bsweep.app import main as hydra_main

    saved = sys.argv
    sys.argv = ["bsweep", *argv]
    try:
        hydra_main()
        return 0
    except SystemExit as e:  # Hydra reports its own errors, then exits
        return e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = saved


class _Watcher(threading.Thread):
    """Counts ended trials of the plan on disk; draws a bar in a terminal, plain lines elsewhere."""

    def __init__(self, planned: list[PlannedTrial], console: Console) -> None:
        super().__init__(daemon=True)
        self.planned, self.console = planned, console
        self.stop = threading.Event()
        self.start_time = time.monotonic()

    def _done(self) -> int:
        return sum(s in ENDED for s in trial_states(self.planned).values())

    def run(self) -> None:
        total, done0 = len(self.planned), self._done()
        if self.console.is_terminal:
            columns = (TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TextColumn("ETA"), TimeRemainingColumn())
            with Progress(*columns, console=self.console, transient=False) as bar:
                task = bar.add_task("trials", total=total, completed=done0)
                while not self.stop.wait(POLL_SECONDS):
                    bar.update(task, completed=self._done())
                bar.update(task, completed=self._done())
            return
        last = done0
        while not self.stop.wait(POLL_SECONDS):
            done = self._done()
            if done != last:
                elapsed = time.monotonic() - self.start_time
                rate = (done - done0) / elapsed if elapsed > 0 else 0.0
                eta = f"{(total - done) / rate:.0f} s" if rate > 0 else "?"
                self.console.print(f"progress: {done}/{total} trials ended, {elapsed:.0f} s elapsed, ETA {eta}")
                last = done


def run_sweep(overrides: list[str], console: Console | None = None) -> SweepOutcome:
    """`bsweep sweep`: plan + validate, then Hydra multirun with the overrides untouched."""
    console = console or Console()
    planned = plan_and_check(overrides)
    before = Counter(trial_states(planned).values())
    console.print(
        f"study {planned[0].config.study.name}: {len(planned)} trials, "
        f"{before['complete'] + before['diverged']} already finished, "
        f"{len(planned) - before['complete'] - before['diverged']} to run"
    )
    write_study_file(planned, overrides)
    watcher = _Watcher(planned, console)
    watcher.start()
    try:
        code = call_hydra(["-m", *overrides])
    finally:
        watcher.stop.set()
        watcher.join()
    return SweepOutcome(planned, trial_states(planned), code)


def run_one(overrides: list[str]) -> SweepOutcome:
    """`bsweep run`: one trial at the configured point (no grid)."""
    planned = [single(overrides)]
    check_all([OmegaConf.to_object(planned[0].config)])
    code = call_hydra(overrides)
    return SweepOutcome(planned, trial_states(planned), code)


def study_dirs_of(planned: list[PlannedTrial]) -> list[Path]:
    return sorted({study_dir(p.config) for p in planned})
