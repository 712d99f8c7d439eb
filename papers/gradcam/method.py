"""Grad-CAM and Guided Grad-CAM (Selvaraju et al., ICCV 2017).

Notation of the paper: A^k is feature map k of the explained convolutional layer, y^c the score
of class c before the softmax (any differentiable target here: a logit or a similarity).

    α_k^c = 1/Z Σ_i Σ_j ∂y^c / ∂A^k_ij                 (Eq. 1, Z = number of positions)
    L^c_Grad-CAM = ReLU(Σ_k α_k^c A^k)                  (Eq. 2)
    Guided Grad-CAM = guided back-propagation ⊙ upsample(L^c_Grad-CAM)   (Sec. 3.2)

Guided back-propagation itself is its own paper's method (papers/guided_backprop/method.py,
Springenberg et al. 2015), imported here; its names stay importable from this module.

The authors' Lua code sums the gradients over positions instead of averaging them; that only
rescales every map by Z and changes no ranking, normalised map or metric used here.
"""

from __future__ import annotations

import torch

from papers.guided_backprop.method import check_guided_backprop_applies, guided_backprop, guided_relus
from shared.explain import CAMExplainer, Explainer, Target, register_method
from shared.models.adapter import ModelAdapter


@register_method("gradcam", blocks=True)
class GradCAM(CAMExplainer):
    """Grad-CAM: channel weights are the spatially averaged gradients (Eqs. 1–2)."""

    relu = True  # Eq. (2)

    def weights(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None  # needs_gradients is True: the base class always passes G
        return G.mean(dim=(2, 3))  # Eq. (1): α_k = 1/Z Σ_ij ∂y/∂A^k_ij


@register_method("guided_gradcam", kinds=["cnn"])
class GuidedGradCAM(Explainer):
    """Guided Grad-CAM: guided back-propagation ⊙ upsampled Grad-CAM (Sec. 3.2, Fig. 2).

    The paper shows the product as a colour image. The contract asks for one map per image:
    we take, per pixel, the largest absolute value over the colour channels of guided
    back-propagation (the usual grey-scale reduction of a gradient image, Simonyan et al. 2014)
    and multiply by the upsampled Grad-CAM map. ``colour(images, target)`` returns the paper's
    (B, 3, H, W) product.

    Defined for ReLU CNNs only: a ViT's GELU has no "positive input" gate to guide.
    """


    def __init__(self, adapter: ModelAdapter, layer: str | None = None) -> None:
        if adapter.kind == "vit":
            raise ValueError(
                "Guided Grad-CAM is not defined for vision transformers: guided back-propagation is "
                "a rule for ReLU backward passes and a ViT uses GELU; use 'gradcam' on the ViT"
            )
        super().__init__(adapter, layer)
        check_guided_backprop_applies(adapter.model, adapter.name)
        self.gradcam = GradCAM(adapter, self.layer)

    def colour(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        """(B, 3, H, W): guided back-propagation times the upsampled Grad-CAM map."""
        if target is None:
            raise ValueError("Guided Grad-CAM needs a target (ClassTarget or SimilarityTarget)")
        cam = self.gradcam(images, target)  # (B, H, W), already at input resolution
        return guided_backprop(self.adapter, images, target) * cam[:, None]

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        return self.colour(images, target).abs().amax(dim=1)


__all__ = [
    "GradCAM",
    "GuidedGradCAM",
    "check_guided_backprop_applies",
    "guided_backprop",
    "guided_relus",
]
