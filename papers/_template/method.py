"""Template method: the smallest complete CAM method (Grad-CAM's weights).

A method file reads like the paper: its equations, numbered, with the paper's names.
"""

from __future__ import annotations

import torch

from shared.explain import CAMExplainer, register_method


# The one place a method is named: where it applies (kinds, tasks, optionally archs) and whether
# it is on the leaderboard; blocks=True would add template_cam_b<k> (the method at block k).
@register_method("template_cam", kinds=["cnn", "vit"], tasks=["classifier", "embedding"])
class TemplateCAM(CAMExplainer):
    """Map = ReLU(Σ_k α_k A^k) with α_k = mean_ij ∂y/∂A^k_ij (Eq. 1 of the paper)."""

    relu = True

    def weights(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None
        return G.mean(dim=(2, 3))  # Eq. (1): global-average-pooled gradients
