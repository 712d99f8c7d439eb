"""Gradient × input (Shrikumar, Greenside, Shcherbina, Kundaje 2016, "Not Just a Black Box:
Learning Important Features Through Propagating Activation Differences", arXiv 1605.01713).

The paper multiplies the input by the gradient of the output (the method the literature cites
it for, e.g. Ancona et al., ICLR 2018, Table 1),

    R_i = x_i · ∂y/∂x_i

which for a ReLU network without biases equals the relevance of LRP-ε (ε → 0) and DeepLIFT's
with the all-zero reference: the attribution of the difference y(x) − y(0) of the network's
input from zero. The map sums the three colour channels, keeping the sign:
M = Σ_c R_c.

**Convention.** The adapter normalises the [0, 1] image x to the network's input
x̃ = (x − μ)/σ (per channel). With ∂y/∂x̃ = σ ∂y/∂x,

    x̃ ⊙ ∂y/∂x̃ = (x − μ) ⊙ ∂y/∂x.

``reference="mean"`` (default) is the paper's product on the network's own input: the
reference is x̃ = 0, the dataset's mean colour μ (which is also what the benchmark's deletion
metric deletes to). ``reference="black"`` is x ⊙ ∂y/∂x on the [0, 1] image (reference black,
x = 0). They differ by μ ⊙ ∂y/∂x (README).
"""

from __future__ import annotations

from typing import Literal

import torch

from shared.explain import Explainer, Target, register_method
from shared.explain.gradients import input_gradients, reduce_channels
from shared.models.adapter import ModelAdapter

REFERENCES = ("mean", "black")


@register_method("gradient_x_input", label="Gradient × input")
class GradientXInput(Explainer):
    """M = Σ_c (x − x_ref)_c · ∂y/∂x_c, x_ref the mean colour (default) or black."""

    def __init__(self, adapter: ModelAdapter, reference: Literal["mean", "black"] = "mean") -> None:
        super().__init__(adapter)
        if reference not in REFERENCES:
            raise ValueError(f"unknown reference {reference!r}; one of {', '.join(REFERENCES)}")
        self.reference = reference

    def reference_image(self, images: torch.Tensor) -> torch.Tensor:
        """(1, 3, 1, 1) or (B, 3, H, W): the reference x_ref in [0, 1] space."""
        if self.reference == "mean":
            return self.adapter._mean.to(images.dtype)  # the normalised input's zero
        return torch.zeros_like(images)

    def attributions(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        """(B, 3, H, W): (x − x_ref) ⊙ ∂y/∂x."""
        grad = input_gradients(self.adapter, images, target)
        return (images - self.reference_image(images)) * grad

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        if target is None:
            raise ValueError("gradient × input needs a target (ClassTarget or SimilarityTarget)")
        return reduce_channels(self.attributions(images, target), "sum")


__all__ = ["GradientXInput"]
