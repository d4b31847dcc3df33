"""What a sweep shows while it runs: the time left, and how far each running trial (or fused
group) has come, as pure functions of the trials' planned costs and their status records; and
the `Watcher`, the thread that reads those records while `bsweep.sweep.launch` runs Hydra and
prints them.

The time left is the elapsed time scaled by the planned cost still to do over the planned cost
done (`bsweep.sweep.executor`: steps x per-step costs + evaluations), counting running trials by their
steps done. Counting ended trials alone misleads twice: a study's trials differ in cost many
times over (small batches cost most and run first), and until one ends there is no estimate.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Iterable

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from bsweep import records
from bsweep.plan import PlannedTrial, study_dir

# How often the watcher reads the trial records, in seconds: often enough for a live bar,
# rarely enough to cost nothing beside training.
POLL_SECONDS = 0.5
ENDED = ("complete", "diverged", "failed", "oom")
FAILED = ("failed", "oom")
# At most this many failures are printed as they happen; the summary table lists them all.
MAX_FAILURE_LINES = 10
# Where stdout is not a terminal (a log, CI, SLURM), the running groups' progress is printed
# this often, in seconds: a long trial shows it is alive without flooding the log.
PLAIN_SECONDS = 30.0


def fraction_done(status: dict | None, ended: bool) -> float:
    """How much of a trial is done, 0 to 1: 1 once it ended, its steps over total steps while
    it trains (the `progress` of its `running` status), 0 before it starts or when its running
    status carries no progress yet."""
    if ended:
        return 1.0
    progress = (status or {}).get("progress") if (status or {}).get("status") == "running" else None
    try:
        return min(1.0, max(0.0, progress["step"] / progress["total_steps"]))
    except (TypeError, KeyError, ZeroDivisionError):
        return 0.0


def eta_seconds(elapsed: float, costs: Iterable[float], fractions: Iterable[float]) -> float | None:
    """Seconds left when `elapsed` seconds did the done part of the planned work: trial i plans
    costs[i] (only ratios matter) and has fractions[i] of it done. None until some work is done."""
    done = left = 0.0
    for cost, fraction in zip(costs, fractions):
        done += cost * fraction
        left += cost * (1.0 - fraction)
    if done <= 0.0 or not math.isfinite(done):
        return None
    return elapsed * left / done


def format_seconds(seconds: float) -> str:
    """`9 s`, `2 min 05 s`, `1 h 07 min`: to the second below an hour."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def summary_line(ended: int, total: int, elapsed: float, eta: float | None) -> str:
    """The plain progress line: trials of this sweep ended, time elapsed and, once known, left."""
    line = f"progress: {ended}/{total} trials ended, {format_seconds(elapsed)} elapsed"
    return line + (f", ETA {format_seconds(eta)}" if eta is not None else "")


def progress_text(progress: list[dict]) -> str:
    """A running trial's (or fused group's) `progress` fields in words: `step 120/480,
    1920 samples, test acc 0.412` (a group: its members' range of test accuracy)."""
    first = max(progress, key=lambda p: p.get("step", 0))
    text = f"step {first.get('step', 0)}/{first.get('total_steps', '?')}"
    if first.get("samples") is not None:
        text += f", {first['samples']} samples"
    accs = sorted(float(p["test_acc"]) for p in progress if p.get("test_acc") is not None)
    if accs:
        text += f", test acc {accs[0]:.3f}" + (f"-{accs[-1]:.3f}" if accs[-1] != accs[0] else "")
    return text


def group_label(points: list[str]) -> str:
    """A running group's name: its members' common grid point, then how many train in it."""
    if len(points) == 1:
        return points[0] or "default point"
    common = [o for o in points[0].split() if all(o in p.split() for p in points[1:])]
    return f"{' '.join(common) or 'fused group'} ({len(points)} trials)"


def running_groups(statuses: dict[str, dict], points: dict[str, str]) -> list[tuple[str, list[dict]]]:
    """(label, members' progress) for each group training now: trials whose status is
    `running` with a `progress`, fused members together (the same process and `fused_with`).
    A trial whose status has no progress yet shows nothing."""
    groups: dict[tuple, list[str]] = {}
    for tid, status in statuses.items():
        if status.get("status") != "running" or not isinstance(status.get("progress"), dict):
            continue
        fused = status.get("fused_with")
        key = (status.get("host"), status.get("pid"), tuple(sorted(fused))) if fused else (tid,)
        groups.setdefault(key, []).append(tid)
    return [(group_label([points.get(t, t) for t in tids]), [statuses[t]["progress"] for t in tids])
            for tids in sorted(groups.values())]


def running_lines(statuses: dict[str, dict], points: dict[str, str]) -> list[str]:
    """One plain line per running group: `  training batch_size=16 norm=batch: step 120/480, ...`."""
    return [f"  training {label}: {progress_text(progress)}" for label, progress in running_groups(statuses, points)]


def trial_folder(p: PlannedTrial) -> Path:
    """The folder of a planned trial's record."""
    return records.trial_dir(study_dir(p.config), p.trial_id)


def status_of(p: PlannedTrial) -> dict:
    """A planned trial's status record; {} when it has none or it cannot be read."""
    try:
        return records.read_status(trial_folder(p)) or {}
    except records.DamagedRecord:
        return {}


def grid_points(planned: list[PlannedTrial]) -> dict[str, str]:
    """trial_id -> its point in the grid: the overrides that differ between the plan's trials
    (all of them for a one-trial plan)."""
    common = set.intersection(*(set(p.overrides) for p in planned)) if len(planned) > 1 else set()
    return {p.trial_id: " ".join(o for o in p.overrides if o not in common) for p in planned}


def describe(p: PlannedTrial, point: str | None = None) -> str:
    """A trial as the user swept it: its id and its grid point."""
    point = " ".join(p.overrides) if point is None else point
    return f"{p.trial_id} ({point or 'default point'})"


class Watcher(threading.Thread):
    """Reads the records of the trials this sweep trains every POLL_SECONDS: draws a bar and
    each running group's steps in a terminal, plain lines elsewhere (when trials end, and every
    PLAIN_SECONDS with the running groups), and prints each failure the moment its record says
    so. The time left weighs each trial by its planned cost (`eta_seconds`)."""

    def __init__(self, planned: list[PlannedTrial], todo: list[PlannedTrial], console: Console, since: float,
                 costs: dict[str, float]) -> None:
        """`todo`: the planned trials not finished before; `costs`: trial_id -> planned cost."""
        super().__init__(daemon=True)
        self.todo, self.console, self.since = todo, console, since
        self.costs = [costs.get(p.trial_id, 1.0) for p in todo]
        self.stop = threading.Event()
        # wall-clock times (time.time()), as the records' own `started` and `time`
        self.start_time = time.time()
        self.work_started: float | None = None  # when this sweep's first trial started training
        self._cache: dict[str, tuple[tuple, str, dict]] = {}  # trial_id -> (status file stamp, state, status)
        self.reported: set[str] = set()
        self.points = grid_points(planned)
        # a running trial's name: its grid point (a one-trial plan has none: its id)
        self.labels = self.points if len(planned) > 1 else {p.trial_id: f"trial {p.trial_id}" for p in planned}
        self.ended, self.fractions, self.running = 0, [0.0] * len(self.todo), {}
        self.plain_at = self.start_time  # when plain lines were last printed

    def _state(self, p: PlannedTrial) -> tuple[str, dict]:
        """(trial_state, status record), re-read only when status.json changed (a finished study
        of hundreds of trials would otherwise re-read every parquet file twice a second)."""
        path = trial_folder(p) / records.STATUS_FILE
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = ()
        cached = self._cache.get(p.trial_id)
        if cached and cached[0] == stamp and cached[1] not in ("running", "interrupted"):
            return cached[1], cached[2]
        state, status = records.trial_state(trial_folder(p)), status_of(p)
        self._cache[p.trial_id] = (stamp, state, status)
        return state, status

    def _poll(self, say) -> int:
        """Read every record; say each new failure; return the trials this sweep ended."""
        ended, fractions, running, starts = 0, [], {}, []
        for p in self.todo:
            state, record = self._state(p)
            this_run = state in ENDED and record.get("time", 0) >= self.since  # not an old failure
            ended += this_run
            if this_run or state == "running":
                starts.append(record.get("started") or time.time())
            fractions.append(fraction_done(record, this_run))
            if state == "running":
                running[p.trial_id] = record
            if this_run and state in FAILED and p.trial_id not in self.reported:
                self.reported.add(p.trial_id)
                if len(self.reported) <= MAX_FAILURE_LINES:
                    error = str(record.get("error", "")).splitlines()[0][:200] if record.get("error") else ""
                    say(f"[red]{state}[/]: trial {describe(p, self.points[p.trial_id])}: {error}")
                elif len(self.reported) == MAX_FAILURE_LINES + 1:
                    say("[red]more failures[/]: the summary at the end lists them all")
        if starts:  # from the records, not from polls: a fast trial may start and end between two
            first = max(self.since, min(starts))
            self.work_started = first if self.work_started is None else min(self.work_started, first)
        self.ended, self.fractions, self.running = ended, fractions, running
        return ended

    def eta(self, now: float) -> float | None:
        """Seconds left: the time since the first trial started, scaled by planned cost."""
        if self.work_started is None:
            return None
        return eta_seconds(now - self.work_started, self.costs, self.fractions)

    def plain_lines(self, now: float, last_ended: int) -> list[str]:
        """What the plain display prints after a poll at `now`: the progress line when trials
        ended since the last one, and every PLAIN_SECONDS with each running group's progress."""
        lines = []
        due = now - self.plain_at >= PLAIN_SECONDS
        if self.ended != last_ended or due:
            lines.append(summary_line(self.ended, len(self.todo), now - self.start_time, self.eta(now)))
        if due:
            lines += running_lines(self.running, self.labels)
        if lines:
            self.plain_at = now
        return lines

    def run(self) -> None:
        if self.console.is_terminal:
            self._run_bar()
            return
        say = lambda m: self.console.print(m, highlight=False)  # noqa: E731
        last = self._poll(say)
        while not self.stop.wait(POLL_SECONDS):
            before = last
            last = self._poll(say)
            for line in self.plain_lines(time.time(), before):
                self.console.print(line, highlight=False, markup=False)
        self._poll(say)

    def _run_bar(self) -> None:
        """The terminal display: a bar of trials ended, then a bar of steps per running group."""
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[info]}"))
        groups: dict[str, TaskID] = {}
        with Progress(*columns, console=self.console, transient=False) as bar:
            say = lambda m: bar.console.print(m, highlight=False)  # noqa: E731
            trials = bar.add_task("trials", total=len(self.todo), info="")
            while True:
                done = self._poll(say)
                eta = self.eta(time.time())
                bar.update(trials, completed=done, info=f"ETA {format_seconds(eta)}" if eta is not None else "")
                shown = dict(running_groups(self.running, self.labels))
                for label in set(groups) - set(shown):
                    bar.remove_task(groups.pop(label))
                for label, progress in shown.items():
                    step = max(p.get("step", 0) for p in progress)
                    total = max(p.get("total_steps", 0) for p in progress) or None
                    info = progress_text(progress).partition(", ")[2]  # the bar shows the steps
                    if label not in groups:
                        groups[label] = bar.add_task(f"  {escape(label)}", total=total, info="")
                    bar.update(groups[label], completed=step, total=total, info=escape(info))
                if self.stop.wait(POLL_SECONDS):
                    break
            for task in groups.values():
                bar.remove_task(task)
            bar.update(trials, completed=self._poll(say), info="")
