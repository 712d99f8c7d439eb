"""Agreement metrics against scipy and hand-computed overlaps; SSIM against scikit-image."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from skimage.metrics import structural_similarity

from shared.metrics import kendall_tau_b, spearman, ssim, top_k_overlap


def random_pair(seed, ties):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(3, 5, 6, generator=gen)
    b = a + 0.5 * torch.rand(3, 5, 6, generator=gen)
    if ties:
        a, b = (a * 4).round(), (b * 4).round()
    return a, b


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), ties=st.booleans())
def test_rank_correlations_match_scipy(seed, ties):
    a, b = random_pair(seed, ties)
    rho = spearman(a, b)
    tau = kendall_tau_b(a, b, max_pairs=500)  # small blocks exercise the chunking
    for i in range(3):
        x, y = a[i].flatten().numpy(), b[i].flatten().numpy()
        assert rho[i].item() == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert tau[i].item() == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_map_agrees_with_itself(seed):
    a, _ = random_pair(seed, ties=True)
    a[:, 0, 0] = 10.0  # never constant
    assert torch.allclose(spearman(a, a), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(kendall_tau_b(a, a), torch.ones(3, dtype=torch.float64))
    assert torch.all(top_k_overlap(a, a, 0.2) == 1)


def test_constant_map_has_undefined_correlation():
    a = torch.ones(1, 3, 3)
    b = torch.rand(1, 3, 3)
    assert torch.isnan(spearman(a, b)).all() and torch.isnan(kendall_tau_b(a, b)).all()


def test_top_k_overlap_by_hand():
    a = torch.tensor([[[9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0]]])
    b = torch.tensor([[[9.0, 0.0, 8.0, 1.0, 7.0, 2.0, 3.0, 4.0, 5.0, 6.0]]])
    # k = ceil(0.3 * 10) = 3: top of a = {0, 1, 2}, top of b = {0, 2, 4} -> 2 / 3
    assert top_k_overlap(a, b, 0.3).item() == pytest.approx(2 / 3)
    # k = 5: a = {0..4}, b = {0, 2, 4, 9, 8} -> 3 / 5
    assert top_k_overlap(a, b, 0.5).item() == pytest.approx(3 / 5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), fraction=st.floats(0.01, 1.0))
def test_top_k_overlap_symmetric_and_bounded(seed, fraction):
    a, b = random_pair(seed, ties=True)
    ab, ba = top_k_overlap(a, b, fraction), top_k_overlap(b, a, fraction)
    assert torch.equal(ab, ba)
    assert torch.all((ab >= 0) & (ab <= 1))


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="maps_a and maps_b must have the same shape"):
        spearman(torch.rand(1, 3, 3), torch.rand(1, 3, 4))


def test_ssim_of_a_map_with_itself_is_one():
    a = torch.rand(2, 16, 16)
    assert torch.allclose(ssim(a, a), torch.ones(2, dtype=torch.float64))
    tiny = torch.rand(2, 4, 5)  # the window shrinks to 3 x 3
    assert torch.allclose(ssim(tiny, tiny), torch.ones(2, dtype=torch.float64))


def test_ssim_matches_scikit_image():
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(2, 24, 20, generator=gen)
    b = (a + 0.3 * torch.rand(2, 24, 20, generator=gen)) / 1.3
    ours = ssim(a, b, window_size=11, sigma=1.5, normalise=False)
    for i in range(2):
        ref = structural_similarity(
            a[i].double().numpy(), b[i].double().numpy(), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0,
        )
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
    assert ours.max() < 1


def test_ssim_of_inverted_map_is_low():
    a = torch.rand(1, 16, 16)
    assert ssim(a, -a).item() < 0
