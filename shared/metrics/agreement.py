"""Agreement between two methods' maps of the same inputs, per image (Krishna et al., The
Disagreement Problem in Explainable Machine Learning, 2022; Neely et al., Order in the Court,
2021): rank correlations (Spearman, Kendall tau-b) and top-k overlap."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._checks import check_same_maps, stable_descending_order
from ._ranking import average_ranks, rowwise_pearson


def spearman(maps_a: Tensor, maps_b: Tensor) -> Tensor:
    """Spearman's rank correlation per image (B,), float64, over all H*W pixels.

    Pearson correlation of average ranks (ties share their mean rank, as scipy's ``spearmanr``).
    NaN where either map is constant (the correlation is undefined).
    """
    a, b = check_same_maps(maps_a, maps_b)
    return rowwise_pearson(average_ranks(a.flatten(1)), average_ranks(b.flatten(1)))


def kendall_tau_b(maps_a: Tensor, maps_b: Tensor, max_pairs: int = 2**24) -> Tensor:
    """Kendall's tau-b per image (B,), float64, exact over all pixel pairs.

    tau_b = (n_c - n_d) / sqrt((n_0 - n_1)(n_0 - n_2)), with n_1, n_2 the pairs tied in a, b
    (Kendall 1945; scipy's default ``kendalltau``). Computed from sign matrices in blocks of
    rows, O(N^2) time per image with N = H*W and ``max_pairs`` elements of memory per block:
    fine up to about 64 x 64 maps; downsample larger maps first (and say so). NaN where either
    map is constant.
    """
    a, b = check_same_maps(maps_a, maps_b)
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    batch, n = a.shape
    concordance = torch.zeros(batch, dtype=torch.float64, device=a.device)
    untied_a = torch.zeros_like(concordance)
    untied_b = torch.zeros_like(concordance)
    rows = max(1, max_pairs // max(1, batch * n))
    for start in range(0, n, rows):
        sa = torch.sign(a[:, start : start + rows, None] - a[:, None, :])
        sb = torch.sign(b[:, start : start + rows, None] - b[:, None, :])
        concordance += (sa * sb).sum((1, 2))
        untied_a += (sa != 0).sum((1, 2))
        untied_b += (sb != 0).sum((1, 2))
    # Each unordered pair was counted twice (i, j) and (j, i); the factor cancels in the ratio.
    denom = torch.sqrt(untied_a * untied_b)
    return torch.where(denom > 0, concordance / denom.clamp_min(1e-300), torch.full_like(denom, float("nan")))


def top_k_overlap(maps_a: Tensor, maps_b: Tensor, fraction: float = 0.1) -> Tensor:
    """Fraction of the top-k pixels shared by the two maps (B,), k = ceil(fraction * H * W).

    |top_k(a) & top_k(b)| / k, in [0, 1] and symmetric. Top-k by descending value, ties keep the
    lower flat index first (so the sets are always exactly k pixels).
    """
    a, b = check_same_maps(maps_a, maps_b)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
    n = a.shape[1] * a.shape[2]
    k = max(1, math.ceil(fraction * n - 1e-9))
    top_a = torch.zeros(a.shape[0], n, dtype=torch.bool, device=a.device)
    top_b = torch.zeros_like(top_a)
    top_a.scatter_(1, stable_descending_order(a.flatten(1))[:, :k], True)
    top_b.scatter_(1, stable_descending_order(b.flatten(1))[:, :k], True)
    return (top_a & top_b).sum(1).double() / k
