import math

import pandas as pd
import pytest

from bsweep.analysis.metrics import summarize_trials
from bsweep.analysis.claims import all_verdicts
from bsweep.analysis.claims.batch_size import verdict_c1, verdict_c2, verdict_c3, verdict_c4, verdict_c5
from bsweep.analysis.claims.normalization import verdict_n1, verdict_n2
from bsweep.analysis.claims.verdict import DOES_NOT_HOLD, FIXED_LR, HOLDS, INCONCLUSIVE, TUNED_LR, Verdict

BATCH_SIZES = (4, 16, 64, 256)


def seed_noise(seed: int) -> float:
    """A small, seed-dependent accuracy offset so every point has a spread over seeds."""
    return -0.002 * seed


def flat(norm, bs, lr, seed):
    return 0.95 + seed_noise(seed)


def fast(norm, bs, lr, seed):
    return 0.5  # epochs: every batch size needs the same number of epochs


# The lr grid of these studies brackets the best lr (0.1, in the middle): a tuned verdict only
# counts on a bracketed optimum. The other lrs are worse everywhere by the same amount, so the
# curves over batch size are the test's own.
BRACKET = (0.05, 0.1, 0.2)


def bracketed(curve, worse):
    return lambda norm, bs, lr, seed: worse(curve(norm, bs, lr, seed), lr != 0.1)


def summary_of(study_factory, **kwargs) -> pd.DataFrame:
    kwargs.setdefault("batch_sizes", BATCH_SIZES)
    if "lrs" not in kwargs:
        kwargs["lrs"] = BRACKET
        kwargs["ceiling"] = bracketed(kwargs["ceiling"], lambda acc, off: acc - 0.05 * off)
        kwargs["tau_epochs"] = bracketed(kwargs["tau_epochs"], lambda tau, off: tau * (1.5 if off else 1.0))
    return summarize_trials(*study_factory(**kwargs))


# --------------------------------------------------------------------------- C1


def small_batch_penalty(norm, bs, lr, seed):
    return flat(norm, bs, lr, seed) - (0.4 if bs <= 16 and norm == "batch" else 0.0)


def test_c1_holds_where_small_batches_fail_and_says_where(study_factory):
    summary = summary_of(
        study_factory, ceiling=small_batch_penalty, tau_epochs=fast, norms=("batch", "group")
    )
    verdict = verdict_c1(summary, TUNED_LR)
    assert isinstance(verdict, Verdict)
    assert verdict.verdict == HOLDS
    assert verdict.protocol == TUNED_LR
    assert "norm=batch (at batch size <= 16" in verdict.condition
    assert "does not hold for norm=group" in verdict.condition
    assert "bs 4" in verdict.numbers


def test_c1_does_not_hold_when_error_is_flat(study_factory):
    summary = summary_of(study_factory, ceiling=flat, tau_epochs=fast)
    assert verdict_c1(summary, FIXED_LR).verdict == DOES_NOT_HOLD


def test_c1_significant_but_small_rise_is_not_a_spike(study_factory):
    # Error 0.05 -> 0.07 at batch size 4: significant (seed spread is tiny) but only x1.4.
    summary = summary_of(
        study_factory,
        ceiling=lambda n, bs, lr, s: flat(n, bs, lr, s) - (0.02 if bs == 4 else 0.0),
        tau_epochs=fast,
    )
    verdict = verdict_c1(summary, TUNED_LR)
    assert verdict.verdict == DOES_NOT_HOLD
    assert "significantly higher but only x1.4 the lowest, a spike needs x1.5" in verdict.condition


def test_c1_one_seed_is_inconclusive(study_factory):
    summary = summary_of(study_factory, ceiling=small_batch_penalty, tau_epochs=fast, seeds=(0,))
    verdict = verdict_c1(summary, TUNED_LR)
    assert verdict.verdict == INCONCLUSIVE
    assert "seeds" in verdict.condition


# --------------------------------------------------------------------------- C2


def test_c2_throughput_rises(study_factory):
    summary = summary_of(study_factory, ceiling=flat, tau_epochs=fast)
    verdict = verdict_c2(summary)
    assert verdict.verdict == HOLDS
    assert "up to batch size 256" in verdict.condition


def test_c2_flat_throughput_does_not_hold(study_factory):
    summary = summary_of(
        study_factory, ceiling=flat, tau_epochs=fast, throughput=lambda norm, bs: 5000.0
    )
    assert verdict_c2(summary).verdict == DOES_NOT_HOLD


def test_c2_two_batch_sizes_is_inconclusive(study_factory):
    summary = summary_of(study_factory, ceiling=flat, tau_epochs=fast, batch_sizes=(8, 64))
    assert verdict_c2(summary).verdict == INCONCLUSIVE


# --------------------------------------------------------------------------- C3, C4


def critical_batch(norm, bs, lr, seed):
    """Perfect scaling up to batch size 16 (same epochs), then epochs grow with batch size."""
    return 0.3 * max(1.0, bs / 16)


def test_c3_holds_beyond_critical_batch_size(study_factory):
    summary = summary_of(study_factory, ceiling=flat, tau_epochs=critical_batch)
    verdict = verdict_c3(summary, TUNED_LR)
    assert verdict.verdict == HOLDS
    assert "from batch size 64 up" in verdict.condition


def test_c3_counts_never_reaching_target_as_more_epochs(study_factory):
    # At 256 the curve is too slow to reach the target within 10 epochs.
    summary = summary_of(
        study_factory, ceiling=flat, tau_epochs=lambda n, bs, lr, s: 0.3 if bs < 256 else 50.0
    )
    verdict = verdict_c3(summary, FIXED_LR)
    assert verdict.verdict == HOLDS
    assert "never reached at bs 256" in verdict.numbers


def test_c3_same_epochs_does_not_hold(study_factory):
    summary = summary_of(study_factory, ceiling=flat, tau_epochs=fast)
    assert verdict_c3(summary, TUNED_LR).verdict == DOES_NOT_HOLD


def test_c4_interior_time_optimum_holds(study_factory):
    # Throughput rises as sqrt(batch size); epochs grow linearly past 16: optimum near 16.
    summary = summary_of(study_factory, ceiling=flat, tau_epochs=critical_batch)
    verdict = verdict_c4(summary, TUNED_LR)
    assert verdict.verdict == HOLDS
    assert "optimum at batch size 16" in verdict.condition


def test_c4_optimum_on_grid_edge_is_inconclusive(study_factory):
    # Same epochs everywhere and rising throughput: the largest batch is fastest.
    summary = summary_of(study_factory, ceiling=flat, tau_epochs=fast)
    verdict = verdict_c4(summary, TUNED_LR)
    assert verdict.verdict == INCONCLUSIVE
    assert "optimum at batch size 256" in verdict.condition


def test_c4_flat_time_does_not_hold(study_factory):
    summary = summary_of(
        study_factory, ceiling=flat, tau_epochs=fast, throughput=lambda norm, bs: 5000.0
    )
    assert verdict_c4(summary, FIXED_LR).verdict == DOES_NOT_HOLD


# --------------------------------------------------------------------------- C5


def lr_scales_with_batch(norm, bs, lr, seed):
    """Best lr is 0.1 * bs / 16 (linear scaling): at a fixed lr one batch size is best."""
    return 0.95 + seed_noise(seed) - 0.1 * abs(math.log2(lr * 16 / (0.1 * bs)))


def test_c5_holds_at_fixed_lr_but_not_when_lr_is_tuned(study_factory):
    summary = summary_of(
        study_factory,
        ceiling=lr_scales_with_batch,
        tau_epochs=fast,
        batch_sizes=(4, 16, 64),
        lrs=(0.025, 0.1, 0.4),
    )
    fixed = verdict_c5(summary, FIXED_LR)
    assert fixed.verdict == HOLDS
    assert "lr=0.1 (optimum at batch size 16" in fixed.condition
    tuned = verdict_c5(summary, TUNED_LR)
    # The best lr at batch size 4 and 64 is the grid's smallest / largest lr: the tuned
    # comparison would measure the lr grid, not the batch size, so it is not judged.
    assert tuned.verdict == INCONCLUSIVE
    assert "best lr at the grid's lower edge at batch size 4; extend lr below 0.025" in tuned.condition
    assert "best lr at the grid's upper edge at batch size 64; extend lr above 0.4" in tuned.condition
    assert "bs 4, 64" in tuned.caveat


def test_c5_monotone_accuracy_is_inconclusive(study_factory):
    summary = summary_of(
        study_factory,
        ceiling=lambda n, bs, lr, s: 0.8 + 0.03 * math.log2(bs) + seed_noise(s),
        tau_epochs=fast,
    )
    assert verdict_c5(summary, TUNED_LR).verdict == INCONCLUSIVE


# --------------------------------------------------------------------------- N1


def test_n1_holds_when_only_batchnorm_degrades(study_factory):
    summary = summary_of(
        study_factory, ceiling=small_batch_penalty, tau_epochs=fast, norms=("batch", "group")
    )
    verdict = verdict_n1(summary, TUNED_LR)
    assert verdict.verdict == HOLDS
    assert "at batch size 4" in verdict.condition


def test_n1_does_not_hold_when_groupnorm_degrades_too(study_factory):
    summary = summary_of(
        study_factory,
        ceiling=lambda n, bs, lr, s: flat(n, bs, lr, s) - (0.4 if bs <= 16 else 0.0),
        tau_epochs=fast,
        norms=("batch", "group"),
    )
    verdict = verdict_n1(summary, FIXED_LR)
    assert verdict.verdict == DOES_NOT_HOLD
    assert "GroupNorm error spikes too" in verdict.condition


def test_n1_a_small_significant_groupnorm_rise_is_no_spike(study_factory):
    # GroupNorm's error at batch 4 is significantly higher than its best but only x1.2 (C1's
    # spike line is x1.5): it "stays flat" next to BatchNorm's spike, as C1 judges it
    def ceiling(n, bs, lr, s):
        if n == "group":
            return 0.9 - 0.001 * s - (0.02 if bs <= 4 else 0.0)  # error 0.10 -> 0.12
        return small_batch_penalty(n, bs, lr, s)

    summary = summary_of(study_factory, ceiling=ceiling, tau_epochs=fast, norms=("batch", "group"))
    verdict = verdict_n1(summary, TUNED_LR)
    assert verdict.verdict == HOLDS, verdict.condition
    assert "group error x1.2 its best" in verdict.numbers


def test_n1_without_groupnorm_is_inconclusive(study_factory):
    summary = summary_of(study_factory, ceiling=small_batch_penalty, tau_epochs=fast)
    verdict = verdict_n1(summary, TUNED_LR)
    assert verdict.verdict == INCONCLUSIVE
    assert "missing group" in verdict.condition


# --------------------------------------------------------------------------- N2


def test_n2_holds_when_normalized_is_faster(study_factory):
    summary = summary_of(
        study_factory,
        ceiling=flat,
        tau_epochs=lambda n, bs, lr, s: 1.0 if n == "none" else 0.3,
        norms=("batch", "none"),
    )
    verdict = verdict_n2(summary, TUNED_LR)
    assert verdict.verdict == HOLDS
    assert "norm=batch" in verdict.condition


def test_n2_does_not_hold_when_none_is_as_fast(study_factory):
    summary = summary_of(study_factory, ceiling=flat, tau_epochs=fast, norms=("batch", "none"))
    assert verdict_n2(summary, FIXED_LR).verdict == DOES_NOT_HOLD


def test_n2_without_none_arm_is_inconclusive_with_reason(study_factory):
    summary = summary_of(study_factory, ceiling=flat, tau_epochs=fast, norms=("batch", "group"))
    verdict = verdict_n2(summary, TUNED_LR)
    assert verdict.verdict == INCONCLUSIVE
    assert "no norm=none arm" in verdict.condition


# --------------------------------------------------------------------------- table


def test_all_verdicts_table(study_factory):
    summary = summary_of(
        study_factory,
        ceiling=small_batch_penalty,
        tau_epochs=critical_batch,
        norms=("batch", "group"),
        seeds=(0, 1),
    )
    table = all_verdicts(summary)
    assert list(table.columns) == [
        "claim", "statement", "verdict", "protocol", "condition", "numbers", "rule", "caveat",
        "held", "conclusive", "slices", "gist",
    ]
    assert table["claim"].tolist() == [
        "C1", "C1", "C2", "C3", "C3", "C4", "C4", "C5", "C5", "C6", "C7", "C7", "C8", "N1", "N1", "N2", "N2",
        "N3", "N3", "N4", "N5", "N5", "N6", "N6", "N7", "N7"
    ]
    assert set(table["verdict"]) <= {HOLDS, DOES_NOT_HOLD, INCONCLUSIVE}
    assert (table["rule"].str.len() > 50).all()
    c1 = table[(table["claim"] == "C1") & (table["protocol"] == TUNED_LR)].iloc[0]
    assert c1["verdict"] == HOLDS


def test_running_and_failed_trials_are_left_out(study_factory):
    summary = summary_of(study_factory, ceiling=small_batch_penalty, tau_epochs=fast)
    # Mark every trial at batch size 4 as still running: C1 loses its evidence at batch size 4
    # but still sees batch size 16 failing.
    summary.loc[summary["batch_size"] == 4, "status"] = "running"
    verdict = verdict_c1(summary, TUNED_LR)
    assert verdict.verdict == HOLDS
    assert "bs 4" not in verdict.numbers


@pytest.mark.parametrize("function", [verdict_c1, verdict_c3, verdict_c4, verdict_c5, verdict_n1, verdict_n2])
def test_empty_summary_is_inconclusive(function, study_factory):
    summary = summary_of(study_factory, ceiling=flat, tau_epochs=fast, norms=("batch", "group", "none"))
    summary["status"] = "failed"
    assert function(summary, TUNED_LR).verdict == INCONCLUSIVE


def test_nullable_integer_columns_from_load(study_factory):
    # load_trials gives batch_size / seed / n_train as pandas "Int64", and may hold a damaged
    # trial with missing values; the analysis must not trip over either.
    trials, measurements = study_factory(
        ceiling=small_batch_penalty, tau_epochs=critical_batch, batch_sizes=BATCH_SIZES
    )
    damaged = trials.iloc[[0]].assign(trial_id="damaged", status="damaged", batch_size=None, lr=None)
    trials = pd.concat([trials, damaged], ignore_index=True)
    for column in ("batch_size", "seed", "n_train"):
        trials[column] = pd.to_numeric(trials[column]).astype("Int64")
    table = all_verdicts(summarize_trials(trials, measurements))
    c1 = table[(table["claim"] == "C1") & (table["protocol"] == FIXED_LR)].iloc[0]
    assert c1["verdict"] == HOLDS
    assert "at batch size <= 16" in c1["condition"]


@pytest.mark.parametrize("sd,matters", [(0.01, 0.01), (0.005, 0.01), (0.002, 0.01)])
def test_seeds_needed_is_the_fewest_that_detect_the_difference(sd, matters):
    from bsweep.analysis.stats import SeedSpread

    spread = SeedSpread(sd, 6, 6, 12)  # 6 points x 2 seeds, 12 slices
    need = spread.seeds_needed(3, matters)
    assert spread.detectable(need) <= matters
    assert need == 3 or spread.detectable(need - 1) > matters
    assert SeedSpread(1.0, 6, 6, 12).seeds_needed(3, 0.01) is None  # beyond MAX_SEEDS_SAID


# --------------------------------------------------------------------------- C7


def test_c7_holds_when_the_loss_jitter_falls_with_batch_size():
    import numpy as np

    from bsweep.analysis.simulate import EFFECTS, synthetic_summary
    from bsweep.analysis.claims.batch_size import verdict_c7

    summary = synthetic_summary(np.random.default_rng(0), 4, lambda norm, i: {"jitter": 3 * EFFECTS["C7"](norm, i)["jitter"]})
    verdict = verdict_c7(summary, TUNED_LR)
    assert verdict.verdict == HOLDS, verdict.condition
    assert "falls at every step" in verdict.condition and "log-log slope" in verdict.numbers


def test_c7_flat_jitter_does_not_hold_with_enough_seeds():
    import numpy as np

    from bsweep.analysis.simulate import synthetic_summary
    from bsweep.analysis.claims.batch_size import verdict_c7

    verdict = verdict_c7(synthetic_summary(np.random.default_rng(1), 12), FIXED_LR)
    assert verdict.verdict == DOES_NOT_HOLD, verdict.condition


def test_loss_jitter_is_the_step_weighted_rms_over_the_second_half_of_the_budget():
    trials = pd.DataFrame({"trial_id": ["t"], "status": ["complete"], "target": [0.9], "budget_epochs": [4.0]})
    rows = [  # (step, epoch, jitter): epochs (2, 4] count, weighted by the steps each row covers
        (0, 0.0, math.nan), (10, 1.0, 9.0), (20, 2.0, 9.0), (30, 3.0, 1.0), (50, 4.0, 2.0), (60, 5.0, 9.0)]
    measurements = pd.DataFrame([{"trial_id": "t", "step": s, "epoch": e, "samples": s, "train_seconds": float(s),
                                  "train_loss": 1.0, "test_loss": 1.0, "test_acc": 0.5, "train_loss_jitter": j}
                                 for s, e, j in rows])
    out = summarize_trials(trials, measurements)
    assert out["loss_jitter"].iloc[0] == pytest.approx(math.sqrt((10 * 1.0 + 20 * 4.0) / 30))


# --------------------------------------------------------------------------- C8


def _memory_summary(memory, limit=2**30):
    rows = [{"trial_id": f"{norm}-{bs}", "status": "complete", "norm": norm, "batch_size": bs, "lr": 0.1, "seed": 0,
             "step_memory_bytes": float(memory(bs)), "peak_memory_bytes": math.nan, "memory_limit_bytes": float(limit)}
            for norm in ("batch", "group") for bs in (1, 4, 16, 64)]
    return pd.DataFrame(rows)


def test_c8_holds_when_memory_grows_and_predicts_the_largest_batch_that_fits():
    from bsweep.analysis.claims.batch_size import verdict_c8

    verdict = verdict_c8(_memory_summary(lambda bs: 2**20 + 2**10 * bs, limit=2**21))
    assert verdict.verdict == HOLDS
    assert "grows at every step, 1 KiB per example" in verdict.condition
    # (2 MiB - 1 MiB) / 1 KiB per example
    assert "largest batch size predicted to fit 0.00195 GiB: 1,024" in verdict.numbers


def test_c8_flat_memory_does_not_hold_and_no_bench_is_inconclusive():
    from bsweep.analysis.claims.batch_size import verdict_c8

    assert verdict_c8(_memory_summary(lambda bs: 2**20)).verdict == DOES_NOT_HOLD
    missing = verdict_c8(_memory_summary(lambda bs: math.nan))
    assert missing.verdict == INCONCLUSIVE and "bsweep bench" in missing.condition


# --------------------------------------------------------------------------- N4


def _range_summary(trained, batch_sizes=(8, 64, 512), lrs=(0.01, 0.1, 1.0), seeds=(0, 1)):
    """trained(norm, bs, lr, seed) -> bool; every trial reaches the target where it trained."""
    rows = []
    for norm in ("batch", "none"):
        for bs in batch_sizes:
            for lr in lrs:
                for seed in seeds:
                    ok = trained(norm, bs, lr, seed)
                    rows.append({"trial_id": f"{norm}-{bs}-{lr}-{seed}", "status": "complete", "norm": norm,
                                 "batch_size": bs, "lr": lr, "seed": seed, "trained": float(ok),
                                 "steps_to_target": 100.0 if ok else math.nan})
    return pd.DataFrame(rows)


def test_n4_holds_when_batchnorm_trains_where_none_fails():
    from bsweep.analysis.claims.normalization import verdict_n4

    verdict = verdict_n4(_range_summary(lambda norm, bs, lr, seed: lr < (1.0 if norm == "batch" else 0.1)))
    assert verdict.verdict == HOLDS, verdict.condition
    assert "larger lrs train at batch size 8, 64, 512" in verdict.condition
    assert "largest lr every seed trained at: batch 0.1, none 0.01" in verdict.numbers


def test_n4_does_not_hold_when_none_trains_at_larger_lrs():
    from bsweep.analysis.claims.normalization import verdict_n4

    verdict = verdict_n4(_range_summary(lambda norm, bs, lr, seed: lr < (0.1 if norm == "batch" else 1.0)))
    assert verdict.verdict == DOES_NOT_HOLD, verdict.condition


def test_n4_needs_none_range_bracketed_and_a_none_arm():
    from bsweep.analysis.claims.normalization import verdict_n4

    unbracketed = verdict_n4(_range_summary(lambda norm, bs, lr, seed: True))
    assert unbracketed.verdict == INCONCLUSIVE
    assert "none trained at every lr tried up to 1" in unbracketed.numbers + unbracketed.condition
    same = verdict_n4(_range_summary(lambda norm, bs, lr, seed: lr < 0.1))
    assert same.verdict == INCONCLUSIVE and "the same lr of the grid" in same.numbers
    no_arm = _range_summary(lambda norm, bs, lr, seed: True)
    no_arm = no_arm[no_arm["norm"] == "batch"]
    assert "missing none" in verdict_n4(no_arm).condition


# --------------------------------------------------------------------------- C6


def test_c6_holds_on_the_noise_scale_curve_and_not_on_flat_cosines():
    import numpy as np

    from bsweep.analysis.simulate import synthetic_cosines
    from bsweep.analysis.claims.batch_size import AT_CHECKPOINTS, verdict_c6

    rng = np.random.default_rng(4)
    verdict = verdict_c6(*synthetic_cosines(rng, effect=True)[:1], AT_CHECKPOINTS, synthetic_cosines(rng, True)[1])
    assert verdict.verdict == HOLDS, verdict.condition
    assert "by less than 0.1 from bs" in verdict.condition and "B_simple 200: predicted" in verdict.numbers
    flat = verdict_c6(*synthetic_cosines(rng, effect=False)[:1], AT_CHECKPOINTS, synthetic_cosines(rng, False)[1])
    assert flat.verdict == DOES_NOT_HOLD and "no significant rise from bs 1 to bs 4096" in flat.condition


def test_c6_without_cosines_says_how_to_measure_them(study_factory):
    from bsweep.analysis.claims.batch_size import verdict_c6

    trials, measurements = study_factory(ceiling=flat, tau_epochs=fast, batch_sizes=BATCH_SIZES)
    verdict = verdict_c6(summarize_trials(trials, measurements), measurements=measurements)
    assert verdict.verdict == INCONCLUSIVE and "noise.cosine_at" in verdict.condition


# --------------------------------------------------------------------------- N3, N5, N6, N7


def test_n3_holds_when_zscore_inputs_reach_the_target_in_fewer_steps_than_minmax():
    import numpy as np

    from bsweep.analysis.simulate import EFFECTS, study_for
    from bsweep.analysis.claims.normalization import verdict_n3

    rng = np.random.default_rng(2)
    verdict = verdict_n3(study_for("N3", rng, 3, lambda n, i: {"steps": 2 * EFFECTS["N3"](n, i).get("steps", 0)}), TUNED_LR)
    assert verdict.verdict == HOLDS and "data.input_norm=zscore" in verdict.condition
    assert "steps to target vs minmax" in verdict.numbers
    single = study_for("N3", rng, 3)
    single = single[single["data.input_norm"] == "zscore"]
    assert "needs data.input_norm swept over minmax" in verdict_n3(single, TUNED_LR).condition


def test_n6_holds_when_lrn_has_lower_error_and_reports_the_loss_gap():
    import numpy as np

    from bsweep.analysis.simulate import EFFECTS, study_for
    from bsweep.analysis.claims.normalization import verdict_n6

    verdict = verdict_n6(study_for("N6", np.random.default_rng(3), 3, EFFECTS["N6"]), TUNED_LR)
    assert verdict.verdict == HOLDS, verdict.condition
    assert "test-train loss gap" in verdict.numbers


def test_n7_holds_only_when_batchnorm_suffers_more_than_groupnorm_from_sorted_data():
    import numpy as np

    from bsweep.analysis.simulate import study_for
    from bsweep.analysis.claims.normalization import verdict_n7

    rng = np.random.default_rng(5)
    bn_only = lambda norm, i: {"error": 8.0} if norm == "batch:sorted" else {}  # noqa: E731
    assert verdict_n7(study_for("N7", rng, 3, bn_only), TUNED_LR).verdict == HOLDS
    both = lambda norm, i: {"error": 8.0} if norm.endswith(":sorted") else {}  # noqa: E731
    verdict = verdict_n7(study_for("N7", rng, 3, both), TUNED_LR)
    assert verdict.verdict != HOLDS and "error sorted - shuffled" in verdict.numbers


def test_n5_weighs_step_cost_and_a_small_batch_spike():
    import numpy as np

    from bsweep.analysis.simulate import synthetic_summary
    from bsweep.analysis.claims.normalization import verdict_n5

    summary = synthetic_summary(np.random.default_rng(6), 3, norms=("weight", "batch"))
    cheap = summary.assign(samples_per_second=np.where(summary["norm"] == "weight", 2000.0, 1000.0))
    verdict = verdict_n5(cheap, TUNED_LR)
    assert verdict.verdict == HOLDS and "cheaper per step" in verdict.condition
    dear = summary.assign(samples_per_second=1000.0)
    assert verdict_n5(dear, TUNED_LR).verdict == DOES_NOT_HOLD
    spike = synthetic_summary(np.random.default_rng(7), 3, lambda n, i: {"error_x": 3.0} if n == "weight" and i == 0 else {},
                              norms=("weight", "batch"))
    spike = spike.assign(samples_per_second=np.where(spike["norm"] == "weight", 2000.0, 1000.0))
    assert "spikes" in verdict_n5(spike, TUNED_LR).condition


def test_n5_compares_step_costs_round_by_round_with_a_sign_test():
    import numpy as np

    from bsweep.analysis.simulate import synthetic_summary
    from bsweep.analysis.claims.normalization import cost_rounds, verdict_n5

    assert cost_rounds([1.0] * 8, [2.0] * 8) == ("cheaper", 8, 8)
    assert cost_rounds([1.0] * 7 + [3.0], [2.0] * 8) == ("cheaper", 7, 8)  # p = 9/256
    assert cost_rounds([1.0] * 6 + [3.0] * 2, [2.0] * 8) == ("unresolved", 6, 8)  # p = 37/256
    assert cost_rounds([1.0] * 8, [1.0] * 8) == ("not cheaper", 0, 8)  # equal is not cheaper
    assert cost_rounds([1.0] * 8, [2.0] * 7) is None and cost_rounds(None, [1.0]) is None

    summary = synthetic_summary(np.random.default_rng(6), 3, norms=("weight", "batch"))
    # batch norm's best block is its quickest, but weight norm is cheaper in 7 of 8 rounds:
    # the best blocks alone say "not cheaper", the rounds say "cheaper"
    weight, batch = (1.0,) * 8, (0.9,) + (1.3,) * 7
    rounds = summary.assign(samples_per_second=np.where(summary["norm"] == "weight", 1000.0, 1000 / 0.9),
                            step_block_seconds=[weight if n == "weight" else batch for n in summary["norm"]])
    verdict = verdict_n5(rounds, TUNED_LR)
    assert verdict.verdict == HOLDS and "cheaper in 7 of 8 rounds" in verdict.numbers
    assert verdict_n5(rounds.drop(columns="step_block_seconds"), TUNED_LR).verdict == DOES_NOT_HOLD
    # rounds that split: the bench cannot tell, and the verdict says so
    split = (1.0,) * 4 + (2.0,) * 4
    noisy = rounds.assign(step_block_seconds=[split if n == "weight" else (1.5,) * 8 for n in rounds["norm"]])
    verdict = verdict_n5(noisy, TUNED_LR)
    assert verdict.verdict == INCONCLUSIVE and "do not tell" in verdict.condition
