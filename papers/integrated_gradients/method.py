"""Integrated Gradients (Sundararajan, Taly, Yan, ICML 2017; arXiv 1703.01365).

For an input x, a baseline x' and a differentiable score F (Sec. 3, Eq. 1):

    IG_i(x) = (x_i − x'_i) · ∫_0^1 ∂F(x' + α (x − x')) / ∂x_i dα

approximated by a quadrature over m points of the straight path (Sec. 5, Eq. 3: a Riemann sum,
"20 to 300 steps"): IG_i ≈ (x_i − x'_i) Σ_k w_k ∂F(x' + α_k (x − x'))/∂x_i. Completeness
(Prop. 1): Σ_i IG_i(x) = F(x) − F(x'), exactly for the integral and up to the quadrature error
for the sum (tested).

Quadratures (captum's ``approximation_methods``, same α_k and w_k): ``riemann_left`` /
``riemann_right`` / ``riemann_middle`` (w_k = 1/m; the paper's Eq. 3 is ``riemann_right``),
``riemann_trapezoid`` (α_k = k/(m−1), w_k = 1/(m−1) with the two end weights halved: the
trapezoid rule, which the authors' code uses since 2019; captum's weights are 1/m, halved at
the ends, and sum to (m−1)/m, so its attributions are ours × (m−1)/m) and ``gausslegendre``
(m-point Gauss–Legendre on [0, 1], captum's default). Default: m = 50 (the paper's range),
``riemann_trapezoid``.

Baseline: ``black`` (x' = 0 in [0, 1], the paper's "black image", Sec. 3) or ``mean`` (the
dataset's mean colour: the normalised input's zero). IG is invariant to the adapter's affine
normalisation: (x̃ − x̃') ∂F/∂x̃ = (x − x') ∂F/∂x for x̃ = (x − μ)/σ.

Map: the signed sum over colour channels Σ_c IG_c (so the map itself sums to F(x) − F(x')).
Batched over (images × steps), ``max_batch`` rows a forward/backward pass.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from papers.saliency.method import gradients_at
from shared.explain import Explainer, Target, register_method
from shared.explain.gradients import reduce_channels
from shared.models.adapter import ModelAdapter

QUADRATURES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")
BASELINES = ("black", "mean")


def quadrature(steps: int, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(α_k, w_k), float64, of the m-point rule ``method`` on [0, 1] (captum's conventions)."""
    if method not in QUADRATURES:
        raise ValueError(f"unknown integration method {method!r}; one of {', '.join(QUADRATURES)}")
    if steps < (1 if method == "gausslegendre" else 2):
        raise ValueError(f"{method} needs at least {1 if method == 'gausslegendre' else 2} steps, got {steps}")
    m = steps
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(m)
        return torch.from_numpy(0.5 * (nodes + 1)), torch.from_numpy(0.5 * weights)
    w = torch.full((m,), 1.0 / m, dtype=torch.float64)
    if method == "riemann_trapezoid":
        # the trapezoid rule on m equally spaced nodes: spacing 1/(m−1), end weights halved, Σ w = 1
        # (captum writes 1/m here, so its weights sum to (m−1)/m: README, "captum")
        alphas = torch.linspace(0, 1, m, dtype=torch.float64)
        w = torch.full((m,), 1.0 / (m - 1), dtype=torch.float64)
        w[0] /= 2
        w[-1] /= 2
    elif method == "riemann_left":
        alphas = torch.linspace(0, 1 - 1 / m, m, dtype=torch.float64)
    elif method == "riemann_middle":
        alphas = torch.linspace(1 / (2 * m), 1 - 1 / (2 * m), m, dtype=torch.float64)
    else:  # riemann_right: the paper's Eq. 3, α_k = k/m
        alphas = torch.linspace(1 / m, 1, m, dtype=torch.float64)
    return alphas, w


@register_method("integrated_gradients", label="Integrated Gradients")
class IntegratedGradients(Explainer):
    """IG (Eq. 1) by an m-point quadrature of the straight path; map Σ_c IG_c (signed)."""

    def __init__(
        self,
        adapter: ModelAdapter,
        steps: int = 50,
        method: Literal["riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre"] = "riemann_trapezoid",
        baseline: Literal["black", "mean"] = "black",
        max_batch: int = 64,
    ) -> None:
        super().__init__(adapter)
        if baseline not in BASELINES:
            raise ValueError(f"unknown baseline {baseline!r}; one of {', '.join(BASELINES)}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.alphas, self.weights = quadrature(steps, method)  # checks steps and method
        self.steps, self.method, self.baseline, self.max_batch = steps, method, baseline, max_batch

    def baseline_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W): x' in [0, 1] space."""
        if self.baseline == "mean":
            return self.adapter._mean.to(images.dtype).expand_as(images)
        return torch.zeros_like(images)

    def attributions(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        """(B, 3, H, W): (x − x') ⊙ Σ_k w_k ∇F(x' + α_k (x − x'))."""
        baseline = self.baseline_image(images)
        delta = images - baseline
        alphas = self.alphas.to(images.device, images.dtype)
        weights = self.weights.to(images.device, images.dtype)

        def points(k: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return baseline[b] + alphas[k, None, None, None] * delta[b]

        total = torch.zeros_like(images)
        for k, b, grad in gradients_at(self.adapter, images, target, points, self.steps, self.max_batch):
            total.index_add_(0, b, weights[k, None, None, None] * grad)
        return delta * total

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        if target is None:
            raise ValueError("integrated gradients needs a target (ClassTarget or SimilarityTarget)")
        return reduce_channels(self.attributions(images, target), "sum")


__all__ = ["IntegratedGradients", "quadrature"]
