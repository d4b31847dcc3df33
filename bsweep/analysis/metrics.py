"""Metrics: tidy frames in, tidy frames out.

Three steps, each a pure function:

1. ``summarize_trials``: one row per trial -> the same rows plus per-trial metrics
   (final and best accuracy, steps/epochs/samples/seconds to target, throughput, diverged).
2. ``aggregate_over_seeds``: per scientific point and learning rate, mean / std / standard error /
   count over seeds. This is the **fixed learning rate** view: each lr on its own.
3. ``tuned_view``: per scientific point, the row of the best lr by a stated criterion, chosen
   on the validation half of the test set and reported on the held-out half. This is the
   **tuned** view (Deep Learning Tuning Playbook: lr and seed are nuisance parameters, batch size
   and normalization are scientific). ``time_optimal_batch_size`` then picks, per condition, the
   batch size with the least time (or steps) to target.

No torch, no runner imports: these functions only read the frames of ``bsweep.analysis.load``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

import bsweep.records as records
from bsweep.analysis.load import NUISANCE_PREFIX

# Columns that identify a scientific point, in the order used for sorting and display.
# Only those present in a frame are used, so hand-made frames may omit the ones they do not vary.
# lr and seed are deliberately absent: they are nuisance parameters. Every other key a study
# varies is a point column too (`bsweep.analysis.load` adds it under its dotted name).
POINT_COLUMNS: tuple[str, ...] = ("data", "model", "optim", "schedule", "norm", "batch_size")
# Top-level config keys (no dot in their name) that are scientific when a study varies them.
TOP_LEVEL_KEYS: tuple[str, ...] = ("lr_scaling", "base_batch_size")

# Trials whose numbers are final. A running trial's last measurement is not its final accuracy,
# and a failed / oom trial has no (or partial) measurements; both are counted in the report,
# not averaged.
FINISHED_STATUSES: tuple[str, ...] = records.FINISHED  # the on-disk contract's definition

# Per-trial metrics that are averaged over seeds by default.
DEFAULT_METRICS: tuple[str, ...] = (
    "final_test_acc",
    "final_test_error",
    "best_test_acc",
    "final_test_loss",
    "steps_to_target",
    "epochs_to_target",
    "samples_to_target",
    "seconds_to_target",
    "samples_per_second",
    "loss_jitter",
)

# The per-trial columns that ``summarize_trials`` adds.
TRIAL_METRIC_COLUMNS: tuple[str, ...] = DEFAULT_METRICS + (
    "initial_test_loss",
    "final_train_loss",
    "trained",
    "diverged",
    "n_measurements",
    "last_step",
    "last_epoch",
    "last_samples",
    "last_seconds",
)

# Which way is better for each metric the tuned view may optimise.
METRIC_GOAL: dict[str, Literal["max", "min"]] = {
    "final_test_acc": "max",
    "best_test_acc": "max",
    "final_test_error": "min",
    "final_test_loss": "min",
    "steps_to_target": "min",
    "epochs_to_target": "min",
    "samples_to_target": "min",
    "seconds_to_target": "min",
    "samples_per_second": "max",
}


# A trial "trained" at its lr (N4: the lr range a network tolerates) when its final test loss
# ended below this share of its loss at step 0 (the untrained network's, ~ln(classes)) and no
# loss went non-finite. Collapsed runs end at 0.9-1.03x their initial loss on mnist1d (accuracy
# at chance); runs that learn anything end far below (the slowest, at lr 0.003 on bs 512 without
# normalization: 0.87-0.98x): 0.9 tells "diverged or collapsed" from "learned", and a slow
# learner at a small lr does not matter for the upper end of the range.
TRAINED_LOSS_SHARE = 0.9
# The window of C7's loss jitter: the second half of the study's epoch budget, the same samples
# for every batch size (the budget's other term, a minimum of steps, makes large batches train
# longer, so their extra epochs are left out), and past the first epochs' fast descent, whose
# loss differences measure the trend more than the oscillation.
JITTER_WINDOW = (0.5, 1.0)  # shares of the budget in epochs


def point_columns(frame: pd.DataFrame) -> list[str]:
    """The scientific-point columns present in ``frame``: POINT_COLUMNS, then every other swept
    config key (a dotted name such as ``model.width``, or one of TOP_LEVEL_KEYS), then
    batch_size last."""
    base = [c for c in POINT_COLUMNS if c in frame.columns and c != "batch_size"]
    swept = [c for c in frame.columns if isinstance(c, str) and ("." in c or c in TOP_LEVEL_KEYS)
             and not c.startswith(NUISANCE_PREFIX)]
    return base + swept + (["batch_size"] if "batch_size" in frame.columns else [])


def nuisance_columns(frame: pd.DataFrame) -> list[str]:
    """The columns the tuned view optimises over: lr, then every other nuisance key of the
    study (``nuisance:<key>``, see ``bsweep.analysis.load``). The fixed-lr view keeps each
    combination of their values apart."""
    return (["lr"] if "lr" in frame.columns else []) + [
        c for c in frame.columns if isinstance(c, str) and c.startswith(NUISANCE_PREFIX)]


def condition_columns(frame: pd.DataFrame) -> list[str]:
    """Point columns except batch_size: one curve over batch size per value of these."""
    return [c for c in point_columns(frame) if c != "batch_size"]


# The test set's halves (`bsweep.train.engine.evaluate`): the tuned view picks the lr on the
# validation half's metrics and reports the held-out half's. The prefix of a metric's column
# names the half it was computed on (``val_final_test_acc``); no prefix is the whole test set.
SPLIT_PREFIXES: tuple[str, ...] = ("val_", "heldout_")
# Metrics computed from a test accuracy or loss, so they exist once per half as well.
SPLIT_METRICS: tuple[str, ...] = (
    "final_test_acc", "final_test_error", "best_test_acc", "final_test_loss",
    "steps_to_target", "epochs_to_target", "samples_to_target", "seconds_to_target",
)


def _accuracy_metrics(m: pd.DataFrame, targets: pd.Series, acc: str, loss: str,
                      final_window: int) -> pd.DataFrame:
    """Per trial_id (``m`` sorted by trial and step): the SPLIT_METRICS from the accuracy column
    ``acc`` and loss column ``loss`` of the measurements."""
    out = pd.DataFrame(index=pd.Index(m["trial_id"].unique(), name="trial_id"))
    window = m[m["step"] > 0].groupby("trial_id", sort=False).tail(final_window)
    window_mean = window.groupby("trial_id")[[acc, loss]].mean()
    out["final_test_acc"] = window_mean[acc]
    out["final_test_error"] = 1.0 - out["final_test_acc"]
    out["final_test_loss"] = window_mean[loss]
    out["best_test_acc"] = m.groupby("trial_id", sort=False)[acc].max()
    # First crossing of the target: rows are sorted by step, so the first row kept per trial
    # after filtering is the earliest measurement at or above target.
    hits = m[m[acc] >= m["trial_id"].map(targets)].drop_duplicates("trial_id", keep="first")
    hits = hits.set_index("trial_id")
    for unit, column in (("steps", "step"), ("epochs", "epoch"), ("samples", "samples"),
                         ("seconds", "train_seconds")):
        out[f"{unit}_to_target"] = hits[column]
    return out


def summarize_trials(
    trials: pd.DataFrame, measurements: pd.DataFrame, final_window: int = 3
) -> pd.DataFrame:
    """Add per-trial metrics to ``trials`` (one row per trial, order and index kept).

    Definitions (all from the trial's measurements, sorted by step):

    - ``final_test_acc``: mean test accuracy of the last ``final_window`` measurements after
      step 0 (the initial model is never "final"). Averaging a few evaluations damps the
      evaluation-to-evaluation noise of a single last point. ``final_test_error`` = 1 - that.
      ``final_test_loss``: the mean test loss over the same window (inf if the trial diverged).
    - ``best_test_acc``: highest test accuracy at any measurement.
    - ``steps_to_target`` / ``epochs_to_target`` / ``samples_to_target`` / ``seconds_to_target``:
      step, epoch, samples and training seconds of the first measurement whose test accuracy is
      >= the trial's ``target``; NaN when the target is never reached.
    - ``samples_per_second``: samples seen / training seconds at the last measurement.
    - ``diverged``: status is "diverged", or a test loss, or a train loss after step 0, is not
      finite (train loss is NaN at step 0 by contract: no training happened yet).
    - ``n_measurements`` and ``last_step`` / ``last_epoch`` / ``last_samples`` / ``last_seconds``:
      how far the trial got (tells "never reached the target" apart from "stopped early").
    - ``val_<metric>`` and ``heldout_<metric>`` for each of SPLIT_METRICS: the same metric on
      the validation and on the held-out half of the test set. Only when every trial with
      measurements recorded both halves (a study trained before they existed has none), so a
      tuned view never mixes trials selected on different data.

    Trials with no measurements get NaN metrics, ``n_measurements`` 0.
    """
    if final_window < 1:
        raise ValueError(f"final_window must be >= 1, got {final_window}")
    out = trials.copy()
    m = measurements[measurements["trial_id"].isin(trials["trial_id"])]
    m = m.sort_values(["trial_id", "step"], kind="stable").reset_index(drop=True)
    per_trial = pd.DataFrame(index=pd.Index(trials["trial_id"].unique(), name="trial_id"))
    halves = [p for p in SPLIT_PREFIXES if f"{p}acc" in m.columns]
    split = len(m) > 0 and len(halves) == len(SPLIT_PREFIXES) and bool(
        m.groupby("trial_id")[[f"{p}acc" for p in halves]].count().gt(0).all().all())

    if len(m):
        per_trial = _measured_metrics(per_trial, m, trials, split, final_window)

    columns = list(TRIAL_METRIC_COLUMNS)
    if split:
        columns += [p + c for p in SPLIT_PREFIXES for c in SPLIT_METRICS]
    for column in columns + ["nonfinite_loss"]:
        if column not in per_trial.columns and column != "diverged":
            per_trial[column] = np.nan
    per_trial["final_test_error"] = 1.0 - per_trial["final_test_acc"]
    per_trial["n_measurements"] = per_trial["n_measurements"].fillna(0).astype(int)
    nonfinite = per_trial["nonfinite_loss"].astype("boolean").fillna(False).astype(bool)

    joined = per_trial.drop(columns="nonfinite_loss").reindex(out["trial_id"].to_numpy())
    for column in columns:
        if column == "diverged":
            continue
        out[column] = joined[column].to_numpy()
    out["diverged"] = (out["status"] == "diverged").to_numpy() | nonfinite.reindex(
        out["trial_id"].to_numpy()
    ).to_numpy()
    finite_loss = np.isfinite(out["final_test_loss"].astype(float))
    out["trained"] = (~out["diverged"] & finite_loss
                      & (out["final_test_loss"] < TRAINED_LOSS_SHARE * out["initial_test_loss"])).astype(float).where(
        out["n_measurements"] > 0)  # 1.0 / 0.0, NaN without measurements
    return out


def _measured_metrics(per_trial: pd.DataFrame, m: pd.DataFrame, trials: pd.DataFrame, split: bool,
                      final_window: int) -> pd.DataFrame:
    """`per_trial` (indexed by trial id) plus the metrics the sorted measurement rows `m` give:
    accuracy, how far each trial got, throughput, losses, jitter (see `summarize_trials`)."""
    grouped = m.groupby("trial_id", sort=False)
    last = grouped.tail(1).set_index("trial_id")
    targets = trials.drop_duplicates("trial_id").set_index("trial_id")["target"]
    per_trial = per_trial.join(_accuracy_metrics(m, targets, "test_acc", "test_loss", final_window))
    if split:
        for prefix in SPLIT_PREFIXES:
            half = _accuracy_metrics(m, targets, f"{prefix}acc", f"{prefix}loss", final_window)
            per_trial = per_trial.join(half.add_prefix(prefix))
    per_trial["n_measurements"] = grouped.size()
    per_trial["last_step"] = last["step"]
    per_trial["last_epoch"] = last["epoch"]
    per_trial["last_samples"] = last["samples"]
    per_trial["last_seconds"] = last["train_seconds"]
    seconds = last["train_seconds"].where(last["train_seconds"] > 0)
    per_trial["samples_per_second"] = last["samples"] / seconds

    final_rows = m[m["step"] > 0].groupby("trial_id", sort=False).tail(final_window)
    per_trial["final_train_loss"] = final_rows.groupby("trial_id")["train_loss"].mean()
    initial = m[m["step"] == 0].drop_duplicates("trial_id").set_index("trial_id")["test_loss"]
    per_trial["initial_test_loss"] = initial
    per_trial["loss_jitter"] = _loss_jitter(m, trials)

    bad_test = ~np.isfinite(m["test_loss"].astype(float))
    bad_train = (m["step"] > 0) & ~np.isfinite(m["train_loss"].astype(float))
    per_trial["nonfinite_loss"] = (bad_test | bad_train).groupby(m["trial_id"]).any()
    return per_trial


def _loss_jitter(m: pd.DataFrame, trials: pd.DataFrame) -> pd.Series:
    """Per trial: the root mean square of its rows' train_loss_jitter over JITTER_WINDOW of its
    budget in epochs, each row weighted by the steps it covers (C7). NaN without the column (a
    study trained before it existed) or without a row in the window."""
    if "train_loss_jitter" not in m.columns:
        return pd.Series(np.nan, index=pd.Index(m["trial_id"].unique(), name="trial_id"))
    epochs = trials.drop_duplicates("trial_id").set_index("trial_id")
    budget = (epochs["budget_epochs"].astype(float) if "budget_epochs" in epochs.columns
              else pd.Series(np.nan, index=epochs.index))
    budget = budget.fillna(m.groupby("trial_id")["epoch"].max())
    span = m["trial_id"].map(budget)
    weight = m.groupby("trial_id", sort=False)["step"].diff()
    inside = ((m["epoch"] > JITTER_WINDOW[0] * span) & (m["epoch"] <= JITTER_WINDOW[1] * span)
              & np.isfinite(m["train_loss_jitter"].astype(float)) & (weight > 0))
    rows = m[inside]
    w = weight[inside]
    sq = (rows["train_loss_jitter"].astype(float) ** 2 * w).groupby(rows["trial_id"]).sum()
    return np.sqrt(sq / w.groupby(rows["trial_id"]).sum())


def aggregate_over_seeds(
    summary: pd.DataFrame,
    metrics: Sequence[str] = DEFAULT_METRICS,
    by: Sequence[str] | None = None,
    statuses: Sequence[str] = FINISHED_STATUSES,
) -> pd.DataFrame:
    """Mean, std, standard error and count of each metric over seeds: the fixed-lr view.

    ``by`` defaults to the scientific point columns plus the nuisance columns but seed (each lr,
    and each value of another nuisance key, on its own). Only
    trials whose status is in ``statuses`` are used (finished ones, by default).

    Output: one row per group with the ``by`` columns, ``n_trials``, ``n_diverged``,
    ``n_reached_target``, and for each metric ``<metric>_mean``, ``<metric>_std`` (ddof 1, NaN
    with one value), ``<metric>_sem`` (std / sqrt(count)) and ``<metric>_count`` (number of
    finite values). Means skip NaN: a to-target mean is over the seeds that reached the target,
    so read it with ``n_reached_target``.
    """
    if by is None:
        by = [*point_columns(summary), *nuisance_columns(summary)]
    by = list(by)
    finished = summary[summary["status"].isin(statuses)]
    metrics = [m for m in metrics if m in finished.columns]
    # each metric on the test set's halves too, where the summary has them (see tuned_view)
    metrics += [p + m for p in SPLIT_PREFIXES for m in metrics if p + m in finished.columns]
    # inf (e.g. a diverged loss) would poison mean and std; count it as missing here,
    # divergence is reported by n_diverged.
    values = finished[metrics].astype(float).replace([np.inf, -np.inf], np.nan)
    halves = [p for p in SPLIT_PREFIXES if f"{p}steps_to_target" in finished.columns]
    flags = pd.DataFrame({"_diverged": finished["diverged"].astype(bool),
                          **{f"_{p}reached": finished[f"{p}steps_to_target"].notna() for p in ["", *halves]}})
    # The groups once, as codes in their sorted order; every reduction below groups by the codes.
    # One reduction covers all metric columns at once: a report aggregates ~100 columns several
    # times, and per-column calls add up (docs/performance.md, "Analysis"); the numbers are the same.
    points = finished.groupby(by, sort=True, dropna=False)
    size, codes = points.size(), points.ngroup().to_numpy()
    grouped = values.groupby(codes)
    mean, std, count = grouped.mean(), grouped.std(ddof=1), grouped.count()
    counts = flags.groupby(codes).sum().astype(int)
    columns = {
        "n_trials": size.to_numpy(),
        "n_diverged": counts["_diverged"].to_numpy(),
        **{f"{p}n_reached_target": counts[f"_{p}reached"].to_numpy() for p in ["", *halves]},
    }
    # as arrays: taking columns out of a MultiIndex-ed frame one by one is slow
    mean, std, count = (frame[metrics].to_numpy() for frame in (mean, std, count))
    for j, metric in enumerate(metrics):
        columns[f"{metric}_mean"] = mean[:, j]
        columns[f"{metric}_std"] = std[:, j]
        columns[f"{metric}_sem"] = std[:, j] / np.sqrt(count[:, j])
        columns[f"{metric}_count"] = count[:, j].astype(int)
    return pd.DataFrame(columns, index=size.index).reset_index()


def tuned_view(
    aggregated: pd.DataFrame,
    criterion: str = "final_test_acc",
    goal: Literal["max", "min"] | None = None,
    by: Sequence[str] | None = None,
) -> pd.DataFrame:
    """For each scientific point, the aggregated row of the best learning rate.

    ``aggregated`` is the output of ``aggregate_over_seeds`` (one row per point and lr).
    The best lr is chosen, in this order of preference:

    1. fewest diverged seeds (an lr that sometimes diverges is not a safe choice);
    2. fewest seeds missing the criterion (e.g. seeds that never reached the target);
    3. best mean of ``criterion`` over seeds (``goal`` "max" or "min"; from ``METRIC_GOAL``
       when not given).

    **Select on one half, report on the other.** When ``aggregated`` has the test set's halves
    (``val_*`` and ``heldout_*`` columns, see ``summarize_trials``), steps 2 and 3 read the
    validation half, and the row returned carries the held-out half's numbers under the plain
    metric names (``final_test_acc_mean`` ... and ``n_reached_target``): the numbers reported
    are not the ones that chose the lr, so a point with more lr candidates is not flattered by
    more chances at a lucky draw. ``selected_on`` says which: "validation half" or, for a
    study whose trials predate the halves, "test set" (the same numbers select and report, an
    optimistic view). The whole-test-set values stay under ``test_<column>``.

    Adds ``best_lr`` (= ``lr``), ``tuned_by`` (the criterion), ``n_lr`` (how many lr values were
    tried at that point, at the best values of any other nuisance keys) and ``lr_on_edge``: True when the best lr is the smallest or the largest
    lr tried there (the optimum may lie outside the grid), and also when only one lr was tried
    (nothing was tuned); never where no seed at any lr has a value of the criterion (there is
    no best lr then). ``lr_edge`` names it: "lower", "upper", "only" or "";
    ``lr_lowest`` and ``lr_highest`` are the edges themselves.
    """
    goal = goal or METRIC_GOAL[criterion]
    if by is None:
        by = point_columns(aggregated)
    by = list(by)
    frame = aggregated
    split = f"val_{criterion}_mean" in frame.columns and f"heldout_{criterion}_mean" in frame.columns
    select = "val_" if split else ""
    mean = frame[f"{select}{criterion}_mean"].astype(float)
    # The ranking reads a few columns only: sorting them, not the ~100-column frame, and taking
    # each point's first row keeps a report's many tuned views cheap.
    ranking = pd.concat([frame[[*by, "n_diverged"]],
                         (frame["n_trials"] - frame[f"{select}{criterion}_count"]).rename("_missing"),
                         # A point whose mean is NaN (no seed has a value) is ranked last.
                         (-mean if goal == "max" else mean).fillna(np.inf).rename("_score")], axis=1)
    ranking = ranking.reset_index(drop=True)  # positions: a frame's labels need not be unique
    first = ranking.sort_values([*by, "n_diverged", "_missing", "_score"], kind="stable").drop_duplicates(by).index
    best = frame.iloc[first].set_index(by)
    if split:
        reported = [c[len("heldout_"):] for c in best.columns if c.startswith("heldout_")]
        held = best[[f"heldout_{c}" for c in reported]].set_axis(reported, axis=1)
        best = pd.concat([best.drop(columns=reported), best[reported].add_prefix("test_"), held], axis=1)
    best["selected_on"] = "validation half" if split else "test set"

    # The lrs tried at the best row's values of the other nuisance keys (lr is bracketed when
    # it is not at the edge of those).
    others = [c for c in nuisance_columns(frame) if c != "lr"]
    keys = [*by, *others]
    lrs = frame.groupby(keys, sort=False, dropna=False)["lr"]
    lr_min, lr_max, n_lr = (lrs.transform(f).to_numpy()[first] for f in ("min", "max", "nunique"))
    best["best_lr"] = best["lr"]
    best["tuned_by"] = criterion
    best["n_lr"] = n_lr.astype(int)
    best["lr_lowest"], best["lr_highest"] = lr_min, lr_max
    lowest = best["lr"] == lr_min
    highest = best["lr"] == lr_max
    # Where no seed at any lr has a value (no lr reached the target, say) there is no best lr,
    # only the first of a tie: no edge to extend past.
    valued = best[f"{select}{criterion}_count"] > 0
    best["lr_on_edge"] = (lowest | highest | (best["n_lr"] < 2)) & valued
    # Which edge: the optimum may lie below the lowest lr tried, or above the highest. An lr
    # above the best whose every seed diverged brackets it (the tuned view never picks an lr
    # with diverged seeds when one without exists), so "upper" means nothing above was tried.
    best["lr_edge"] = np.select([~valued, best["n_lr"] < 2, lowest, highest], ["", "only", "lower", "upper"], "")
    return best.reset_index()


def time_optimal_batch_size(
    view: pd.DataFrame,
    metric: str = "seconds_to_target",
    by: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per condition (norm, ... and lr for a fixed-lr view), the batch size with least ``metric``.

    ``view`` is an aggregated frame (fixed-lr or tuned). Only batch sizes at which every seed
    reached the target are candidates: a mean over the lucky seeds would flatter a batch size.
    ``by`` defaults to the condition columns, plus ``lr`` when the view is the fixed-lr view
    (it has an ``lr`` column but no ``best_lr``).

    Output per condition: ``batch_size`` (the optimum; NaN when no batch size qualifies),
    ``<metric>_mean`` and ``<metric>_sem`` there, ``n_batch_sizes`` (candidates), and
    ``on_edge``: True when the optimum is the smallest or largest candidate batch size, i.e. the
    grid does not show a minimum with both sides.
    """
    if by is None:
        by = condition_columns(view)
        if "lr" in view.columns and "best_lr" not in view.columns:
            by += nuisance_columns(view)
    by = list(by)
    all_reached = view["n_reached_target"] == view["n_trials"]
    candidates = view[all_reached & view[f"{metric}_mean"].notna()]
    rows = []
    groups = view.groupby(by, sort=True, dropna=False) if by else [((), view)]
    for key, _ in groups:
        key = key if isinstance(key, tuple) else (key,)
        mask = np.ones(len(candidates), dtype=bool)
        for column, value in zip(by, key):
            mask &= (candidates[column] == value).to_numpy()
        group = candidates[mask].sort_values("batch_size")
        row: dict[str, object] = dict(zip(by, key))
        row["n_batch_sizes"] = len(group)
        if len(group) == 0:
            row.update({"batch_size": np.nan, f"{metric}_mean": np.nan, f"{metric}_sem": np.nan})
            row["on_edge"] = True
        else:
            best = group.loc[group[f"{metric}_mean"].idxmin()]
            row["batch_size"] = best["batch_size"]
            row[f"{metric}_mean"] = best[f"{metric}_mean"]
            row[f"{metric}_sem"] = best[f"{metric}_sem"]
            row["on_edge"] = bool(
                best["batch_size"] in (group["batch_size"].min(), group["batch_size"].max())
            )
        rows.append(row)
    columns = [*by, "batch_size", f"{metric}_mean", f"{metric}_sem", "n_batch_sizes", "on_edge"]
    return pd.DataFrame(rows, columns=columns)
