"""Batched ranking helpers: average ranks with ties, per-row Pearson correlation."""

from __future__ import annotations

import torch
from torch import Tensor


def average_ranks(x: Tensor) -> Tensor:
    """Ranks (0-based, float64) of each row of (B, N) ``x``; tied values share their mean rank.

    The same convention as ``scipy.stats.rankdata(method="average")`` (minus one), done for the
    whole batch at once: sort, mark where a run of equal values starts, and average the sorted
    positions within each run with one ``scatter_add``.
    """
    b, n = x.shape
    sorted_vals, order = torch.sort(x, dim=1, stable=True)
    new_run = torch.ones_like(sorted_vals, dtype=torch.bool)
    new_run[:, 1:] = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    run_id = torch.cumsum(new_run.long(), dim=1) - 1  # 0..(runs-1) within the row
    flat_id = (run_id + torch.arange(b, device=x.device).view(-1, 1) * n).flatten()
    positions = torch.arange(n, device=x.device, dtype=torch.float64).expand(b, n).flatten()
    sums = torch.zeros(b * n, dtype=torch.float64, device=x.device).scatter_add_(0, flat_id, positions)
    counts = torch.zeros(b * n, dtype=torch.float64, device=x.device).scatter_add_(0, flat_id, torch.ones_like(positions))
    run_rank = (sums / counts.clamp_min(1))[flat_id].view(b, n)
    ranks = torch.empty_like(run_rank)
    ranks.scatter_(1, order, run_rank)
    return ranks


def rowwise_pearson(a: Tensor, b: Tensor) -> Tensor:
    """Pearson correlation of each row pair (float64); NaN where a row is constant."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    denom = torch.sqrt((a * a).sum(1) * (b * b).sum(1))
    num = (a * b).sum(1)
    return torch.where(denom > 0, num / denom.clamp_min(1e-300), torch.full_like(num, float("nan")))
