"""Methods that are one method on a model: identical maps up to one positive factor per image.

XGrad-CAM and HiResCAM equal Grad-CAM by construction at the last layer of a GAP + linear-head
classifier (the gradient is then constant over positions); the leaderboard must say so rather
than list them as different methods. Checked on the maps themselves, not assumed: two methods
are equal on a model when, after dividing each image's map by its largest absolute value (every
metric here is invariant to a positive per-image scale), no value differs by more than ``tol``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EQUAL_TOLERANCE = 1e-4
"""Largest difference of per-image max-normalised maps still called equal: float32 rounding of
two orders of summation is ~1e-6 of a map's scale; any real difference of method is far above."""


@dataclass(frozen=True)
class Equality:
    """``method`` gives ``same_as``'s maps on ``model`` (largest normalised difference ``max_diff``)."""

    model: str
    method: str
    same_as: str
    max_diff: float


def _normalised(maps: torch.Tensor) -> torch.Tensor:
    scale = maps.flatten(1).abs().amax(dim=1).clamp_min(1e-30)
    return maps.double() / scale.double()[:, None, None]


def equal_methods(model: str, maps: dict[str, torch.Tensor], tol: float = EQUAL_TOLERANCE) -> list[Equality]:
    """Each method whose maps equal an earlier method's (methods in ``maps``' order: the first of
    a group is the one named, the others are its equals). All-zero maps equal nothing (a method
    that explains nothing is not "the same method" as another that explains nothing)."""
    names = list(maps)
    normalised = {m: _normalised(maps[m]) for m in names}
    found: list[Equality] = []
    canonical: list[str] = []
    for m in names:
        a = normalised[m]
        if not bool((maps[m] != 0).any()):
            canonical.append(m)
            continue
        for c in canonical:
            b = normalised[c]
            if b.shape == a.shape and bool((maps[c] != 0).any()):
                diff = float((a - b).abs().max())
                if diff <= tol:
                    found.append(Equality(model, m, c, diff))
                    break
        else:
            canonical.append(m)
    return found
