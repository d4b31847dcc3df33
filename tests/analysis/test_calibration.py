"""The verdicts' error rates, measured on synthetic studies with a known truth (the issue: "holds"
in more than 5 % of null studies is a bug). A seeded 20-study version of
`benchmarks/verdict_calibration.py`, whose 200-study figures are in the README; the bounds here
leave room for 20 studies' sampling error."""

from __future__ import annotations

import numpy as np
import pytest

from bsweep.analysis.simulate import EFFECTS, claim_rates
from bsweep.analysis.claims import CLAIMS

STUDIES = 20
# Every claim once, both protocols where the benchmark found them weakest (C3 fixed: the highest
# false-positive rate; the tuned C3-C5: the lowest power), to keep the suite short.
CHECKED = {("C1", "tuned lr"), ("C2", "any lr (pooled)"), ("C3", "fixed lr"), ("C3", "tuned lr"), ("C4", "fixed lr"),
           ("C4", "tuned lr"), ("C5", "tuned lr"), ("C7", "tuned lr"), ("N1", "tuned lr"), ("N2", "tuned lr"),
           ("N3", "tuned lr"), ("N4", "lr range"), ("N6", "tuned lr"), ("N7", "tuned lr")}
CASES = [(claim.id, claim.judge, protocol) for claim in CLAIMS.values() for protocol in claim.protocols
         if (claim.id, protocol) in CHECKED]


@pytest.mark.slow
@pytest.mark.parametrize("claim,function,protocol", CASES, ids=[f"{c}-{p}" for c, _, p in CASES])
def test_no_effect_rarely_holds_and_a_known_effect_is_found(claim, function, protocol):
    false_positives = claim_rates(claim, function, protocol, 2, STUDIES, seed=11)["holds"]
    assert false_positives <= 1 / STUDIES, f"{claim} {protocol}: holds in {false_positives:.0%} of null studies"
    power = claim_rates(claim, function, protocol, 3, STUDIES, EFFECTS[claim], seed=12)["holds"]
    # N4's effect is one step of the half-decade lr grid, which it resolves about half the
    # time; N7's is a difference of two differences (a sqrt 2 larger standard error)
    floor = {"N4": 0.35, "N7": 0.45}.get(claim, 0.7)
    assert power >= floor, f"{claim} {protocol}: finds the effect in only {power:.0%} at 3 seeds"


def test_no_significant_difference_with_too_few_seeds_is_inconclusive_not_does_not_hold():
    from bsweep.analysis.simulate import synthetic_summary
    from bsweep.analysis.claims.batch_size import verdict_c5
    from bsweep.analysis.claims.verdict import DOES_NOT_HOLD, INCONCLUSIVE, TUNED_LR

    rng = np.random.default_rng(3)
    # no effect, seed noise 0.5 points of error: 2 seeds cannot see a 1-point difference
    two = verdict_c5(synthetic_summary(rng, 2), TUNED_LR)
    assert two.verdict == INCONCLUSIVE
    assert "seeds only detect differences above" in two.condition and "seeds to detect 0.01" in two.condition
    # 12 seeds can: the same flat truth is then "does not hold"
    many = verdict_c5(synthetic_summary(rng, 12), TUNED_LR)
    assert many.verdict == DOES_NOT_HOLD, many.condition


@pytest.mark.slow
@pytest.mark.parametrize("claim,function,protocol", CASES, ids=[f"{c}-{p}" for c, _, p in CASES])
def test_a_real_effect_is_rarely_called_does_not_hold(claim, function, protocol):
    rates = claim_rates(claim, function, protocol, 2, STUDIES, EFFECTS[claim], seed=13)
    assert rates["does not hold"] <= 1 / STUDIES, f"{claim} {protocol}: {rates}"


def test_c6_never_holds_on_flat_cosines_and_finds_the_noise_scale_curve():
    from bsweep.analysis.simulate import c6_rates

    assert c6_rates(STUDIES, effect=False, seed=21)["holds"] == 0
    found = c6_rates(STUDIES, effect=True, seed=22)
    assert found["holds"] >= 0.8 and found["does not hold"] == 0, found
