"""RFxG's quadrants as targets and the authors' masking faithfulness, batched.

No map method is registered: the taxonomy's two axes are targets (shared/explain/targets.py) that
every gradient method explains unchanged; this module builds each image's four targets and scores
maps under them (papers/rfxg/README.md).
"""

from __future__ import annotations

import torch

from shared.explain.targets import ClassTarget, ContrastiveTarget, GroupTarget, Target
from shared.metrics._checks import stable_descending_order

QUADRANTS = ("pointwise_class", "contrastive_class", "pointwise_group", "contrastive_group")


def group_of(groups: list[list[int]], labels: torch.Tensor) -> torch.Tensor:
    """(B,) the first group holding each label; a clear error for a class in no group."""
    first = {}
    for i, g in enumerate(groups):
        for k in g:
            first.setdefault(int(k), i)
    missing = sorted({int(c) for c in labels.tolist()} - set(first))
    if missing:
        raise ValueError(f"classes {missing} are in no group of the settings' groups {groups}; every explained class needs one")
    return torch.tensor([first[int(c)] for c in labels.tolist()], dtype=torch.long, device=labels.device)


def quadrant_targets(logits: torch.Tensor, labels: torch.Tensor, groups: list[list[int]]) -> dict[str, Target]:
    """The four quadrants' targets of images with ``logits`` (B, K) and classes ``labels`` (module docstring)."""
    if len(groups) < 2:
        raise ValueError("the contrastive group quadrant needs at least two groups")
    own = group_of(groups, labels)
    fact = GroupTarget(groups, own)
    probs = logits.softmax(dim=1) @ fact.members(logits.shape[1], logits.device).T  # (B, G) group probabilities
    probs.scatter_(1, own[:, None], float("-inf"))
    foil = GroupTarget(groups, probs.argmax(dim=1))
    return {
        "pointwise_class": ClassTarget(labels),
        "contrastive_class": ContrastiveTarget.runner_up(logits, labels),
        "pointwise_group": fact,
        "contrastive_group": ContrastiveTarget(fact, foil),
    }


def masked_drop_auc(adapter, images: torch.Tensor, maps: torch.Tensor, targets: list[Target], alphas: list[float], max_batch: int) -> torch.Tensor:
    """(T, B): for each target, the AUC over ``alphas`` (trapezoid) of s(x) − s(x with the top α
    of the map's pixels black), s the target's ``probability``; every target from one forward.

    The top α are the first floor(α·N) pixels of the map's stable descending order (ties: lower
    flat index first; the authors' ``np.argsort(...)[::-1]`` breaks ties the other way).
    """
    b, h, w = maps.shape
    n = h * w
    order = stable_descending_order(maps.flatten(1))
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=maps.device).expand(b, n))
    counts = torch.tensor([int(a * n) for a in alphas], device=maps.device)
    owners = torch.arange(b, device=maps.device).repeat_interleave(len(alphas))
    step = torch.arange(len(alphas), device=maps.device).repeat(b)
    scores = torch.empty(len(targets), owners.numel(), dtype=torch.float64)
    with torch.no_grad():
        base = adapter(images)
        s0 = torch.stack([t.probability(base).double().cpu() for t in targets])  # (T, B)
        for start in range(0, owners.numel(), max_batch):
            rows = torch.arange(start, min(start + max_batch, owners.numel()), device=maps.device)
            img = owners[rows]
            keep = (rank[img] >= counts[step[rows]].view(-1, 1)).view(-1, 1, h, w)
            out = adapter(images[img] * keep)
            for j, t in enumerate(targets):
                scores[j, rows.cpu()] = t.probability(out, img).double().cpu()
    drop = s0.repeat_interleave(len(alphas), dim=1) - scores
    drop = drop.view(len(targets), b, len(alphas))
    x = torch.tensor(alphas, dtype=torch.float64)
    return torch.trapezoid(drop, x, dim=-1)
