"""XGrad-CAM, "Axiom-based Grad-CAM" (Fu, Hu, Dong, Guo, Gao, Li; BMVC 2020; arXiv 2008.02312).

Notation of the paper: A^k_ij the k-th feature map of the explained layer at position (i, j),
S_c the class score (any differentiable target here: a logit or a similarity).

    α_k^c = Σ_ij (A^k_ij / Σ_ab A^k_ab) · ∂S_c / ∂A^k_ij        (the paper's Eq. 9)
    L_XGrad-CAM = ReLU(Σ_k α_k^c A^k)

The weights are the solution the paper derives from its two axioms (Sensitivity and
Conservation): the gradient averaged with the activation itself as weights, where Grad-CAM
averages it uniformly. Where ∂S/∂A is constant over positions (the layer right before global
average pooling and a linear head) the two weights are equal: Σ_ij (A_ij / Σ A) g = g = mean_ij g.

Where Σ_ab A^k_ab = 0 the weight is undefined; we set it to 0 (every term A^k_ij · ∂S/∂A^k_ij is
then 0 too when A^k is 0 everywhere, the only way a post-ReLU channel sums to 0).
pytorch-grad-cam adds 1e-7 to the denominator instead (xgrad_cam.py). At layers with signed
activations (a ViT's LayerNorm output, an embedding's 1×1 conv) the channel sums can be
near 0 and the weights large: README.md, "Where it applies".
"""

from __future__ import annotations

import torch

from shared.explain import CAMExplainer, register_method


def xgradcam_weights(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """α_k = Σ_ij (A_kij / Σ_ab A_kab) G_kij for (B, C, h, w) activations and gradients: (B, C)."""
    channel_sum = A.sum(dim=(2, 3))
    numerator = (A * G).sum(dim=(2, 3))
    safe = torch.where(channel_sum != 0, channel_sum, torch.ones_like(channel_sum))
    return torch.where(channel_sum != 0, numerator / safe, torch.zeros_like(numerator))


@register_method("xgradcam")
class XGradCAM(CAMExplainer):
    """XGrad-CAM: channel weights are the activation-weighted average of the gradient (Eq. 9)."""

    relu = True

    def weights(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None  # needs_gradients is True: the base class always passes G
        return xgradcam_weights(A, G)
