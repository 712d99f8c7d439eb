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
    """RISE's insertion blur (kernel 11, sigma 5 at 224 px: ``klen = 11; ksig = 5`` in
    eclique/RISE ``Evaluation.ipynb``), scaled with the image side.

    RISE's kernel spans about one sigma either side (radius 5, sigma 5); we keep that ratio:
    sigma = 5 * s and radius = max(1, round(5 * s)) with s = min(H, W) / 224. Its weights are
    not a Gaussian sampled on that window: see :func:`rise_kernel1d`.
    """
    scale = min(height, width) / 224.0
    sigma = 5.0 * scale
    radius = max(1, int(math.floor(5.0 * scale + 0.5)))
    return 2 * radius + 1, sigma


def rise_kernel1d(
    size: int, sigma: float, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Tensor:
    """One axis of RISE's blur kernel: ``scipy.ndimage.gaussian_filter`` of a centred delta.

    RISE's ``gkern(klen, nsig)`` (eclique/RISE ``evaluation.py`` lines 10-23, commit d91ea00)
    smooths a ``klen x klen`` delta with ``gaussian_filter(inp, nsig)``: scipy's defaults,
    mode ``"reflect"`` and ``truncate=4``, i.e. a sampled Gaussian of radius
    ``int(4 * nsig + 0.5)`` (20 at nsig 5) whose tails are reflected back into the ``klen``
    window. The result is much flatter than a Gaussian sampled on the window (at 11 / 5:
    0.088 at the ends, 0.094 at the centre, vs 0.066 and 0.109) and sums to 1 (reflection
    moves weight, never drops it). The 2-D kernel is the outer product of this one with itself
    (scipy filters axis by axis and the delta is separable). Computed here in float64 without
    scipy; tests check it against scipy.
    """
    if size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be a positive odd integer, got {size}")
    if sigma <= 0:
        raise ValueError(f"Gaussian sigma must be positive, got {sigma}")
    radius = int(4.0 * float(sigma) + 0.5)  # scipy.ndimage.gaussian_filter1d, truncate=4.0
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * taps**2 / float(sigma) ** 2)
    weights = weights / weights.sum()
    centre = size // 2
    # out[i] = sum_j w[j] * delta[reflect(i + j)]; scipy's "reflect" is (d c b a | a b c d | d c b a),
    # periodic with period 2 * size
    src = (torch.arange(size).view(-1, 1) + taps.long().view(1, -1)) % (2 * size)
    src = torch.where(src >= size, 2 * size - 1 - src, src)
    kernel = (weights.view(1, -1) * (src == centre)).sum(1)
    return kernel.to(device=device, dtype=dtype)


def separable_blur(images: Tensor, kernel1d: Tensor, padding: str = "reflect") -> Tensor:
    """Convolve every channel of (N, C, H, W) images with ``outer(kernel1d, kernel1d)``.

    ``padding``: ``"reflect"``, ``"replicate"`` or ``"zeros"``; output has the input size.
    """
    n, c, h, w = images.shape
    size = kernel1d.shape[0]
    k = kernel1d.to(device=images.device, dtype=images.dtype)
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


def gaussian_blur(images: Tensor, size: int, sigma: float, padding: str = "reflect") -> Tensor:
    """Blur (N, C, H, W) images with a separable sampled Gaussian (:func:`gaussian_kernel1d`).

    ``padding`` is ``"reflect"`` (default), ``"replicate"`` or ``"zeros"``. This is *not* RISE's
    blur: RISE uses a different kernel (:func:`rise_kernel1d`) and blurs the ImageNet-normalised
    tensor, so its zero padding is the mean colour, not black (see
    :func:`shared.metrics.faithfulness.perturbation_endpoints`).
    """
    return separable_blur(images, gaussian_kernel1d(size, sigma, images.device, images.dtype), padding)


def gaussian_filter_valid(x: Tensor, size: int, sigma: float) -> Tensor:
    """Gaussian-weighted local means of (N, 1, H, W) over every full window (no padding)."""
    k = gaussian_kernel1d(size, sigma, x.device, x.dtype)
    x = F.conv2d(x, k.view(1, 1, 1, size))
    return F.conv2d(x, k.view(1, 1, size, 1))
