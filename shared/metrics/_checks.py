"""Input validation shared by every metric: clear errors that name the argument and the shape
that was expected, so a bad call fails at the boundary and not deep inside a convolution."""

from __future__ import annotations

import torch
from torch import Tensor


def _describe(t: object) -> str:
    if isinstance(t, Tensor):
        return f"a {t.dtype} tensor of shape {tuple(t.shape)}"
    return f"a {type(t).__name__}"


def check_maps(maps: Tensor, name: str = "maps") -> Tensor:
    """Return ``maps`` as float32, after checking it is a finite (B, H, W) tensor."""
    if not isinstance(maps, Tensor) or maps.ndim != 3:
        raise ValueError(f"{name} must be a (B, H, W) tensor, got {_describe(maps)}")
    if not maps.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {maps.dtype}")
    if maps.shape[0] == 0 or maps.shape[1] == 0 or maps.shape[2] == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(maps.shape)}")
    bad = ~torch.isfinite(maps)
    if bad.any():
        images = torch.nonzero(bad.flatten(1).any(1)).flatten().tolist()
        raise ValueError(f"{name} contains NaN or infinite values (images {images[:10]})")
    return maps.float()


def check_same_maps(a: Tensor, b: Tensor, names: tuple[str, str] = ("maps_a", "maps_b")) -> tuple[Tensor, Tensor]:
    """Two (B, H, W) map batches of the same shape."""
    a = check_maps(a, names[0])
    b = check_maps(b, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a, b.to(a.device)


def check_images(images: Tensor, maps: Tensor, name: str = "images") -> Tensor:
    """(B, 3, H, W) float images matching the maps' batch and spatial size."""
    b, h, w = maps.shape
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[0] != b or images.shape[2:] != (h, w):
        raise ValueError(f"{name} must be a (B, C, H, W) tensor with (B, H, W) = {(b, h, w)} as the maps, got {_describe(images)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point in [0, 1], got {images.dtype}")
    if not torch.isfinite(images).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return images


def check_masks(masks: Tensor, maps: Tensor, name: str = "masks", allow_empty: bool = False) -> Tensor:
    """(B, H, W) bool masks matching the maps; by default every mask must have a pixel."""
    if not isinstance(masks, Tensor) or masks.shape != maps.shape:
        raise ValueError(f"{name} must be a (B, H, W) bool tensor of shape {tuple(maps.shape)}, got {_describe(masks)}")
    if masks.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got {masks.dtype}")
    masks = masks.to(maps.device)
    if not allow_empty:
        empty = ~masks.flatten(1).any(1)
        if empty.any():
            raise ValueError(f"{name} has empty ground-truth masks (images {torch.nonzero(empty).flatten().tolist()[:10]})")
    return masks


def check_boxes(boxes: Tensor, maps: Tensor, name: str = "boxes") -> Tensor:
    """(B, 4) integer boxes x0, y0, x1, y1 (inclusive-exclusive), non-empty and inside the image."""
    b, h, w = maps.shape
    if not isinstance(boxes, Tensor) or boxes.shape != (b, 4):
        raise ValueError(f"{name} must be a (B, 4) int64 tensor (x0, y0, x1, y1) with B = {b}, got {_describe(boxes)}")
    if boxes.is_floating_point() or boxes.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, got {boxes.dtype}")
    boxes = boxes.to(device=maps.device, dtype=torch.int64)
    x0, y0, x1, y1 = boxes.unbind(1)
    ok = (x0 >= 0) & (y0 >= 0) & (x1 <= w) & (y1 <= h) & (x1 > x0) & (y1 > y0)
    if not ok.all():
        bad = torch.nonzero(~ok).flatten().tolist()
        raise ValueError(f"{name} must satisfy 0 <= x0 < x1 <= {w} and 0 <= y0 < y1 <= {h}; bad rows {bad[:10]}")
    return boxes


def box_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """(B, H, W) bool masks of inclusive-exclusive boxes, built by broadcasting (no loop)."""
    ys = torch.arange(height, device=boxes.device).view(1, height, 1)
    xs = torch.arange(width, device=boxes.device).view(1, 1, width)
    x0, y0, x1, y1 = (c.view(-1, 1, 1) for c in boxes.unbind(1))
    return (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)


def minmax_normalise(maps: Tensor) -> Tensor:
    """Per-image min-max normalisation to [0, 1]; a constant map becomes all zeros."""
    flat = maps.flatten(1)
    lo = flat.amin(1, keepdim=True)
    span = flat.amax(1, keepdim=True) - lo
    # A constant map carries no ranking information; zeros (rather than NaN) keep the metrics defined.
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(flat))
    return out.view_as(maps)


def stable_descending_order(flat: Tensor) -> Tensor:
    """Indices sorting each row by descending value; ties keep the lower pixel index first."""
    return torch.sort(flat, dim=1, descending=True, stable=True).indices
