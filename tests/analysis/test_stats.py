"""The studentized range on fixed quadrature grids (bsweep.analysis.stats) against scipy's
adaptive integral, the reference, and against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import studentized_range, t

from bsweep.analysis.stats import studentized_range_cdf, studentized_range_quantile

# (p, k, df) across what verdicts ask for: p = 1 - 0.05 / slices, k points a slice, df from
# pooled seeds; df = 1 and 2 are the heavy-tailed corners, k = 30 the widest family.
CASES = [(0.95, 3, 1), (0.95, 5, 2), (0.975, 3, 7), (0.99, 10, 3), (0.9995, 30, 5),
         (0.9999, 12, 40), (0.95, 20, 100), (0.999, 4, 1000)]


@pytest.mark.parametrize("p,k,df", CASES)
def test_quantiles_are_scipys(p, k, df):
    assert studentized_range_quantile(p, k, df) == pytest.approx(float(studentized_range.ppf(p, k, df)), rel=1e-8)


def test_the_cdf_is_scipys_and_inverts_the_quantile():
    for q, k, df in [(3.0, 3, 4), (10.0, 8, 2), (4.5, 6, 60)]:
        assert studentized_range_cdf(q, k, df) == pytest.approx(float(studentized_range.cdf(q, k, df)), abs=1e-10)
    value = studentized_range_quantile(0.99, 7, 9)
    assert studentized_range_cdf(value, 7, 9) == pytest.approx(0.99, abs=1e-9)
    assert studentized_range_cdf(0.0, 3, 5) == 0.0


def test_two_means_are_the_two_sided_t_test_and_more_means_need_more():
    for df in (1, 3, 30):
        assert studentized_range_quantile(0.95, 2, df) == pytest.approx(np.sqrt(2) * t.isf(0.025, df), rel=1e-9)
    widths = [studentized_range_quantile(0.95, k, 10) for k in (2, 3, 5, 10)]
    assert widths == sorted(widths) and len(set(widths)) == 4
    # Tukey's table (e.g. Montgomery, Design and Analysis of Experiments, table VII)
    assert studentized_range_quantile(0.95, 3, 10) == pytest.approx(3.877, abs=5e-4)
    assert studentized_range_quantile(0.99, 5, 20) == pytest.approx(5.29, abs=5e-3)


def test_a_quantile_outside_the_distribution_is_an_error():
    for p, k, df in [(1.0, 3, 5), (0.0, 3, 5), (0.95, 1, 5), (0.95, 3, 0)]:
        with pytest.raises(ValueError, match="needs 0 < p < 1"):
            studentized_range_quantile(p, k, df)
