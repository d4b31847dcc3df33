"""The claims of sections 3.5 and 3.6 (C1-C8, N1-N7) and the verdict table over all of them.

`CLAIMS` is the one registry: each `Claim` holds its statement, short text, rule, the protocols it
is judged under and its judge function. `all_verdicts` judges every claim under each protocol.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd

from bsweep.analysis.claims import batch_size, normalization
from bsweep.analysis.claims.verdict import CLAIM_METRICS, Claim, Verdict
from bsweep.analysis.views import SeedViews

# Claim id -> Claim, in the order the report and the terminal list them.
CLAIMS: dict[str, Claim] = {
    claim.id: claim
    for claim in (
        batch_size.C1, batch_size.C2, batch_size.C3, batch_size.C4,
        batch_size.C5, batch_size.C6, batch_size.C7, batch_size.C8,
        normalization.N1, normalization.N2, normalization.N3, normalization.N4,
        normalization.N5, normalization.N6, normalization.N7,
    )
}


def judge(claim: Claim, summary: pd.DataFrame, protocol: str, measurements: pd.DataFrame | None = None,
          views: SeedViews | None = None) -> Verdict:
    """One claim's verdict under one protocol; `views`: the summary's views over CLAIM_METRICS,
    shared between claims (made for this claim alone when None)."""
    extra: dict = {}
    if claim.reads_seed_views:
        extra["views"] = views
    if claim.reads_measurements:
        return claim.judge(summary, protocol, measurements, **extra)
    return claim.judge(summary, protocol, **extra)


def all_verdicts(summary: pd.DataFrame, measurements: pd.DataFrame | None = None,
                 views: SeedViews | None = None) -> pd.DataFrame:
    """The verdict table: one row per claim and protocol, columns as in ``Verdict``. The claims
    share one `SeedViews` (`views`, or one made here), so each view is computed once."""
    views = SeedViews(summary, CLAIM_METRICS) if views is None else views
    rows = [asdict(judge(claim, summary, protocol, measurements, views))
            for claim in CLAIMS.values() for protocol in claim.protocols]
    return pd.DataFrame(rows, columns=list(Verdict.__dataclass_fields__))
