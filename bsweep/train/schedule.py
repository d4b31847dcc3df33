"""A trial's arithmetic in steps: its budget, when it measures, its learning-rate factor. No
torch, so planning and analysis can use it without loading a framework."""

from __future__ import annotations

import math

from bsweep.config import BudgetConfig, EvalConfig, ScheduleConfig


def total_steps(budget: BudgetConfig, n_train: int, batch_size: int) -> int:
    """The budget in optimizer steps: the first of the epoch and step limits to be reached
    (rule "any") or the last (rule "all").

    Each epoch is n_train // batch_size steps at exactly `batch_size` (the remainder of the
    permutation is dropped), so every step of a trial uses the same batch size.
    """
    steps_per_epoch = n_train // batch_size
    limits = []
    if budget.epochs is not None:
        limits.append(max(1, math.floor(budget.epochs * steps_per_epoch)))
    if budget.steps is not None:
        limits.append(budget.steps)
    if not limits:
        raise ValueError("study.budget needs epochs or steps (or both)")
    return max(limits) if budget.rule == "all" else min(limits)


def measurement_steps(cadence: EvalConfig, batch_size: int, steps: int) -> list[int]:
    """Steps after which to measure: step 0, the grid in samples seen, and the last step.

    The grid is the same list of sample counts for every batch size (geometric from
    `first_samples` with ratio `growth`, gaps capped at `max_gap_samples`); a trial measures at
    the first step whose samples seen reach each grid point.
    """
    last_samples = steps * batch_size
    points = {0, steps}
    s = float(cadence.first_samples)
    while s < last_samples:
        points.add(math.ceil(s / batch_size))
        s += min(max(s * (cadence.growth - 1.0), 1.0), cadence.max_gap_samples)
    return sorted(p for p in points if p <= steps)


def lr_factor(schedule: ScheduleConfig, step: int, steps: int) -> float:
    """Multiplier on the base learning rate for the update made at `step` (0-based)."""
    warmup = round(schedule.warmup_fraction * steps)
    if step < warmup:
        return (step + 1) / warmup
    if schedule.name == "cosine":
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule.name in ("constant", "warmup"):
        return 1.0
    raise ValueError(f"unknown schedule {schedule.name!r}")
