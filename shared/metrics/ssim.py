"""Structural similarity (Wang, Bovik, Sheikh & Simoncelli, IEEE TIP 2004) between saliency maps."""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_same_maps, minmax_normalise
from ._filters import gaussian_filter_valid


def ssim(
    maps_a: Tensor,
    maps_b: Tensor,
    window_size: int = 7,
    sigma: float = 1.5,
    normalise: bool = True,
    data_range: float = 1.0,
) -> Tensor:
    """Mean SSIM per image (B,), float64.

    Wang et al. (2004) with a Gaussian window (sigma 1.5, ``window_size`` x ``window_size``,
    shrunk to the largest odd size that fits a smaller map), the standard constants
    C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = ``data_range``, population (Gaussian-weighted)
    moments, and the mean over every full window (no padding). With ``normalise`` the maps
    are min-max normalised per image first, as Adebayo et al. (2018) compare maps.
    """
    a, b = check_same_maps(maps_a, maps_b)
    if normalise:
        a, b = minmax_normalise(a), minmax_normalise(b)
    size = min(window_size, a.shape[1], a.shape[2])
    if size % 2 == 0:
        size -= 1
    x = a.double().unsqueeze(1)
    y = b.double().unsqueeze(1)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x = gaussian_filter_valid(x, size, sigma)
    mu_y = gaussian_filter_valid(y, size, sigma)
    var_x = gaussian_filter_valid(x * x, size, sigma) - mu_x**2
    var_y = gaussian_filter_valid(y * y, size, sigma) - mu_y**2
    cov = gaussian_filter_valid(x * y, size, sigma) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)
