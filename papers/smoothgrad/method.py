"""SmoothGrad (Smilkov, Thorat, Kim, Viégas, Wattenberg 2017; arXiv 1706.03825), with the
squared (Hooker et al., NeurIPS 2019) and variance (Adebayo et al., 2018) variants.

The sensitivity map M_c(x) = ∂S_c/∂x is averaged over noisy copies of the image,

    M̂_c(x) = 1/n Σ_{i=1}^n M_c(x + N(0, σ²))

with σ given as a noise level σ / (x_max − x_min) (the paper's study: 10–20 % works best) and
n = 50 (diminishing returns beyond, by the paper's sample-size study). The noise is added to the [0, 1] image and the range
is the image's own (x_max − x_min), per image.

Map: max_c |M̂_c| — the gradient is averaged first, signed (as the formula and the authors'
``saliency`` library's ``GetSmoothedMask`` do), then reduced like ``saliency`` (Simonyan et
al.'s max over colour channels of the magnitude), so SmoothGrad and saliency differ only by the
noise. ``reduce`` sets another reduction (the authors' visualisation sums |·| over channels:
``reduce="abs_sum"``). README: how this differs from captum's NoiseTunnel(Saliency()).

Variants (``statistic``): ``sq`` = 1/n Σ M_c(x + ε_i)² (SmoothGrad-Squared, Hooker et al. 2019,
"ROAR", Sec. 4), ``var`` = 1/n Σ M_c(x + ε_i)² − M̂_c² (VarGrad, Adebayo et al. 2018, "Local
explanation methods for deep neural networks lack sensitivity to parameter values"), each then
max over channels (both are ≥ 0).

Batch invariance: the standard normal draws ε_i (n, 3, H, W) come from a ``torch.Generator``
seeded by ``seed``, the same draws for every image of every batch (scaled by each image's σ),
so an image's map does not depend on the batch it is explained in.
"""

from __future__ import annotations

from typing import Literal

import torch

from papers.saliency.method import gradients_at
from shared.explain import Explainer, Target, register_method
from shared.explain.gradients import REDUCTIONS, Reduction, reduce_channels
from shared.models.adapter import ModelAdapter

STATISTICS = ("mean", "sq", "var")


def noise_draws(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """(n, C, H, W) standard normal draws from a CPU generator seeded by ``seed`` (device-independent)."""
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64).float()


@register_method("smoothgrad", label="SmoothGrad")
@register_method("smoothgrad_sq", statistic="sq", leaderboard=False, label="SmoothGrad² (Hooker et al. 2019)")
@register_method("vargrad", statistic="var", leaderboard=False, label="VarGrad (Adebayo et al. 2018)")
class SmoothGrad(Explainer):
    """Mean (or mean square, or variance) of the input gradient over n noisy copies."""

    def __init__(
        self,
        adapter: ModelAdapter,
        samples: int = 50,
        noise_level: float = 0.15,
        statistic: Literal["mean", "sq", "var"] = "mean",
        reduce: Reduction = "abs_max",
        seed: int = 0,
        max_batch: int = 64,
    ) -> None:
        super().__init__(adapter)
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        if not noise_level >= 0:
            raise ValueError(f"noise_level is σ / (x_max − x_min) and must be >= 0, got {noise_level}")
        if statistic not in STATISTICS:
            raise ValueError(f"unknown statistic {statistic!r}; one of {', '.join(STATISTICS)}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"unknown channel reduction {reduce!r}; one of {', '.join(REDUCTIONS)}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.samples, self.noise_level, self.statistic = samples, float(noise_level), statistic
        self.reduce, self.seed, self.max_batch = reduce, seed, max_batch

    def sigma(self, images: torch.Tensor) -> torch.Tensor:
        """(B,): σ = noise_level · (x_max − x_min) of each image."""
        flat = images.flatten(1)
        return self.noise_level * (flat.amax(1) - flat.amin(1))

    def moments(self, images: torch.Tensor, target: Target, noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) twice: 1/n Σ g_i and 1/n Σ g_i², g_i = ∇S(x + σ ε_i).

        ``noise`` (n, 3, H, W) standard normal draws; by default :func:`noise_draws` of ``seed``.
        """
        if noise is None:
            noise = noise_draws(self.samples, tuple(images.shape[1:]), self.seed)
        noise = noise.to(images.device, images.dtype)
        n = noise.shape[0]
        sigma = self.sigma(images)

        def points(k: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return images[b] + sigma[b, None, None, None] * noise[k]

        first = torch.zeros_like(images)
        second = torch.zeros_like(images)
        for _, b, grad in gradients_at(self.adapter, images, target, points, n, self.max_batch):
            first.index_add_(0, b, grad)
            if self.statistic != "mean":
                second.index_add_(0, b, grad * grad)
        return first / n, second / n

    def attributions(self, images: torch.Tensor, target: Target, noise: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W): M̂ (mean), its mean square (sq) or variance (var) per channel."""
        mean, square = self.moments(images, target, noise)
        if self.statistic == "mean":
            return mean
        if self.statistic == "sq":
            return square
        return (square - mean * mean).clamp_min(0)  # rounding can make it slightly negative

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        if target is None:
            raise ValueError("SmoothGrad needs a target (ClassTarget or SimilarityTarget)")
        return reduce_channels(self.attributions(images, target), self.reduce)


__all__ = ["SmoothGrad", "noise_draws"]
