"""HiResCAM (Draelos & Carin, 2020; arXiv 2011.08891).

Notation: A^k the k-th feature map of the explained layer, y^c the class score (any
differentiable target here: a logit or a similarity).

    L_HiResCAM = ReLU(Σ_k (∂y^c / ∂A^k) ⊙ A^k)           (the paper's Eq. for HiResCAM)

The gradient multiplies the activations element-wise instead of being averaged over positions
first (Grad-CAM: ReLU(Σ_k mean_ij(∂y^c/∂A^k_ij) A^k)). The paper's point (its Sec. 3): when
the explained layer is followed only by global average pooling and a linear layer,
∂y^c/∂A^k_ij = W_ck / (hw) is constant over positions and the two maps are equal; anywhere
else Grad-CAM's averaging can mark positions the model did not use, HiResCAM's product cannot
(Σ_ij of the map before the ReLU is the first-order contribution of the layer to y^c).
"""

from __future__ import annotations

import torch

from shared.explain import CAMExplainer, register_method


@register_method("hirescam")
class HiResCAM(CAMExplainer):
    """HiResCAM: ReLU of the channel sum of gradient ⊙ activation."""

    relu = True

    def cam(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None  # needs_gradients is True: the base class always passes G
        return (G * A).sum(dim=1)
