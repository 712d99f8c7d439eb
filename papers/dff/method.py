"""Deep Feature Factorization (Collins, Achanta & Süsstrunk, ECCV 2018): the computation.

DFF is not a per-image map method (its concepts are factored across a set of images), so nothing
here is registered; ``figures.py``'s step calls these. The factorisation itself is
``shared.concepts`` (shared with ICE and TraNCE). See figures.py's docstring and README.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from shared.concepts import concept_layer, concept_maps, layer_activations, nmf_concepts
from shared.metrics.localisation import default_tolerance, pointing_game, relevance_mass_accuracy

METRICS = ("relevance_mass", "pointing_game")


def concept_scores(maps: Tensor, masks: Tensor) -> dict[str, Tensor]:
    """Relevance mass and pointing-game hit of every concept on every image: (N, k) each.

    ``maps`` (N, k, H, W) concept heat-maps, ``masks`` (N, H, W) bool. One batched call per metric
    over the N·k maps (each concept's map is scored against its image's mask)."""
    n, k = maps.shape[:2]
    flat, rep = maps.flatten(0, 1), masks.repeat_interleave(k, dim=0)
    return {
        "relevance_mass": relevance_mass_accuracy(flat, rep).view(n, k),
        "pointing_game": pointing_game(flat, rep).view(n, k),
    }


def halves(n: int, device: torch.device | str = "cpu") -> Tensor:
    """True for the images of the first half (even positions), False for the second (odd)."""
    return torch.arange(n, device=device) % 2 == 0


def cross_fit_choice(scores: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """The concept each image is scored with, chosen on the *other* half: (N,) long, and the two choices.

    ``scores`` (N, k): the concept with the highest mean over the even images is used on the odd
    ones and vice versa (ties: the lowest index, torch.argmax)."""
    first = halves(scores.shape[0], scores.device)
    best_first = int(scores[first].mean(dim=0).argmax())
    best_second = int(scores[~first].mean(dim=0).argmax())
    chosen = torch.where(first, torch.full_like(first, best_second, dtype=torch.long), torch.full_like(first, best_first, dtype=torch.long))
    return chosen, (best_first, best_second)


def pointing_chance(masks: Tensor, tolerance: float | None = None) -> Tensor:
    """Per image, the share of pixels within the pointing-game tolerance (Euclidean, as
    ``shared.metrics.pointing_game``) of a mask pixel: the hit rate of a maximum placed uniformly at random."""
    n, h, w = masks.shape
    tol = default_tolerance(h) if tolerance is None else float(tolerance)
    r = int(tol)
    ys = torch.arange(-r, r + 1, device=masks.device, dtype=torch.float64)
    disk = ((ys[:, None] ** 2 + ys[None, :] ** 2) <= tol * tol).double()
    # a pixel is within tol of the mask iff the disk around it meets a mask pixel: a convolution
    near = F.conv2d(masks[:, None].double(), disk[None, None], padding=r)[:, 0] > 0
    return near.double().flatten(1).mean(dim=1)


def dff_model(batch, k: int, block: int | None, seed: int, max_iter: int, batch_size: int) -> dict:
    """DFF on one model's evaluation subset: the concepts, their maps, the scores and choices."""
    adapter, images = batch.adapter, batch.images
    masks = batch.split.masks.to(images.device)
    layer = concept_layer(adapter, images[:batch_size], block)
    acts = layer_activations(adapter, images, layer, batch_size)
    concepts = nmf_concepts(acts, k, seed=seed, max_iter=max_iter)
    maps = concept_maps(concepts, tuple(images.shape[-2:]))
    per_concept = concept_scores(maps, masks)
    chosen, choice = cross_fit_choice(per_concept["relevance_mass"])
    rows = torch.arange(images.shape[0], device=images.device)
    scores = {
        ("dff", m): per_concept[m][rows, chosen] for m in METRICS
    } | {
        ("dff_oracle", m): per_concept[m].amax(dim=1) for m in METRICS
    } | {
        ("chance", "relevance_mass"): masks.double().flatten(1).mean(dim=1),
        ("chance", "pointing_game"): pointing_chance(masks),
    }
    return {"layer": layer, "concepts": concepts, "maps": maps, "per_concept": per_concept,
            "chosen": chosen, "choice": choice, "scores": scores}
