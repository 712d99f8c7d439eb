"""Separable Gaussian filtering in torch, shared by the insertion substrate (RISE) and SSIM."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel1d(
    size: int, sigma: float, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Tensor:
    """A sampled, normalised 1-D Gaussian of odd length ``size`` (computed in float64)."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"Gaussian sigma must be positive, got {sigma}")
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).to(device=device, dtype=dtype)


def rise_blur_parameters(height: int, width: int) -> tuple[int, float]:
    """RISE's insertion blur (kernel 11, sigma 5 at 224 px), scaled with the image side.

    RISE's kernel spans about one sigma either side (radius 5, sigma 5); we keep that ratio:
    sigma = 5 * s and radius = max(1, round(5 * s)) with s = min(H, W) / 224.
    """
    scale = min(height, width) / 224.0
    sigma = 5.0 * scale
    radius = max(1, int(math.floor(5.0 * scale + 0.5)))
    return 2 * radius + 1, sigma


def gaussian_blur(images: Tensor, size: int, sigma: float, padding: str = "reflect") -> Tensor:
    """Blur (N, C, H, W) images with a separable Gaussian; output has the input size.

    ``padding`` is ``"reflect"`` (default), ``"replicate"`` or ``"zeros"`` (RISE's own code pads
    with zeros, which darkens a border of width ``size // 2``).
    """
    n, c, h, w = images.shape
    k = gaussian_kernel1d(size, sigma, images.device, images.dtype)
    r = size // 2
    x = images.reshape(n * c, 1, h, w)
    if padding == "zeros":
        x = F.pad(x, (r, r, r, r))
    elif padding in ("reflect", "replicate"):
        if padding == "reflect" and (r >= h or r >= w):
            padding = "replicate"  # reflect needs the pad to be smaller than the side
        x = F.pad(x, (r, r, r, r), mode=padding)
    else:
        raise ValueError(f"padding must be 'reflect', 'replicate' or 'zeros', got {padding!r}")
    x = F.conv2d(x, k.view(1, 1, 1, size))
    x = F.conv2d(x, k.view(1, 1, size, 1))
    return x.reshape(n, c, h, w)


def gaussian_filter_valid(x: Tensor, size: int, sigma: float) -> Tensor:
    """Gaussian-weighted local means of (N, 1, H, W) over every full window (no padding)."""
    k = gaussian_kernel1d(size, sigma, x.device, x.dtype)
    x = F.conv2d(x, k.view(1, 1, 1, size))
    return F.conv2d(x, k.view(1, 1, size, 1))
