"""Complexity metrics: properties of the map alone (no model, no ground truth).

Sparseness (Gini index), complexity (entropy of the fractional contributions) and effective
complexity (count of non-negligible attributions), each for a batch of (B, H, W) maps, returning
per-image float64 values (B,).

All three follow Quantus 0.6's defaults (``quantus.metrics.complexity``): ``abs=True`` (the
absolute value of the attribution is scored, so a strongly negative pixel counts as much as a
strongly positive one) and ``normalise=True`` with ``normalise_by_max`` (divide by the largest
absolute value). The Gini index and the entropy are invariant to that scaling, so it matters only
for effective complexity, whose ``eps`` is a fraction of each map's largest |attribution|.
Quantus's ``normalise_by_max`` divides by the largest |attribution| of the whole *batch* (its
default ``normalise_axes`` is every axis); we divide each map by its own maximum, so a map's
score does not depend on the other maps in the batch (the same as Quantus on a batch of one, or
with ``normalise_func_kwargs={"normalise_axes": (1, 2, 3)}``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_maps


def _abs_flat(maps: Tensor) -> Tensor:
    return check_maps(maps).flatten(1).abs().double()


def sparseness(maps: Tensor) -> Tensor:
    """Sparseness: the Gini index of |attribution| (Chalasani et al., Concise Explanations of
    Neural Networks using Adversarial Training, ICML 2020, the Gini index as sparseness; Quantus ``Sparseness``,
    ``quantus/metrics/complexity/sparseness.py``, ``evaluate_batch``), (B,) in [0, 1 - 1/n].

    With the n = H * W values of |a| sorted ascending, a_(1) <= ... <= a_(n),

        G = sum_i (2 i - n - 1) a_(i) / (n * sum_i a_(i)).

    1 - 1/n for a one-hot map (all the attribution on one pixel), 0 for a uniform map; higher is
    sparser. Scale-invariant, so max-normalisation (Quantus's default) changes nothing. An
    all-zero map scores 0 (as a uniform map; Quantus gets the same through its +1e-7).

    Deviation from Quantus: Quantus adds 1e-7 to every (max-normalised) value before the Gini
    index, which shrinks G by the factor S / (S + n * 1e-7), S = sum of the normalised values;
    we compute the index exactly.
    """
    a = _abs_flat(maps)
    n = a.shape[1]
    a_sorted = torch.sort(a, dim=1).values
    i = torch.arange(1, n + 1, dtype=torch.float64, device=a.device)
    num = ((2 * i - n - 1) * a_sorted).sum(1)
    total = a_sorted.sum(1)
    return torch.where(total > 0, num / (n * total.clamp_min(1e-300)), torch.zeros_like(total))


def complexity(maps: Tensor) -> Tensor:
    """Complexity: the entropy (in nats) of the fractional contributions p_i = |a_i| / sum_j |a_j|
    (Bhatt, Weller & Moura, Evaluating and Aggregating Feature-based Model Explanations, IJCAI
    2020, the complexity criterion; Quantus ``Complexity``,
    ``quantus/metrics/complexity/complexity.py``, ``evaluate_batch``), (B,) in [0, log n].

        H = -sum_i p_i log p_i,  with 0 log 0 = 0.

    log n for a uniform map (n = H * W pixels), 0 for a one-hot map; lower is less complex.
    Scale-invariant. An all-zero map has no distribution and scores NaN (as in Quantus).

    Deviation from Quantus: Quantus takes log(p + 1e-12); we use 0 log 0 = 0 exactly (the
    difference is below 1e-11 per image).
    """
    a = _abs_flat(maps)
    total = a.sum(1, keepdim=True)
    p = a / total  # NaN for an all-zero map, which is the value we return
    return -torch.special.xlogy(p, p).sum(1)


def effective_complexity(maps: Tensor, eps: float = 1e-5) -> Tensor:
    """Effective complexity: the number of pixels whose attribution is not negligible (Nguyen &
    Martínez, On Quantitative Aspects of Model Interpretability, arXiv 2020, effective complexity;
    Quantus ``EffectiveComplexity``, ``quantus/metrics/complexity/effective_complexity.py``),
    (B,) float64 counts in [0, H * W].

    Counts the pixels with |a| / max |a| > ``eps`` (Quantus's default eps = 1e-5, after its default
    ``normalise_by_max`` and ``abs``). The count is absolute, as in Quantus (not divided by the
    number of pixels), so it grows with the map's resolution; divide by H * W for a fraction.
    Lower is simpler. An all-zero map scores 0.

    Normalisation: each map by its own largest |attribution| (Quantus's default divides by the
    largest of the whole batch, which makes a map's count depend on its batch-mates).
    """
    if not eps >= 0:
        raise ValueError(f"eps must be a non-negative threshold on |attribution| / max |attribution|, got {eps}")
    a = _abs_flat(maps)
    peak = a.amax(1, keepdim=True)
    normalised = torch.where(peak > 0, a / peak.clamp_min(1e-300), torch.zeros_like(a))
    return (normalised > eps).sum(1).double()
