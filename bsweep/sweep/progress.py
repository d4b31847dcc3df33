"""What a sweep shows while it runs, as pure functions of the trials' planned costs and their
status records: the time left, and how far each running trial (or fused group) has come.
`bsweep.sweep.launch` reads the records and prints; nothing here reads a clock or a file.

The time left is the elapsed time scaled by the planned cost still to do over the planned cost
done (`bsweep.sweep.executor`: steps x per-step costs + evaluations), counting running trials by their
steps done. Counting ended trials alone misleads twice: a study's trials differ in cost many
times over (small batches cost most and run first), and until one ends there is no estimate.
"""

from __future__ import annotations

import math
from typing import Iterable


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
