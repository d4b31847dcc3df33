"""A summary's views over seeds, each computed once.

The verdicts, the answer and the critical-batch-size fit read the same few views: the aggregate
over seeds (every lr on its own) and the tuned view per criterion. `SeedViews` computes each the
first time it is asked for and hands out copies, so no reader changes another's view.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from bsweep.analysis.metrics import DEFAULT_METRICS, aggregate_over_seeds, tuned_view


class SeedViews:
    """The views of one per-trial summary (``metrics.summarize_trials``) over `metrics`."""

    def __init__(self, summary: pd.DataFrame, metrics: Sequence[str] = DEFAULT_METRICS) -> None:
        self.summary = summary
        self.metrics = tuple(metrics)
        self._fixed: pd.DataFrame | None = None
        self._tuned: dict[str, pd.DataFrame] = {}

    def fixed(self) -> pd.DataFrame:
        """Mean, spread and count of each metric over seeds, every lr on its own
        (``metrics.aggregate_over_seeds``)."""
        if self._fixed is None:
            self._fixed = aggregate_over_seeds(self.summary, metrics=list(self.metrics))
        return self._fixed.copy()

    def tuned(self, criterion: str) -> pd.DataFrame:
        """Per scientific point, the row of the best lr by `criterion` (``metrics.tuned_view``)."""
        if criterion not in self._tuned:
            self.fixed()
            self._tuned[criterion] = tuned_view(self._fixed, criterion)
        return self._tuned[criterion].copy()
