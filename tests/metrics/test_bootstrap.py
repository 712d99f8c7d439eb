"""Bootstrap intervals and paired tests."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from shared.metrics import bootstrap_ci, bootstrap_max_of_means, paired_comparison


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(-100, 100), min_size=5, max_size=60), seed=st.integers(0, 1000))
def test_interval_contains_the_mean(values, seed):
    ci = bootstrap_ci(values, n_resamples=500, seed=seed)
    assert ci.value == pytest.approx(float(np.mean(values)))
    assert ci.low <= ci.value + 1e-9 and ci.value <= ci.high + 1e-9


def test_interval_is_seeded_and_sensible():
    values = torch.randn(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 3
    a = bootstrap_ci(values, n_resamples=4000, seed=7)
    assert a == bootstrap_ci(values, n_resamples=4000, seed=7)
    # Normal approximation: mean +- 1.96 * s / sqrt(n), within a small Monte-Carlo error.
    half = 1.96 * values.std().item() / np.sqrt(200)
    assert a.high - a.low == pytest.approx(2 * half, rel=0.1)
    assert bootstrap_ci([2.0, 2.0, 2.0]).low == bootstrap_ci([2.0, 2.0, 2.0]).high == 2.0


def test_paired_comparison_matches_scipy_wilcoxon():
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(40, generator=gen, dtype=torch.float64)
    b = a - 0.05 + 0.02 * torch.randn(40, generator=gen, dtype=torch.float64)
    res = paired_comparison(a, b, n_resamples=2000)
    assert res.difference.value == pytest.approx(float((a - b).mean()))
    assert res.difference.low > 0  # a is clearly higher
    assert res.wilcoxon_p == pytest.approx(stats.wilcoxon((a - b).numpy()).pvalue)
    assert paired_comparison(a, a).wilcoxon_p == 1.0


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="same length"):
        paired_comparison([1.0, 2.0], [1.0])


def test_max_of_means_by_hand():
    hits = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 1.0]])
    res = bootstrap_max_of_means(hits, n_resamples=500)
    assert res.value == 0.75
    assert res.low <= 0.75 <= res.high <= 1.0
