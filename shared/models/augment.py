"""Batched, seeded data augmentation on in-memory image tensors.

Every random draw comes from the caller's ``torch.Generator`` (on the CPU, so the draws are
the same whatever device the images live on), which keeps training byte-reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["augment_batch"]


def augment_batch(images: torch.Tensor, spec: Mapping[str, Any] | None, generator: torch.Generator) -> torch.Tensor:
    """Randomly flip and shift a batch (B, C, H, W); ``spec`` = ``{"hflip", "vflip", "shift"}``.

    ``hflip`` / ``vflip``: flip each image with probability 1/2. ``shift``: translate each
    image by up to ``shift`` pixels in x and y, repeating the edge pixels (a random crop of
    an edge-padded image, done for the whole batch with one gather).
    """
    if not spec:
        return images
    b, _, h, w = images.shape
    out = images
    for key, dim in (("hflip", 3), ("vflip", 2)):
        if spec.get(key):
            flip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
            out = torch.where(flip[:, None, None, None], out.flip(dim), out)
    shift = int(spec.get("shift", 0) or 0)
    if shift > 0:
        dy = torch.randint(-shift, shift + 1, (b,), generator=generator).to(images.device)
        dx = torch.randint(-shift, shift + 1, (b,), generator=generator).to(images.device)
        rows = (torch.arange(h, device=images.device)[None, :] + dy[:, None]).clamp(0, h - 1)  # (B, H)
        cols = (torch.arange(w, device=images.device)[None, :] + dx[:, None]).clamp(0, w - 1)  # (B, W)
        batch = torch.arange(b, device=images.device)[:, None, None]
        # advanced indexing puts the indexed dims first: (B, H, W, C) -> (B, C, H, W)
        out = out.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
    return out
