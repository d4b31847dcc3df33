"""Learning-rate bracketing: which lrs to try next so that each point's best lr is interior.

Over a fixed lr grid the best lr of a batch size often sits on the grid's edge, and a tuned
comparison across batch sizes then measures the grid, not the batch size. After each round the
bracketing sweeper (`hydra/sweeper=bsweep_bracket`) asks `decide` what to add: for every
scientific point (every swept key but the nuisance keys) and every tuned criterion, the tuned
view (`metrics.tuned_view`, selecting on the validation half as the report does) names the best
lr and whether it is the lowest or highest lr tried there; on such an edge the next lr is half a
decade beyond it, on the 1-3 grid (0.3 -> 1 -> 3; 0.001 -> 0.0003). A point stops when its best
lr is interior on every criterion (an lr beyond the edge whose every seed diverged brackets it,
since the tuned view never picks an lr with diverged seeds over one without), or when the next
lr would leave [lr_min, lr_max], or after `max_rounds` rounds. The criterion RANGE_CRITERION
asks instead for the upper end of the lrs at which every seed trains (N4). Pure functions; the
sweeper's record (`records.BRACKET_FILE`) and its renderings for the CLI and report are in
`bsweep.records`, so the analysis reads them without importing bsweep.sweep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bsweep.analysis.metrics import DEFAULT_METRICS, METRIC_GOAL, aggregate_over_seeds, point_columns, tuned_view

# The criteria the tuned verdicts select lrs by: final accuracy (C1, C5, N1) and how fast the
# target is reached (C3, C4; epochs and seconds to target rank lrs as steps do at one batch size).
CRITERIA: tuple[str, ...] = ("final_test_acc", "steps_to_target")
# Not a best lr but a range (N4: which lrs a network tolerates): extend a point's upper edge
# while every seed at its highest lr still trained (`metrics.summarize_trials`' "trained"), so
# each norm's largest trainable lr is bracketed by one where some seed failed.
RANGE_CRITERION = "trained"
# Mantissas of the half-decade lr grid, as lr grids are usually written: 0.1, 0.3, 1, 3, 10.
MANTISSAS: tuple[int, ...] = (1, 3)
SIDES = ("lower", "upper")
# Its decisions read one study folder (checked before training and by the sweeper itself).
ONE_STUDY = ("hydra/sweeper=bsweep_bracket brackets one study per sweep: "
             "do not sweep study, study.name or results_dir")


def half_decade_grid(lo_exp: int, hi_exp: int) -> list[float]:
    """The 1-3 grid from 10^lo_exp to 3 x 10^hi_exp, ascending (floats parsed from text, so
    3e-4 is 0.0003, not 3 * 1e-4)."""
    return [float(f"{m}e{e}") for e in range(lo_exp, hi_exp + 1) for m in MANTISSAS]


def nearest_lrs(lr: float, n: int = 3) -> list[float]:
    """The `n` lrs of the half-decade grid nearest `lr` on a log scale, ascending."""
    e = math.floor(math.log10(lr))
    grid = half_decade_grid(e - 2, e + 2)
    return sorted(sorted(grid, key=lambda g: abs(math.log10(g / lr)))[:n])


def half_decade_beyond(lr: float, side: str) -> float:
    """The lr of the 1-3 grid nearest to lr x 10^(+-0.5), and strictly beyond `lr` on `side`."""
    if not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a positive number, not {lr!r}")
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, not {side!r}")
    sign = 1 if side == "upper" else -1
    aim = math.log10(lr) + sign * 0.5
    grid = half_decade_grid(math.floor(aim) - 1, math.floor(aim) + 1)
    beyond = [g for g in grid if (g > lr * (1 + 1e-9) if sign > 0 else g < lr * (1 - 1e-9))]
    return min(beyond, key=lambda g: (abs(math.log10(g) - aim), g))


@dataclass(frozen=True)
class Decision:
    """What bracketing does next at one point, on one side of its lrs."""

    point: tuple  # the point columns' values, in `columns` order
    columns: tuple[str, ...]
    shown: tuple[str, ...]  # the columns that vary over the sweep: the point's name in words
    side: str  # "lower" or "upper"
    edge_lr: float  # the lowest (or highest) lr tried at the point
    next_lr: float | None  # the lr to try next; None: this side stops here
    criteria: tuple[str, ...]  # the criteria whose best lr sits on this edge
    reason: str  # in words, for the log and the report

    @property
    def label(self) -> str:
        return " ".join(f"{c}={v}" for c, v in zip(self.columns, self.point) if c in self.shown) or "all trials"


def decide(
    summary: pd.DataFrame,
    lr_min: float,
    lr_max: float,
    max_rounds: int,
    rounds: Mapping[tuple[tuple, str], int] | None = None,
    criteria: Sequence[str] = CRITERIA,
    swept: Sequence[str] | None = None,
) -> list[Decision]:
    """One decision per (point, side) where some criterion's best lr sits on that edge.

    ``summary`` is ``metrics.summarize_trials`` of the sweep's trials so far; ``rounds`` counts
    the lrs already added per (point, side) (at most ``max_rounds`` each); ``swept``, the keys the
    sweep varies, names the points (default: the columns that vary in ``summary``, which may
    be fewer while only some points have ended). A decision with a
    ``next_lr`` asks for one more lr on that side; one without says why that side stopped
    unbracketed. Points whose best lr is interior on every criterion get no decision.
    """
    rounds = rounds or {}
    if summary.empty or "lr" not in summary.columns:
        return []
    fixed = aggregate_over_seeds(summary, metrics=[*DEFAULT_METRICS, RANGE_CRITERION])
    columns = tuple(point_columns(fixed))
    shown = tuple(c for c in columns if (c in swept if swept is not None else fixed[c].nunique(dropna=False) > 1))
    edges: dict[tuple[tuple, str], list[str]] = {}
    edge_lr: dict[tuple[tuple, str], float] = {}
    for criterion in criteria:
        if f"{criterion}_mean" not in fixed.columns:
            continue
        if criterion == RANGE_CRITERION:
            for point, row in _trained_at_top(fixed, columns).items():
                edges.setdefault((point, "upper"), []).append(criterion)
                edge_lr[(point, "upper")] = row
            continue
        tuned = tuned_view(fixed, criterion)
        for _, row in tuned.iterrows():
            if not row["lr_on_edge"]:  # interior, or no seed at any lr has a value: nothing to bracket
                continue
            point = tuple(row[c] for c in columns)
            sides = {"lower": float(row["lr_lowest"]), "upper": float(row["lr_highest"])}
            chosen = SIDES if row["lr_edge"] == "only" else (row["lr_edge"],)
            for side in chosen:
                edges.setdefault((point, side), []).append(criterion)
                edge_lr[(point, side)] = sides[side]
    decisions = []
    for (point, side), named in edges.items():
        edge = edge_lr[(point, side)]
        nxt = half_decade_beyond(edge, side)
        best = [n for n in named if n != RANGE_CRITERION]
        where = " and ".join([*([f"best lr ({', '.join(best)})"] if best else []),
                              *(["every seed trained"] if RANGE_CRITERION in named else [])]) + f" at the {side} edge, {edge:g}"
        if rounds.get((point, side), 0) >= max_rounds:
            decisions.append(Decision(point, columns, shown, side, edge, None, tuple(named),
                                      f"{where}: not bracketed, the {max_rounds} extra rounds allowed are spent"))
        elif not lr_min <= nxt <= lr_max:
            decisions.append(Decision(point, columns, shown, side, edge, None, tuple(named),
                                      f"{where}: not bracketed, {nxt:g} is outside [{lr_min:g}, {lr_max:g}]"))
        else:
            decisions.append(Decision(point, columns, shown, side, edge, nxt, tuple(named), f"{where}: trying {nxt:g}"))
    return sorted(decisions, key=lambda d: (d.label, d.side))


def _trained_at_top(fixed: pd.DataFrame, columns: tuple[str, ...]) -> dict[tuple, float]:
    """The points whose every seed at their highest lr trained: {point: that lr}."""
    out = {}
    for key, frame in fixed.groupby(list(columns), sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        top = frame[frame["lr"] == frame["lr"].max()]
        if (top["trained_count"] >= 1).all() and (top["trained_mean"] == 1).all():
            out[key] = float(top["lr"].iloc[0])
    return out


def settings_problems(lr_min: Any, lr_max: Any, max_rounds: Any, criteria: Sequence[str]) -> list[str]:
    """What is wrong with the sweeper's own settings, in words (empty when nothing is)."""
    problems = []
    try:
        lo, hi = float(lr_min), float(lr_max)
        if not 0 < lo < hi:
            problems.append(f"hydra.sweeper.lr_min={lr_min} and lr_max={lr_max} must satisfy 0 < lr_min < lr_max")
    except (TypeError, ValueError):
        problems.append(f"hydra.sweeper.lr_min={lr_min!r} and lr_max={lr_max!r} must be numbers")
    if not isinstance(max_rounds, int) or max_rounds < 0:
        problems.append(f"hydra.sweeper.max_rounds={max_rounds!r} must be a whole number >= 0")
    unknown = [c for c in criteria if c not in METRIC_GOAL and c != RANGE_CRITERION]
    if unknown or not criteria:
        problems.append(f"hydra.sweeper.criteria={list(criteria)} must name one or more of: "
                        f"{', '.join([*METRIC_GOAL, RANGE_CRITERION])}")
    return problems


def with_lr(overrides: Sequence[str], lr: float) -> list[str]:
    """A job's overrides with its lr set to `lr` (replaced where the job sets one)."""
    value = f"lr={lr:g}"
    out = [value if o.split("=", 1)[0].lstrip("+~") == "lr" else o for o in overrides]
    return out if value in out else [*out, value]
