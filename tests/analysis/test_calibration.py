"""The verdicts' error rates, measured on synthetic studies with a known truth (the issue: "holds"
in more than 5 % of null studies is a bug). A seeded 30-study version of
`benchmarks/verdict_calibration.py`, whose 200-study figures are in the README; the bounds here
leave room for 30 studies' sampling error."""

from __future__ import annotations

import pytest

from bsweep.analysis.simulate import EFFECTS, NORMS, holds_rate
from bsweep.analysis.verdicts import VERDICT_FUNCTIONS

STUDIES = 30
CASES = [(claim, function, protocol) for claim, function, protocols in VERDICT_FUNCTIONS for protocol in protocols]


@pytest.mark.slow
@pytest.mark.parametrize("claim,function,protocol", CASES, ids=[f"{c}-{p}" for c, _, p in CASES])
def test_no_effect_rarely_holds_and_a_known_effect_is_found(claim, function, protocol):
    norms = ("batch", "none") if claim == "N2" else NORMS
    false_positives = holds_rate(function, protocol, 2, STUDIES, norms=norms, seed=11)
    assert false_positives <= 2 / STUDIES, f"{claim} {protocol}: holds in {false_positives:.0%} of null studies"
    power = holds_rate(function, protocol, 3, STUDIES, EFFECTS[claim], norms, seed=12)
    assert power >= 0.7, f"{claim} {protocol}: finds the effect in only {power:.0%} at 3 seeds"
