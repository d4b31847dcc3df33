"""The normalization claims of section 3.6 (N1-N7): each a judge function and its `Claim`.

The judges follow `verdict.py`: slice the study, judge each slice, `combine` the slices. The
`Claim` records at the end name each claim's statement, rule and protocols.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from bsweep.analysis.load import config_key
from bsweep.analysis.metrics import (
    DEFAULT_METRICS,
    FINISHED_STATUSES,
    aggregate_over_seeds,
    condition_columns,
    nuisance_columns,
    tuned_view,
)
from bsweep.analysis.views import SeedViews
from bsweep.analysis.stats import (
    MATTERS_ERROR,
    MATTERS_RELATIVE,
    MIN_SEEDS,
    SeedSpread,
    significant,
)
from bsweep.analysis.claims.verdict import (
    DOES_NOT_HOLD,
    FIXED_LR,
    HOLDS,
    INCONCLUSIVE,
    LR_RANGE,
    MIN_BATCH_SIZES_PAIR,
    SE,
    SPIKE_ERROR_RATIO,
    TUNED_LR,
    Claim,
    SliceOutcome,
    Verdict,
    build_view,
    combine,
    edge_caveat,
    format_batch_size,
    format_mean,
    slice_curve,
    split_slices,
    too_few,
    unbracketed_reason,
    usable_points,
)

# N5's cost comparison: weight norm is cheaper at a batch size where its step takes less than
# (1 - COST_MARGIN) of BatchNorm's. `bsweep bench` times every point in rounds, one block of
# each a round, so the two norms compare round by round: a sign test over the rounds (one-sided,
# PAIRED_ALPHA) says "cheaper", "not cheaper" or neither. Their best blocks alone had flipped the
# verdict between two runs of the same code on a loaded machine (docs/performance.md,
# "Analysis"). A bench from before the rounds were kept compares the best blocks, as before.
COST_MARGIN = 0.05
PAIRED_ALPHA = 0.05

# --------------------------------------------------------------------------- N1


def _lacks_norms(summary: pd.DataFrame, claim: Claim, protocol: str, needed: tuple[str, ...]) -> Verdict | None:
    """The inconclusive verdict of a claim whose study lacks one of the `needed` norm arms."""
    norms = set(summary["norm"]) if "norm" in summary.columns else set()
    missing = [n for n in needed if n not in norms]
    if not missing:
        return None
    reason = f"needs {' and '.join(f'norm={n}' for n in needed)}; missing " + ", ".join(sorted(missing))
    return combine(claim, protocol, [SliceOutcome("study", INCONCLUSIVE, reason, "")])


def verdict_n1(summary: pd.DataFrame, protocol: str = TUNED_LR, views: SeedViews | None = None) -> Verdict:
    """N1: BatchNorm's error rises as the batch shrinks, GroupNorm's does not."""
    if lacking := _lacks_norms(summary, N1, protocol, ("batch", "group")):
        return lacking
    view, columns = build_view(summary, protocol, "final_test_acc", views)
    view = view[view["norm"].isin(["batch", "group"])]
    columns = [c for c in columns if c != "norm"]
    outcomes = []
    slices = split_slices(view, columns, summary)
    for label, _, frame in slices:
        bn = usable_points(slice_curve(frame[frame["norm"] == "batch"], "final_test_error")).set_index("batch_size")
        gn = usable_points(slice_curve(frame[frame["norm"] == "group"], "final_test_error")).set_index("batch_size")
        common = sorted(set(bn.index) & set(gn.index))
        if len(common) < MIN_BATCH_SIZES_PAIR:
            outcomes.append(SliceOutcome(label, INCONCLUSIVE, too_few(MIN_BATCH_SIZES_PAIR) + " for both norms", ""))
            continue
        small = common[0]
        # Each norm's reference is its own lowest-error batch size among the common ones (the GN
        # paper compares with a typical batch size; under a fixed lr and budget the largest batch
        # size can be under-trained, which would hide the small-batch rise).
        rise, reference, spread = {}, {}, {}
        for name, curve in (("batch", bn), ("group", gn)):
            ref = curve.loc[common, "mean"].idxmin()
            reference[name] = ref
            spread[name] = SeedSpread.of(curve.loc[common], slices=len(slices))
            rise[name] = (
                curve.loc[small, "mean"] - curve.loc[ref, "mean"],
                spread[name].se(curve.loc[small, "count"], curve.loc[ref, "count"]),
            )
        numbers = (
            f"error at bs {format_batch_size(small)}: batch {format_mean(bn.loc[small, 'mean'], bn.loc[small, 'sem'], bn.loc[small, 'count'])}, "
            f"group {format_mean(gn.loc[small, 'mean'], gn.loc[small, 'sem'], gn.loc[small, 'count'])}; "
            f"rise over own best: batch {rise['batch'][0]:+.3g}±{rise['batch'][1]:.2g} "
            f"(best bs {format_batch_size(reference['batch'])}), "
            f"group {rise['group'][0]:+.3g}±{rise['group'][1]:.2g} (best bs {format_batch_size(reference['group'])})"
        )
        bn_rises = significant(rise["batch"][0], rise["batch"][1], spread["batch"].df, spread["batch"].k, len(slices))
        gn_best = gn.loc[reference["group"], "mean"]
        gn_ratio = gn.loc[small, "mean"] / gn_best if gn_best > 0 else np.inf
        gn_rises = significant(rise["group"][0], rise["group"][1], spread["group"].df, spread["group"].k, len(slices)) \
            and gn_ratio >= SPIKE_ERROR_RATIO
        numbers += f"; group error x{gn_ratio:.3g} its best"
        bn_more = significant(rise["batch"][0] - rise["group"][0], float(np.hypot(rise["batch"][1], rise["group"][1])),
                              spread["batch"].df + spread["group"].df, 2, len(slices))
        span = f"at batch size {format_batch_size(small)}"
        if bn_rises and bn_more and not gn_rises:
            outcome, where = HOLDS, span
        elif not bn_rises and (weak := spread["batch"].underpowered(bn.loc[common, "count"].min(), MATTERS_ERROR, "error")):
            outcome, where = INCONCLUSIVE, weak
        elif not bn_rises:
            outcome, where = DOES_NOT_HOLD, f"BatchNorm error does not rise significantly {span}"
        elif gn_rises:
            outcome, where = DOES_NOT_HOLD, f"GroupNorm error spikes too {span} (x{gn_ratio:.3g} its best)"
        else:
            outcome, where = DOES_NOT_HOLD, f"BatchNorm rise not significantly larger than GroupNorm's {span}"
        used = frame[frame["batch_size"].isin(common)]
        if unbracketed := unbracketed_reason(used, protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(SliceOutcome(label, outcome, where, numbers))
    return combine(N1, protocol, outcomes, edge_caveat(view, protocol))


# --------------------------------------------------------------------------- N2


def verdict_n2(summary: pd.DataFrame, protocol: str = TUNED_LR, views: SeedViews | None = None) -> Verdict:
    """N2: each normalized network reaches the target in fewer steps than norm=none."""
    norms = set(summary["norm"]) if "norm" in summary.columns else set()
    if "none" not in norms:
        reason = "the study has no norm=none arm to compare with"
        return combine(N2, protocol, [SliceOutcome("study", INCONCLUSIVE, reason, "")])
    if norms == {"none"}:
        reason = "the study has only norm=none"
        return combine(N2, protocol, [SliceOutcome("study", INCONCLUSIVE, reason, "")])
    return _fewer_steps_than(N2, summary, protocol, "norm", "none", views)


def verdict_n3(summary: pd.DataFrame, protocol: str = TUNED_LR, views: SeedViews | None = None) -> Verdict:
    """N3: inputs scaled to zero mean (zscore, or as stored) reach the target in fewer steps
    than all-positive inputs in [0, 1] (data.input_norm=minmax)."""
    column = "data.input_norm"
    values = set(summary[column]) if column in summary.columns else set()
    if "minmax" not in values or len(values) < 2:
        reason = ("needs data.input_norm swept over minmax and zscore (or none); the study has "
                  + (", ".join(sorted(map(str, values))) if values else "one input scaling"))
        return combine(N3, protocol, [SliceOutcome("study", INCONCLUSIVE, reason, "")])
    return _fewer_steps_than(N3, summary, protocol, column, "minmax", views)


def _against_baseline(view: pd.DataFrame, columns: list[str], summary: pd.DataFrame, column: str,
                      baseline: str, arm: str | None = None) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(label, arm's rows, baseline's rows) per slice of `view` whose `column` is `arm` (every
    value but `baseline` when None), the baseline's rows matching the slice on every other
    column."""
    others = [c for c in columns if c != column]
    arms = view[view[column] == arm] if arm is not None else view[view[column] != baseline]
    out = []
    for label, values, frame in split_slices(arms, columns, summary):
        mask = view[column] == baseline
        for other in others:
            mask &= view[other] == values[other]
        out.append((label, frame, view[mask]))
    return out


def _majority(better: list, worse: list, same: list, better_text: str, worse_text: str,
              weak: Callable[[], str]) -> tuple[str, str]:
    """N2, N3, N6: an arm against its baseline, batch size by batch size (each better, worse or
    the same). Holds when better at more than half; inconclusive when the same-looking ones
    could make that majority and the seeds could not have told (`weak()` says why); else does
    not hold."""
    n = len(better) + len(worse) + len(same)
    if len(better) > n / 2:
        return HOLDS, f"{better_text} at batch size " + ", ".join(format_batch_size(b) for b in better)
    if same and len(better) + len(same) > n / 2 and (why := weak()):
        return INCONCLUSIVE, why  # the same-looking batch sizes could be better
    where = f"{better_text} at {len(better)} of {n} batch sizes"
    if worse:
        where += f", {worse_text} at " + ", ".join(format_batch_size(b) for b in worse)
    return DOES_NOT_HOLD, where


def _fewer_steps_than(claim: Claim, summary: pd.DataFrame, protocol: str, column: str, baseline: str,
                      views: SeedViews | None = None) -> Verdict:
    """N2 and N3: each value of `column` against its `baseline` value, per batch size, in steps
    to target; holds for a value that is faster at more than half of the comparable batch sizes."""
    view, columns = build_view(summary, protocol, "steps_to_target", views)
    outcomes = []
    slices = _against_baseline(view, columns, summary, column, baseline)
    for label, frame, base_rows in slices:
        baseline_curve = slice_curve(base_rows, "steps_to_target").set_index("batch_size")
        curve = slice_curve(frame, "steps_to_target").set_index("batch_size")
        faster, slower, same = [], [], []
        cells = []
        both = [c[(c["n_reached"] == c["n_trials"]) & (c["count"] >= MIN_SEEDS)] for c in (curve, baseline_curve)]
        pooled = SeedSpread.of(*both)
        spread = SeedSpread(pooled.sd, pooled.df, 2, len(slices))  # one comparison per batch size
        for bs in sorted(set(curve.index) & set(baseline_curve.index)):
            a, b = curve.loc[bs], baseline_curve.loc[bs]
            if a["n_trials"] < MIN_SEEDS or b["n_trials"] < MIN_SEEDS:
                continue
            a_all, b_all = a["n_reached"] == a["n_trials"], b["n_reached"] == b["n_trials"]
            if a_all and b["n_reached"] == 0:
                faster.append(bs)
                cells.append(f"bs {format_batch_size(bs)} {a['mean']:.3g} vs never")
            elif b_all and a["n_reached"] == 0:
                slower.append(bs)
                cells.append(f"bs {format_batch_size(bs)} never vs {b['mean']:.3g}")
            elif a_all and b_all and a["count"] >= MIN_SEEDS and b["count"] >= MIN_SEEDS:
                pair = f"{format_mean(a['mean'], a['sem'], a['count'])} vs {format_mean(b['mean'], b['sem'], b['count'])}"
                cells.append(f"bs {format_batch_size(bs)} {pair}")
                {"lower": faster, "higher": slower, "same": same}[spread.side(a, b)].append(bs)
        numbers = f"steps to target vs {baseline}: " + ", ".join(cells) if cells else ""
        n_known = len(faster) + len(slower) + len(same)
        if n_known == 0:
            outcome = INCONCLUSIVE
            where = f"no batch size where both arms have >= {MIN_SEEDS} seeds that all or none reached the target"
        else:
            outcome, where = _majority(faster, slower, same, "fewer steps", "more", lambda: spread.underpowered(
                min(curve["count"].min(), baseline_curve["count"].min()), MATTERS_RELATIVE * curve["mean"].min(), "steps"))
        if unbracketed := unbracketed_reason(pd.concat([frame, base_rows]), protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(SliceOutcome(label, outcome, where, numbers))
    return combine(claim, protocol, outcomes, edge_caveat(view, protocol))


# --------------------------------------------------------------------------- N5

def cost_rounds(wn: Sequence[float] | None, bn: Sequence[float] | None,
                margin: float = COST_MARGIN, alpha: float = PAIRED_ALPHA) -> tuple[str, int, int] | None:
    """Weight norm's step time against BatchNorm's, round by round (`bsweep bench`'s blocks of
    one bench run, in round order): ("cheaper" | "not cheaper" | "unresolved", rounds in which
    weight norm took less than (1 - margin) of BatchNorm's time, rounds). A one-sided sign test
    at `alpha` decides each way; None without paired rounds (an older bench, or points from two
    bench runs, whose round counts differ)."""
    if wn is None or bn is None or len(wn) != len(bn) or len(wn) < 2:
        return None
    ratios = np.asarray(wn, dtype=float) / np.asarray(bn, dtype=float)
    n, k = len(ratios), int((ratios < 1 - margin).sum())
    if binomtest(k, n, 0.5, alternative="greater").pvalue < alpha:
        return "cheaper", k, n
    if binomtest(n - k, n, 0.5, alternative="greater").pvalue < alpha:
        return "not cheaper", k, n
    return "unresolved", k, n


def _step_blocks(summary: pd.DataFrame, row: pd.Series, batch_size) -> tuple[float, ...] | None:
    """The bench's per-round step times (`timebase.add_step_blocks`) of the trials at the view
    row's point, or None."""
    if "step_block_seconds" not in summary.columns:
        return None
    match = summary["batch_size"].astype(str) == str(batch_size)
    for column in condition_columns(summary):
        if column in row.index:
            match &= summary[column].astype(str) == str(row[column])
    blocks = [b for b in summary.loc[match, "step_block_seconds"] if b is not None]
    return blocks[0] if blocks else None


def verdict_n5(summary: pd.DataFrame, protocol: str = TUNED_LR, views: SeedViews | None = None) -> Verdict:
    """N5: weight norm costs less per step than BatchNorm, and its error does not depend on
    batch size (no small-batch spike, N1's GroupNorm test)."""
    if lacking := _lacks_norms(summary, N5, protocol, ("weight", "batch")):
        return lacking
    view, columns = build_view(summary, protocol, "final_test_acc", views)
    outcomes = []
    slices = _against_baseline(view, columns, summary, "norm", "batch", "weight")
    for label, frame, bn_rows in slices:
        bn = bn_rows.set_index("batch_size")
        wn = frame.set_index("batch_size")
        # cost: seconds per step = batch size / samples per second (calibrated when bench ran)
        cheaper, dearer, unresolved, cells = [], [], [], []
        for bs in sorted(set(wn.index) & set(bn.index)):
            t_wn = bs / float(wn.loc[bs, "samples_per_second_mean"])
            t_bn = bs / float(bn.loc[bs, "samples_per_second_mean"])
            if not (np.isfinite(t_wn) and np.isfinite(t_bn)):
                continue
            cell = f"bs {format_batch_size(bs)} {t_wn * 1e3:.3g} vs {t_bn * 1e3:.3g} ms"
            rounds = cost_rounds(_step_blocks(summary, wn.loc[bs], bs), _step_blocks(summary, bn.loc[bs], bs))
            if rounds is None:
                side = "cheaper" if t_wn < (1 - COST_MARGIN) * t_bn else "not cheaper"
            else:
                side, k, n = rounds
                cell += f" (weight cheaper in {k} of {n} rounds)"
            cells.append(cell)
            {"cheaper": cheaper, "not cheaper": dearer, "unresolved": unresolved}[side].append(bs)
        numbers = "seconds per step, weight vs batch: " + ", ".join(cells)
        # batch-size independence: the error at the smallest batch size against its best
        curve = usable_points(slice_curve(frame, "final_test_error"))
        flat, why = None, ""
        if len(curve) >= MIN_BATCH_SIZES_PAIR:
            spread = SeedSpread.of(curve, slices=len(slices))
            best = curve.loc[curve["mean"].idxmin()]
            small = curve.iloc[0]
            ratio = small["mean"] / best["mean"] if best["mean"] > 0 else np.inf
            spikes = spread.exceeds(small["mean"], small["count"], best["mean"], best["count"]) and ratio >= SPIKE_ERROR_RATIO
            flat = not spikes
            numbers += (f"; weight norm's error at bs {format_batch_size(small.batch_size)} {format_mean(small['mean'], small['sem'], small['count'])}"
                        f", x{ratio:.3g} its best (bs {format_batch_size(best.batch_size)})")
            why = "" if flat else f"its error spikes at batch size {format_batch_size(small.batch_size)} (x{ratio:.3g} its best)"
        if not cells or flat is None:
            outcome, where = INCONCLUSIVE, ("no step times to compare" if not cells else too_few(MIN_BATCH_SIZES_PAIR))
        elif len(cheaper) > len(cells) / 2 and flat:
            outcome, where = HOLDS, "cheaper per step at batch size " + ", ".join(format_batch_size(b) for b in cheaper) + "; no small-batch spike"
        elif flat and len(cheaper) + len(unresolved) > len(cells) / 2:
            outcome, where = INCONCLUSIVE, (
                f"cheaper by >= {COST_MARGIN:.0%} at {len(cheaper)} of {len(cells)} batch sizes; the bench's rounds "
                f"do not tell at batch size {', '.join(format_batch_size(b) for b in unresolved)} (sign test, {PAIRED_ALPHA:g})")
        else:
            parts = [] if len(cheaper) > len(cells) / 2 else [
                f"cheaper by >= {COST_MARGIN:.0%} at {len(cheaper)} of {len(cells)} batch sizes"]
            outcome, where = DOES_NOT_HOLD, "; ".join(parts + ([why] if why else []))
        if unbracketed := unbracketed_reason(frame, protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(SliceOutcome(label, outcome, where, numbers))
    return combine(N5, protocol, outcomes, edge_caveat(view, protocol))


# --------------------------------------------------------------------------- N6


def verdict_n6(summary: pd.DataFrame, protocol: str = TUNED_LR) -> Verdict:
    """N6: local response normalization generalizes better than none: lower final test error,
    per batch size (and the train-test loss gap in the numbers)."""
    if lacking := _lacks_norms(summary, N6, protocol, ("lrn", "none")):
        return lacking
    frame = summary.assign(loss_gap=summary["final_test_loss"] - summary["final_train_loss"]) \
        if "final_train_loss" in summary.columns else summary
    aggregated = aggregate_over_seeds(frame, metrics=[*DEFAULT_METRICS, "last_epoch", "loss_gap"])
    conditions = condition_columns(aggregated)
    if protocol == TUNED_LR:
        view, columns = tuned_view(aggregated, "final_test_acc"), conditions
    else:
        view, columns = aggregated, [*conditions, *nuisance_columns(aggregated)]
    outcomes = []
    slices = _against_baseline(view, columns, summary, "norm", "none", "lrn")
    for label, lrn, none_rows in slices:
        base = usable_points(slice_curve(none_rows, "final_test_error")).set_index("batch_size")
        curve = usable_points(slice_curve(lrn, "final_test_error")).set_index("batch_size")
        common = sorted(set(base.index) & set(curve.index))
        if not common:
            outcomes.append(SliceOutcome(label, INCONCLUSIVE, f"no batch size with >= {MIN_SEEDS} seeds in both", ""))
            continue
        pooled = SeedSpread.of(curve.loc[common].reset_index(), base.loc[common].reset_index())
        spread = SeedSpread(pooled.sd, pooled.df, 2, len(slices))
        better, worse, same, cells = [], [], [], []
        gaps = {}
        if "loss_gap_mean" in view.columns:
            gaps = {bs: (float(lrn.set_index("batch_size").loc[bs, "loss_gap_mean"]),
                         float(none_rows.set_index("batch_size").loc[bs, "loss_gap_mean"])) for bs in common}
        for bs in common:
            a, b = curve.loc[bs], base.loc[bs]
            cell = f"bs {format_batch_size(bs)} error {format_mean(a['mean'], a['sem'], a['count'])} vs {format_mean(b['mean'], b['sem'], b['count'])}"
            if bs in gaps and all(np.isfinite(gaps[bs])):
                cell += f", test-train loss gap {gaps[bs][0]:.3g} vs {gaps[bs][1]:.3g}"
            cells.append(cell)
            {"lower": better, "higher": worse, "same": same}[spread.side(a, b)].append(bs)
        numbers = "lrn vs none: " + "; ".join(cells)
        outcome, where = _majority(better, worse, same, "lower error", "higher", lambda: spread.underpowered(
            min(curve["count"].min(), base["count"].min()), MATTERS_ERROR, "error"))
        if unbracketed := unbracketed_reason(pd.concat([lrn, none_rows]), protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(SliceOutcome(label, outcome, where, numbers))
    return combine(N6, protocol, outcomes, edge_caveat(view, protocol))


# --------------------------------------------------------------------------- N7


def verdict_n7(summary: pd.DataFrame, protocol: str = TUNED_LR, views: SeedViews | None = None) -> Verdict:
    """N7: BatchNorm's final error rises when the data are not shuffled (each order other than
    "shuffled" the study has: sorted by class, or class-blocked batches), by more than
    GroupNorm's (which does not mix the examples of a batch)."""
    column = "data.order"
    orders = set(summary[column]) if column in summary.columns else set()
    norms = set(summary["norm"]) if "norm" in summary.columns else set()
    unshuffled = sorted(o for o in orders if o != "shuffled")
    missing = ([] if "shuffled" in orders else ["data.order=shuffled"]) + ([] if unshuffled else ["an unshuffled data.order"])
    missing += [f"norm={n}" for n in ("batch", "group") if n not in norms]
    if missing:
        return combine(N7, protocol, [SliceOutcome("study", INCONCLUSIVE, "needs " + ", ".join(missing), "")])
    view, columns = build_view(summary, protocol, "final_test_acc", views)
    others = [c for c in columns if c not in ("norm", column)]
    outcomes = []
    groups = list(view.groupby(others, sort=True, dropna=False)) if others else [((), view)]
    n_slices = len(groups) * len(unshuffled)
    for (key, frame), order in ((g, o) for g in groups for o in unshuffled):
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join([f"data.order={order}"] + [f"{config_key(c)}={v}" for c, v in zip(others, key)
                                                     if summary[c].nunique() > 1])
        shows, against, cells, weak = [], [], [], ""
        # the four arms' curves once (narrow frames), each batch size's points taken from them
        arms = {(n, o): slice_curve(frame[(frame["norm"] == n) & (frame[column] == (o if o == "shuffled" else order))],
                                    "final_test_error")
                for n in ("batch", "group") for o in ("shuffled", "other")}
        for bs in sorted(set(frame["batch_size"])):
            points = {k: usable_points(v[v["batch_size"] == bs]) for k, v in arms.items()}
            if any(v.empty for v in points.values()):
                continue
            p = {k: v.iloc[0] for k, v in points.items()}
            spread = SeedSpread.of(*points.values(), slices=n_slices)
            rise = {n: (p[(n, "other")]["mean"] - p[(n, "shuffled")]["mean"],
                        spread.se(p[(n, "other")]["count"], p[(n, "shuffled")]["count"])) for n in ("batch", "group")}
            cells.append(f"bs {format_batch_size(bs)}: error {order} - shuffled: batch {rise['batch'][0]:+.3g}±{rise['batch'][1]:.2g} "
                         f"({p[('batch', 'shuffled')]['mean']:.3g} -> {p[('batch', 'other')]['mean']:.3g}), group "
                         f"{rise['group'][0]:+.3g}±{rise['group'][1]:.2g} ({p[('group', 'shuffled')]['mean']:.3g} -> "
                         f"{p[('group', 'other')]['mean']:.3g})")
            bn_rises = significant(rise["batch"][0], rise["batch"][1], spread.df, 2, n_slices)
            more = significant(rise["batch"][0] - rise["group"][0], float(np.hypot(rise["batch"][1], rise["group"][1])),
                               spread.df, 2, n_slices)
            (shows if bn_rises and more else against).append(bs)
            weak = weak or spread.underpowered(min(v["count"] for v in p.values()), MATTERS_ERROR, "error")
        n_known = len(shows) + len(against)
        if n_known == 0:
            outcome, where = INCONCLUSIVE, f"no batch size with >= {MIN_SEEDS} seeds in all four arms"
        elif len(shows) <= n_known / 2 and weak:
            outcome, where = INCONCLUSIVE, weak  # the batch sizes that did not show it could not have
        elif len(shows) > n_known / 2:
            outcome, where = HOLDS, "BatchNorm's error rises more than GroupNorm's at batch size " + ", ".join(format_batch_size(b) for b in shows)
        else:
            outcome, where = DOES_NOT_HOLD, f"BatchNorm's rise exceeds GroupNorm's significantly at {len(shows)} of {n_known} batch sizes"
        if unbracketed := unbracketed_reason(frame[frame[column].isin(["shuffled", order])], protocol):
            outcome, where = INCONCLUSIVE, unbracketed
        outcomes.append(SliceOutcome(label, outcome, where, "; ".join(cells)))
    return combine(N7, protocol, outcomes, edge_caveat(view, protocol))


# --------------------------------------------------------------------------- N4


def _lr_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per lr of one norm at one batch size: seeds, seeds trained, seeds that reached the
    target (finished trials only)."""
    finished = frame[frame["status"].isin(FINISHED_STATUSES)]
    seeds = pd.DataFrame({"trained": finished["trained"] == 1, "reached": finished["steps_to_target"].notna()}).groupby(
        finished["lr"])
    return pd.concat([seeds.size().rename("seeds"), seeds.sum().astype(int)], axis=1)


def _top(table: pd.DataFrame, column: str) -> float:
    """The largest lr at which every one of >= MIN_SEEDS seeds has `column` (NaN if none)."""
    ok = table[(table["seeds"] >= MIN_SEEDS) & (table[column] == table["seeds"])]
    return float(ok.index.max()) if len(ok) else float("nan")


def _n4_batch_size(bn: pd.DataFrame, none: pd.DataFrame) -> tuple[str, str, str]:
    """One batch size: (outcome, why, numbers) from the two norms' lr tables."""
    tops = {name: _top(t, "trained") for name, t in (("batch", bn), ("none", none))}
    reach = {name: _top(t, "reached") for name, t in (("batch", bn), ("none", none))}

    def lr(v: float) -> str:
        return "-" if not np.isfinite(v) else f"{v:g}"

    def bracketed(name: str, t: pd.DataFrame) -> bool:
        above = t[t.index > tops[name]] if np.isfinite(tops[name]) else t
        return bool(((above["seeds"] >= 1) & (above["trained"] < above["seeds"])).any())

    numbers = (f"largest lr every seed trained at: batch {lr(tops['batch'])}, none {lr(tops['none'])}; "
               f"every seed reached the target up to: batch {lr(reach['batch'])}, none {lr(reach['none'])}")
    common = bn.add_suffix("_bn").join(none.add_suffix("_none"), how="inner")
    common = common[(common["seeds_bn"] >= MIN_SEEDS) & (common["seeds_none"] >= MIN_SEEDS)]
    none_top = tops["none"] if np.isfinite(tops["none"]) else -np.inf
    bn_top = tops["batch"] if np.isfinite(tops["batch"]) else -np.inf
    shows = common[(common.index > none_top) & (common["trained_bn"] == common["seeds_bn"])
                   & (common["trained_none"] == 0)]
    opposite = common[(common.index > bn_top) & (common["trained_none"] == common["seeds_none"])
                      & (common["trained_bn"] == 0)]
    if len(shows):
        return HOLDS, f"at lr {lr(shows.index.min())} every BatchNorm seed trained and no none seed did", numbers
    if len(opposite):
        return DOES_NOT_HOLD, f"at lr {lr(opposite.index.min())} every none seed trained and no BatchNorm seed did", numbers
    if bracketed("batch", bn) and bracketed("none", none) and none_top > bn_top:
        return DOES_NOT_HOLD, "none's top lr is above BatchNorm's", numbers
    if bracketed("batch", bn) and bracketed("none", none) and none_top == bn_top:
        return INCONCLUSIVE, "both norms' top lr is the same lr of the grid: no difference it resolves", numbers
    if not bracketed("none", none):
        return INCONCLUSIVE, f"none trained at every lr tried up to {lr(tops['none'])}: its range is not bracketed", numbers
    return INCONCLUSIVE, "no lr where one norm's seeds all trained and the other's all failed", numbers


def verdict_n4(summary: pd.DataFrame, protocol: str = LR_RANGE) -> Verdict:
    """N4: BatchNorm trains at larger learning rates than norm=none (every lr at once)."""
    if lacking := _lacks_norms(summary, N4, LR_RANGE, ("batch", "none")):
        return lacking
    if "trained" not in summary.columns:
        return combine(N4, LR_RANGE, [SliceOutcome("study", INCONCLUSIVE, "no per-trial 'trained' column", "")])
    others = [c for c in condition_columns(summary) if c != "norm"]
    groups = summary.groupby(others, sort=True, dropna=False) if others else [((), summary)]
    outcomes = []
    for key, frame in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{config_key(c)}={v}" for c, v in zip(others, key)
                          if summary[c].nunique() > 1) or "norm=batch vs none"
        shown, opposite, cells = [], [], []
        for bs in sorted(set(frame["batch_size"])):
            at = frame[frame["batch_size"] == bs]
            outcome, why, numbers = _n4_batch_size(_lr_table(at[at["norm"] == "batch"]), _lr_table(at[at["norm"] == "none"]))
            cells.append(f"bs {format_batch_size(bs)}: {numbers} ({outcome}: {why})")
            (shown if outcome == HOLDS else opposite if outcome == DOES_NOT_HOLD else []).append(bs)
        n_known = len(shown) + len(opposite)
        if n_known < MIN_BATCH_SIZES_PAIR:
            outcome, where = INCONCLUSIVE, f"shown either way at {n_known} batch size(s); needs >= {MIN_BATCH_SIZES_PAIR}"
        elif len(shown) > n_known / 2:
            outcome, where = HOLDS, "larger lrs train at batch size " + ", ".join(format_batch_size(b) for b in shown)
        else:
            outcome, where = DOES_NOT_HOLD, f"shown at {len(shown)} of {n_known} batch sizes"
        outcomes.append(SliceOutcome(label, outcome, where, "; ".join(cells)))
    return combine(N4, LR_RANGE, outcomes)

# --------------------------------------------------------------------------- the claims
# Defined after their judges, which name them (e.g. `combine(C1, ...)`) only when called.

N1 = Claim(
    id="N1",
    statement="BatchNorm error rises as the batch shrinks; GroupNorm stays flat",
    short="BN hurt by small batch, GN flat",
    rule=(
        f"Needs norm=batch and norm=group at >= {MIN_BATCH_SIZES_PAIR} common batch sizes with "
        f">= {MIN_SEEDS} seeds. Rise = final error at the smallest common batch size minus the "
        f"norm's lowest error over the common batch sizes. Holds when BatchNorm's rise exceeds "
        f"{SE}, exceeds GroupNorm's rise by more than {SE}, and GroupNorm does not spike: its rise "
        f"does not exceed {SE}, or its error at the smallest batch size is below "
        f"x{SPIKE_ERROR_RATIO:g} its lowest (C1's spike line)."
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_n1,
)

N2 = Claim(
    id="N2",
    statement="a normalized network reaches the target in fewer steps than an unnormalized one",
    short="norm nets reach target sooner",
    rule=(
        f"Needs a norm=none arm. Per batch size, steps to target of each norm vs none, >= "
        f"{MIN_SEEDS} seeds: faster when fewer by more than {SE} (or it reached the target and "
        "none never did). Holds for a norm when it is faster at more than half of the comparable "
        "batch sizes."
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_n2,
)

N3 = Claim(
    id="N3",
    statement="normalized inputs reach the target faster; all-positive inputs learn slowly",
    short="normalized inputs train faster",
    rule=(
        "Needs data.input_norm swept over minmax ([0, 1], every input positive) and zscore (or "
        f"none). As N2, with minmax as the baseline: per batch size, steps to target, >= {MIN_SEEDS} "
        f"seeds: faster when fewer by more than {SE} (or it reached the target and minmax never "
        "did); holds for a scaling that is faster at more than half of the comparable batch "
        "sizes. (minmax also shrinks the inputs' spread; on mnist1d, stored centred with spread "
        "~1, `none` is zscore in all but rounding.)"
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_n3,
)

N4 = Claim(
    id="N4",
    statement="BatchNorm tolerates larger learning rates than no normalization",
    short="BN tolerates larger lrs",
    rule=(
        "Needs norm=batch and norm=none. A trial trained when no loss went non-finite and its "
        "final test loss ended below 0.9x its loss at step 0 (metrics.TRAINED_LOSS_SHARE); per "
        "batch size and norm, the top lr is the largest lr at which every seed trained. A batch "
        f"size shows the claim when at some lr above none's top lr every BatchNorm seed trained "
        f"and every none seed failed (>= {MIN_SEEDS} seeds each), and the opposite when at some "
        "lr above BatchNorm's top lr every none seed trained and every BatchNorm seed failed, or "
        "when both tops are bracketed (some seed failed at a larger lr tried) and none's is "
        "above BatchNorm's (the same top lr is inconclusive: the grid does not resolve it). Holds when it shows at more than half of >= {MIN_BATCH_SIZES_PAIR} "
        "batch sizes where one or the other is shown; the numbers also give the largest lr at "
        "which every seed reached the target."
    ),
    protocols=(LR_RANGE,),
    judge=verdict_n4,
    reads_seed_views=False,
)

N5 = Claim(
    id="N5",
    statement="weight norm costs less per step than BatchNorm and does not depend on batch size",
    short="WN cheaper than BN, batch-flat",
    rule=(
        "Needs norm=weight and norm=batch. Cost: seconds per step = batch size / samples per "
        "second (calibrated by `bsweep bench` when it ran: one number per point, no seed "
        f"spread), weight norm cheaper where below BatchNorm's by >= {COST_MARGIN:.0%}. Batch-size "
        "independence: weight norm's final error at the smallest batch size does not spike over "
        f"its best (not significant, or below x{SPIKE_ERROR_RATIO:g}: N1's GroupNorm test). Holds "
        "when it is cheaper at more than half of the batch sizes and does not spike. Step "
        "times are the machine's: the cost half is a measurement of this machine, not a constant."
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_n5,
)

N6 = Claim(
    id="N6",
    statement="local response normalization improves generalization (over no normalization)",
    short="LRN generalizes better",
    rule=(
        "Needs norm=lrn and norm=none. Per batch size, final test error, >= "
        f"{MIN_SEEDS} seeds: LRN better when lower by more than {SE}. Holds when better at more "
        "than half of the batch sizes. The numbers add the train-test gap: final test loss "
        "minus the final training loss (mean mini-batch loss over the last measurements, in "
        "train mode)."
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_n6,
    reads_seed_views=False,
)

N7 = Claim(
    id="N7",
    statement="BatchNorm needs well-shuffled data (unshuffled, its error rises more than GroupNorm's)",
    short="BN needs shuffled data",
    rule=(
        "Needs data.order=shuffled and an unshuffled order (sorted: by class, a fixed order; "
        "class_batches: batches of one or two classes in a shuffled order; class_halves: batches "
        "from a random half of the classes; one slice each), and "
        f"norm=batch and group. Per batch size, final test error, >= {MIN_SEEDS} seeds in each of "
        "the four arms: the rise unshuffled - shuffled of each norm. A batch size shows the claim when BatchNorm's "
        f"rise exceeds {SE} and exceeds GroupNorm's by more than it (GroupNorm normalizes each "
        "example on its own, so what is left of its rise is the order's effect on SGD itself). "
        "Holds when more than half of the batch sizes show it; otherwise inconclusive where the "
        f"seeds could not detect {MATTERS_ERROR:g} of error, else does not hold."
    ),
    protocols=(FIXED_LR, TUNED_LR),
    judge=verdict_n7,
)
