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
(ReLU commutes with a positive factor). We drop it, because exp of a logit overflows float32
for logits above ~88 and every metric we report is invariant to a positive per-image scale
(the authors' code keeps it, then divides the map by its maximum: README.md). Where α's
denominator is 0 (g = 0, so α would multiply ReLU(g) = 0 anyway) we set α = 0.

**CNNs only.** α = 1 / (2 + g Σ_ab A_ab) is bounded (0 < α ≤ 1/2) wherever it counts (g > 0)
only if the channel sum Σ_ab A_ab ≥ 0, i.e. for post-ReLU activations, which the derivation
assumes. At a ViT's LayerNorm output half the channel sums are negative, the denominator
passes through zero at g = 2/|Σ A| and α is unbounded and of either sign (README.md, "Where it
applies"), so both methods are registered for ``kinds=("cnn",)`` and a ViT is refused.

``gradcampp_authors``: what the authors' released code computes (adityac94/Grad_CAM_plus_plus,
misc/utils.py:107-137), which renormalises α per channel over the positions of positive
gradient before the weighted sum — not the paper's Eq. (20). See
:func:`gradcampp_authors_weights`.
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


def gradcampp_authors_weights(A: torch.Tensor, G: torch.Tensor, exp_S: torch.Tensor | None = None) -> torch.Tensor:
    """Channel weights (B, C) as the authors' code computes them, line by line
    (adityac94/Grad_CAM_plus_plus @ 4a9faf6, misc/utils.py; channels-last there, (B, C, h, w) here).

    ``G`` = ∂S^c/∂A (``target_conv_layer_grad``, utils.py:74, S^c = fc8[c], the pre-softmax
    score); ``exp_S`` (B,) the factor exp(S^c) the code multiplies every derivative by; None
    drops it (one positive number per image: the weights scale with it, see README.md).
    """
    e = torch.ones_like(G[:, :1, :1, :1]) if exp_S is None else exp_S.to(G.dtype).reshape(-1, 1, 1, 1)
    first_derivative = e * G  # utils.py:77   exp(cost)[c] * grad
    second_derivative = e * G * G  # utils.py:80
    triple_derivative = e * G * G * G  # utils.py:83
    global_sum = A.sum(dim=(2, 3), keepdim=True)  # utils.py:107   Σ_ab A^k_ab
    alpha_num = second_derivative  # utils.py:109
    alpha_denom = second_derivative * 2.0 + triple_derivative * global_sum  # utils.py:110
    alpha_denom = torch.where(alpha_denom != 0.0, alpha_denom, torch.ones_like(alpha_denom))  # utils.py:111
    alphas = alpha_num / alpha_denom  # utils.py:112
    weights = first_derivative.clamp_min(0.0)  # utils.py:114   np.maximum(first, 0)
    alphas_thresholding = torch.where(weights != 0, alphas, torch.zeros_like(alphas))  # utils.py:122
    alpha_normalization_constant = alphas_thresholding.sum(dim=(2, 3), keepdim=True)  # utils.py:124
    alpha_normalization_constant_processed = torch.where(  # utils.py:125
        alpha_normalization_constant != 0.0, alpha_normalization_constant, torch.ones_like(alpha_normalization_constant)
    )
    alphas = alphas / alpha_normalization_constant_processed  # utils.py:128
    return (weights * alphas).sum(dim=(2, 3))  # utils.py:132   deep_linearization_weights


@register_method("gradcampp", kinds=("cnn",), tasks=("classifier",))
class GradCAMPlusPlus(CAMExplainer):
    """Grad-CAM++ with the closed-form α of Eq. (19) and weights of Eq. (20) without exp(S^c)."""

    relu = True

    def weights(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None  # needs_gradients is True: the base class always passes G
        alpha = gradcampp_alpha(A, G)
        return (alpha * G.clamp_min(0)).sum(dim=(2, 3))  # Eq. (20) up to exp(S^c) > 0


@register_method("gradcampp_authors", kinds=("cnn",), tasks=("classifier",), leaderboard=False)
class GradCAMPlusPlusAuthors(CAMExplainer):
    """Grad-CAM++ as the authors' code computes it: α renormalised per channel over the positions
    of positive gradient, w_k = Σ_ij α_ij ReLU(g_ij) / Σ_{ij: g_ij > 0} α_ij (utils.py:107-132),
    map ReLU(Σ_k w_k A_k) (utils.py:134-137), without exp(S^c) and the division by the map's
    maximum (utils.py:138), both one positive factor per image."""

    relu = True  # utils.py:137

    def weights(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None
        return gradcampp_authors_weights(A, G)
