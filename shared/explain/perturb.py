"""The perturbation methods' forward: scores of many perturbed copies of each image, batched.

Score-CAM, occlusion and RISE explain an image by scoring copies of it (masked, occluded,
randomly masked). They all go through :func:`perturbed_scores`, the same chunked forward the
deletion / insertion metrics use (:func:`shared.metrics.faithfulness.score_rows`): rows are
built lazily, ``max_batch`` at a time, so memory does not grow with the number of copies.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from shared.explain.base import frozen
from shared.explain.targets import Target
from shared.metrics.faithfulness import score_rows
from shared.models.adapter import ModelAdapter


def perturbed_scores(
    adapter: ModelAdapter,
    target: Target,
    make_rows: Callable[[torch.Tensor], torch.Tensor],
    owners: torch.Tensor,
    probability: bool = True,
    max_batch: int = 256,
) -> torch.Tensor:
    """(rows,) float64: the target's score of each row ``make_rows(row_ids)`` (images in [0, 1]),
    row ``r`` being a copy of image ``owners[r]``.

    ``probability``: the class probability (softmax) of a classifier, as RISE's and Score-CAM's
    code score; else the target's raw score (a logit). An embedding model's score is its
    similarity to the reference either way.
    """
    if target is None:
        raise ValueError("a perturbation method needs a target (ClassTarget or SimilarityTarget)")

    def score(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        out = adapter(images)
        return target.probability(out, index) if probability else target(out, index)

    with frozen(adapter):
        return score_rows(make_rows, owners, score, max_batch)
