"""LayerCAM (Jiang, Zhang, Hou, Cheng, Wei; IEEE TIP 30, 2021).

Notation of the paper (Sec. III): A^k the k-th feature map of a layer, y^c the class score
(any differentiable target here: a logit or a similarity), g^kc_ij = ∂y^c / ∂A^k_ij.

    w^kc_ij = ReLU(g^kc_ij)                                   (Eq. 6: a weight per position)
    Â^k_ij  = w^kc_ij · A^k_ij                                (Eq. 7)
    M^c     = ReLU(Σ_k Â^k)                                   (Eq. 8)

Grad-CAM averages the gradient of a channel over positions; LayerCAM keeps each position's own
positive gradient, which is what makes its maps usable at shallow layers (the paper's point).
``layercam`` is the map at one layer (``layercam_b<k>``: at the output of block k).

``layercam_fusion``: the paper's combination of layers (Sec. III-C). The maps of shallow layers
have small values next to those of deep ones, so each is first scaled as

    M̂ = tanh(γ · M / max M),  γ = 2                          (Eq. 9)

(per image; an all-zero map stays 0), then all are resized to the input and fused by the
element-wise maximum. Which layers, and whether the deepest is scaled too, is our reading
(README.md): by default every block output of the model (``shared.explain.layers``), the
deepest unscaled but divided by its maximum (in [0, 1], as M̂ is), ``scale_deepest=True`` scales
it too (as torchcam's ``LayerCAM.fuse_cams`` does for every layer).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from shared.explain import CAMExplainer, Explainer, Target, layer_signals, register_method
from shared.explain.layers import block_layers
from shared.explain.upsample import upsample
from shared.models.adapter import ModelAdapter


def layercam_map(A: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Σ_k ReLU(G_k) ⊙ A_k for (B, C, h, w) activations and gradients: (B, h, w), before the ReLU of Eq. 8."""
    return (G.clamp_min(0) * A).sum(dim=1)


def tanh_scale(maps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Eq. 9 per image: tanh(γ · M / max M) for (B, H, W) non-negative maps; all-zero maps stay 0."""
    peak = maps.flatten(1).amax(dim=1).reshape(-1, 1, 1)
    safe = torch.where(peak > 0, peak, torch.ones_like(peak))
    return torch.where(peak > 0, torch.tanh(gamma * maps / safe), torch.zeros_like(maps))


@register_method("layercam", blocks=True)
class LayerCAM(CAMExplainer):
    """LayerCAM at one layer: ReLU(Σ_k ReLU(∂y/∂A^k) ⊙ A^k) (Eqs. 6-8)."""

    relu = True  # Eq. (8)

    def cam(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None  # needs_gradients is True: the base class always passes G
        return layercam_map(A, G)


@register_method("layercam_fusion", leaderboard=False)
class LayerCAMFusion(Explainer):
    """LayerCAM maps of several layers, tanh-scaled (Eq. 9) and fused by the element-wise maximum."""

    def __init__(
        self,
        adapter: ModelAdapter,
        layers: Sequence[str] | None = None,
        gamma: float = 2.0,
        scale_deepest: bool = False,
    ) -> None:
        """``layers``: module names, shallow to deep (default: every block output of the model);
        ``gamma``: Eq. 9's γ; ``scale_deepest``: apply Eq. 9 to the deepest layer too."""
        super().__init__(adapter)
        self.layers = list(layers) if layers is not None else block_layers(adapter)
        if len(self.layers) < 1:
            raise ValueError("layercam_fusion needs at least one layer")
        for name in self.layers:
            adapter.module(name)  # a wrong name fails here, listing the nearest names
        if not gamma > 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)
        self.scale_deepest = bool(scale_deepest)

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        # one forward and one backward for every layer at once
        signals = layer_signals(self.adapter, images, target, self.layers, gradients=True)
        assert signals.gradients is not None
        size = tuple(images.shape[-2:])
        fused = None
        for i, (a, g) in enumerate(zip(signals.activations, signals.gradients)):
            A = self.adapter.to_grid(a).float()
            G = self.adapter.to_grid(g).float()
            m = upsample(layercam_map(A, G).clamp_min(0), size)
            deepest = i == len(self.layers) - 1
            if deepest and not self.scale_deepest:
                peak = m.flatten(1).amax(dim=1).reshape(-1, 1, 1)
                m = torch.where(peak > 0, m / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(m))
            else:
                m = tanh_scale(m, self.gamma)
            fused = m if fused is None else torch.maximum(fused, m)
        assert fused is not None
        return fused
