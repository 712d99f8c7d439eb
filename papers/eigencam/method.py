"""Eigen-CAM (Muhammad & Yeasin, IJCNN 2020; arXiv 2008.00299).

The activations of the explained layer, A (C channels on an h×w grid), are laid out as a
matrix O of shape (hw, C) — one row per position. With its singular value decomposition
O = U Σ Vᵀ (paper, Sec. III), the class activation map is the projection of O on the first
right-singular vector,

    L_Eigen-CAM = O v₁        (one value per position, reshaped to h×w)

Class-agnostic, no gradients. The paper's text factorises O as it is: no mean is subtracted
(``center=False``, the default). pytorch-grad-cam subtracts each channel's spatial mean first
(a PCA in the strict sense); ``center=True`` (method ``eigencam_centered``) does that.

Computation. O v₁ = σ₁ u₁, so we never need the full SVD: the top eigenpair of the smaller
Gram matrix gives it — O Oᵀ (hw × hw: u₁, λ₁ = σ₁², projection √λ₁ u₁) when hw ≤ C, else
Oᵀ O (C × C: v₁, projection O v₁). Batched ``torch.linalg.eigh`` on a (B, n, n) matrix with
n = min(hw, C); ``reports/bench.json`` compares it with ``torch.linalg.svd`` on (B, hw, C).

Sign. Singular vectors are defined up to sign. We fix it so that the map correlates
positively with the mean activation map Σ_k A_k (i.e. Σ_ij L_ij · Σ_k A^k_ij ≥ 0): for
non-negative (post-ReLU) activations this is the Perron–Frobenius choice, a non-negative map.
"""

from __future__ import annotations

import torch

from shared.explain import CAMExplainer, register_method


def first_principal_projection(O: torch.Tensor) -> torch.Tensor:
    """O v₁ for a batch of matrices O (B, n, C), up to sign: (B, n).

    The Gram matrix is formed and decomposed in float64 so that a small spectral gap does not
    cost precision; it is tiny (n ≤ min(hw, C)), so this is cheap.
    """
    O64 = O.double()
    n, c = O.shape[-2:]
    if n <= c:
        gram = O64 @ O64.transpose(1, 2)  # (B, n, n) = U Σ² Uᵀ
        evals, evecs = torch.linalg.eigh(gram)  # ascending eigenvalues
        u1 = evecs[..., -1]  # (B, n)
        sigma1 = evals[..., -1].clamp_min(0).sqrt()
        projection = sigma1[:, None] * u1  # O v₁ = σ₁ u₁
    else:
        gram = O64.transpose(1, 2) @ O64  # (B, C, C) = V Σ² Vᵀ
        evecs = torch.linalg.eigh(gram)[1]
        v1 = evecs[..., -1]  # (B, C)
        projection = (O64 @ v1[..., None])[..., 0]
    return projection.to(O.dtype)


@register_method("eigencam")
@register_method("eigencam_centered", leaderboard=False, center=True)
class EigenCAM(CAMExplainer):
    """Eigen-CAM: projection of the layer's activations on their first principal direction."""

    relu = False  # the paper's map is the projection itself; the sign rule makes it ≥ 0 for ReLU maps
    needs_gradients = False

    def __init__(self, adapter, layer: str | None = None, center: bool = False) -> None:
        super().__init__(adapter, layer)
        self.center = bool(center)

    def cam(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        b, c, h, w = A.shape
        O = A.flatten(2).transpose(1, 2)  # (B, hw, C): one row per position
        if self.center:
            O = O - O.mean(dim=1, keepdim=True)
        projection = first_principal_projection(O)  # (B, hw) = O v₁ up to sign
        mean_map = A.sum(dim=1).flatten(1)  # Σ_k A_k, (B, hw)
        sign = torch.where((projection * mean_map).sum(dim=1) < 0, -1.0, 1.0).to(projection.dtype)
        return (sign[:, None] * projection).view(b, h, w)
