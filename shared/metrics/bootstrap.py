"""Uncertainty over images: percentile bootstrap confidence intervals (Efron & Tibshirani, An
Introduction to the Bootstrap, 1993, ch. 13) and paired comparisons of two methods on the
same images (paired bootstrap of the mean difference; Wilcoxon signed-rank test)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class BootstrapCI:
    """``value`` is the statistic on the sample; [``low``, ``high``] its percentile interval."""

    value: float
    low: float
    high: float
    n: int
    ci: float
    n_resamples: int


def _as_values(values: Tensor | np.ndarray | list[float], name: str) -> Tensor:
    # lists of Python floats must not pass through float32 (torch's default dtype) on the way
    t = values.detach() if isinstance(values, Tensor) else torch.as_tensor(np.asarray(values, dtype=np.float64))
    t = t.to(device="cpu", dtype=torch.float64)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of per-image values, got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values; drop or explain them before bootstrapping")
    return t


def _resampled_means(values: Tensor, n_resamples: int, seed: int, chunk: int = 2**22) -> Tensor:
    """Means of ``n_resamples`` resamples with replacement, drawn in chunks to bound memory."""
    n = values.shape[0]
    gen = torch.Generator().manual_seed(seed)
    per_chunk = max(1, chunk // n)
    means = []
    for start in range(0, n_resamples, per_chunk):
        m = min(per_chunk, n_resamples - start)
        idx = torch.randint(0, n, (m, n), generator=gen)
        means.append(values[idx].mean(1))
    return torch.cat(means)


def _check_ci(ci: float, n_resamples: int) -> None:
    if not 0 < ci < 1:
        raise ValueError(f"ci must lie in (0, 1), got {ci}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")


def _interval(value: float, means: Tensor, n: int, ci: float, n_resamples: int) -> BootstrapCI:
    alpha = (1 - ci) / 2
    q = torch.quantile(means, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return BootstrapCI(value=value, low=float(q[0]), high=float(q[1]), n=n, ci=ci, n_resamples=n_resamples)


def bootstrap_ci(
    values: Tensor | np.ndarray | list[float], n_resamples: int = 10_000, ci: float = 0.95, seed: int = 0
) -> BootstrapCI:
    """Percentile bootstrap CI of the mean over images (vectorised, seeded).

    Resamples the N per-image values with replacement ``n_resamples`` times; the interval is
    the (1 - ci)/2 and (1 + ci)/2 quantiles (linear interpolation) of the resampled means.
    """
    _check_ci(ci, n_resamples)
    v = _as_values(values, "values")
    means = _resampled_means(v, n_resamples, seed)
    return _interval(float(v.mean()), means, v.shape[0], ci, n_resamples)


@dataclass(frozen=True)
class PairedComparison:
    """Method A minus method B on the same images: mean difference with its paired bootstrap
    CI, and the two-sided Wilcoxon signed-rank p-value (1.0 when every difference is zero)."""

    difference: BootstrapCI
    wilcoxon_p: float
    n: int


def paired_comparison(
    values_a: Tensor | np.ndarray | list[float],
    values_b: Tensor | np.ndarray | list[float],
    n_resamples: int = 10_000,
    ci: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Paired comparison of two methods scored on the same images (rows must correspond).

    Paired bootstrap: images are resampled together, i.e. the per-image differences a_i - b_i
    are resampled; percentile CI of their mean. Wilcoxon signed-rank test (Wilcoxon 1945) via
    ``scipy.stats.wilcoxon`` (two-sided, zero differences dropped as in Wilcoxon's original
    treatment, ``zero_method="wilcox"``).
    """
    a = _as_values(values_a, "values_a")
    b = _as_values(values_b, "values_b")
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same length, got {a.shape[0]} and {b.shape[0]}")
    diff = a - b
    interval = bootstrap_ci(diff, n_resamples=n_resamples, ci=ci, seed=seed)
    if torch.all(diff == 0):
        p = 1.0
    else:
        # imported here: scipy.stats takes ~1 s, which every job importing shared.metrics (results,
        # explain, steps) would pay, though only paired comparisons use it
        from scipy import stats

        p = float(stats.wilcoxon(diff.numpy(), zero_method="wilcox", alternative="two-sided").pvalue)
    return PairedComparison(difference=interval, wilcoxon_p=p, n=a.shape[0])


def bootstrap_max_of_means(
    hits: Tensor, n_resamples: int = 10_000, ci: float = 0.95, seed: int = 0
) -> BootstrapCI:
    """Percentile CI of max_t mean_i hits[i, t] (e.g. MaxBoxAcc: the best threshold is re-chosen
    in every resample, so the selection's optimism is part of the interval).

    ``hits`` (N, T, D) — e.g. MaxBoxAccV2's IoU thresholds — gives the mean over d of
    max_t mean_i hits[i, t, d], the same images resampled for every d.
    """
    _check_ci(ci, n_resamples)
    h = torch.as_tensor(hits).detach().to(device="cpu", dtype=torch.float64)
    if h.ndim not in (2, 3) or h.shape[0] == 0:
        raise ValueError(f"hits must be a non-empty (N, T) or (N, T, D) tensor, got shape {tuple(h.shape)}")
    if h.ndim == 2:
        h = h.unsqueeze(-1)
    n = h.shape[0]
    gen = torch.Generator().manual_seed(seed)
    per_chunk = max(1, 2**22 // (n * h.shape[1] * h.shape[2]))
    maxima = []
    for start in range(0, n_resamples, per_chunk):
        m = min(per_chunk, n_resamples - start)
        idx = torch.randint(0, n, (m, n), generator=gen)
        maxima.append(h[idx].mean(1).amax(1).mean(-1))
    return _interval(float(h.mean(0).amax(0).mean()), torch.cat(maxima), n, ci, n_resamples)
