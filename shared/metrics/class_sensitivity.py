"""Class sensitivity (Rebuffi, Fong, Ji & Vedaldi, There and Back Again: Revisiting
Backpropagation Saliency Methods, CVPR 2020, Sec. 5): a class-sensitive method gives
different maps for the highest- and the lowest-scoring class of the same image."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_maps
from .agreement import spearman
from .localisation import default_tolerance, max_locations


@dataclass(frozen=True)
class ClassSensitivity:
    """Per-image values (B,): ``correlation`` (Spearman between the two maps; lower = more
    class-sensitive), ``dissimilarity`` = 1 - correlation, and ``pointing_disagreement``
    (1 when the two maps' maxima are farther apart than the pointing-game tolerance)."""

    correlation: Tensor
    dissimilarity: Tensor
    pointing_disagreement: Tensor
    top_class: Tensor
    bottom_class: Tensor


def class_sensitivity(
    images: Tensor,
    logits: Tensor,
    explain: Callable[[Tensor, Tensor], Tensor],
    tolerance: float | None = None,
) -> ClassSensitivity:
    """Maps for the highest- and the lowest-scoring class of each image, and how alike they are.

    Rebuffi et al. (2020, Sec. 5) measure class sensitivity as the rank correlation between the
    saliency maps of the most and the least likely class (lower is better). We report that
    Spearman correlation per image; ``dissimilarity = 1 - correlation`` (in [0, 2]); and, as a
    coarser view, whether the maps' maxima disagree beyond the pointing-game tolerance
    (15 * H / 224 px by default). ``explain(images, classes) -> (B, H, W)``; ``logits`` (B, K).
    """
    if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[0] != images.shape[0] or logits.shape[1] < 2:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a (B, K) tensor with B = {images.shape[0]} and K >= 2, got {got}")
    top = torch.argmax(logits, dim=1)
    bottom = torch.argmin(logits, dim=1)
    maps_top = check_maps(explain(images, top), "explain(images, top_class)")
    maps_bottom = check_maps(explain(images, bottom), "explain(images, bottom_class)")
    corr = spearman(maps_top, maps_bottom)
    h = maps_top.shape[1]
    tol = default_tolerance(h) if tolerance is None else float(tolerance)
    r1, c1 = max_locations(maps_top)
    r2, c2 = max_locations(maps_bottom)
    dist2 = ((r1 - r2) ** 2 + (c1 - c2) ** 2).double()
    return ClassSensitivity(
        correlation=corr,
        dissimilarity=1.0 - corr,
        pointing_disagreement=(dist2 > tol * tol).double(),
        top_class=top,
        bottom_class=bottom,
    )
