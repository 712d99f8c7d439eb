"""Grad-CAM++ (Chattopadhyay, Sarkar, Howlader, Balasubramanian, WACV 2018; arXiv 1710.11063).

The paper (Sec. 3.1) writes the class score as Y^c = Σ_k w_k^c Σ_ij A^k_ij and models the
weights as a positive-gradient-weighted sum,

    w_k^c = Σ_ij α^kc_ij · ReLU(∂Y^c / ∂A^k_ij)
    α^kc_ij = ∂²Y^c/(∂A^k_ij)² / (2 ∂²Y^c/(∂A^k_ij)² + Σ_ab A^k_ab ∂³Y^c/(∂A^k_ij)³)
    L^c_ij = ReLU(Σ_k w_k^c A^k_ij)

Closed form (Sec. 3.3): with an exponential output Y^c = exp(S^c), S^c the
pre-softmax score, and a network that is piecewise linear in A (ReLU), the higher derivatives
are powers of the first: ∂ⁿY^c/∂Aⁿ = exp(S^c) (∂S^c/∂A)ⁿ. Writing g = ∂S^c/∂A^k_ij,

    α^kc_ij = g² / (2 g² + Σ_ab A^k_ab g³)         (Eq. 19: exp(S^c) cancels)
    w_k^c   = Σ_ij α^kc_ij · ReLU(exp(S^c) g)      (Eq. 20)
            = exp(S^c) · Σ_ij α^kc_ij ReLU(g).

exp(S^c) > 0 is one number per image: it rescales that image's whole map and nothing else
(ReLU commutes with a positive factor). We drop it, as the authors' released code and most
implementations do, because exp of a logit overflows float32 for logits above ~88 and because
every metric we report is invariant to a positive per-image scale. Where α's denominator is 0
(g = 0, so α would multiply ReLU(g) = 0 anyway) we set α = 0.
"""

from __future__ import annotations

import torch

from shared.explain import CAMExplainer, register_method


def gradcampp_alpha(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """α^kc_ij of Eq. (19) for activations ``A`` and first derivatives ``G`` (B, C, h, w)."""
    g2 = G.pow(2)
    g3 = G.pow(3)
    sum_A = A.sum(dim=(2, 3), keepdim=True)  # Σ_ab A^k_ab
    denominator = 2 * g2 + sum_A * g3
    safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator != 0, g2 / safe, torch.zeros_like(g2))


@register_method("gradcampp")
class GradCAMPlusPlus(CAMExplainer):
    """Grad-CAM++ with the closed-form α of Eq. (19) and weights of Eq. (20) without exp(S^c)."""

    relu = True

    def weights(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None  # needs_gradients is True: the base class always passes G
        alpha = gradcampp_alpha(A, G)
        return (alpha * G.clamp_min(0)).sum(dim=(2, 3))  # Eq. (20) up to exp(S^c) > 0
