"""NormGrad (Rebuffi, Fong, Ji, Vedaldi, "There and Back Again", CVPR 2020; arXiv 2004.02866).

Extract & aggregate (Sec. 3). For a convolutional layer with weights w, the gradient of the
score w.r.t. w is a sum over output positions u of outer products, ∂S/∂w = Σ_u g_u x_uᵀ, with
x_u the layer's input at u (a 1×1 conv) or the unfolded k×k input patch (a k×k conv) and g_u
the gradient of the score at output position u. NormGrad takes the Frobenius norm of each
spatial contribution:

    NormGrad(u) = ‖g_u x_uᵀ‖_F = ‖g_u‖₂ · ‖x_u‖₂

Virtual identity trick (Sec. 3.2): insert an identity 1×1 conv after the explained layer; its
input is the layer's output A and its output gradient is G = ∂S/∂A, so NormGrad(u) =
‖A_u‖·‖G_u‖ with norms over channels — computable at any layer, with no change to the
network. ``kernel_size=3``: the virtual identity is a 3×3 conv (centre tap 1), whose input
at u is the zero-padded 3×3 patch of A around u: NormGrad₃ₓ₃(u) = ‖unfold₃(A)_u‖·‖G_u‖.

On a ViT the same formula is applied to the patch tokens of the explained block (each token
is a position; norms over the embedding channels): the virtual identity is a linear layer on
tokens, so the derivation carries over unchanged.

Combining layers (Sec. 4): maps of several layers, each upsampled to the input, min–max
normalised per image and combined with layer weights — a weighted sum or a weighted geometric
product ∏_l M_l^{w_l / Σw} (the two accumulations of the authors' TorchRay code).

Meta step (Sec. 5): :mod:`papers.normgrad.meta`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from papers.gradcam.method import GradCAM
from papers.normgrad.meta import DEFAULT_META_LR, meta_layer_signals
from shared.explain import CAMExplainer, Explainer, Target, layer_signals, normalize_maps, register_method, upsample
from shared.models.adapter import ModelAdapter


def normgrad_map(A: torch.Tensor, G: torch.Tensor, kernel_size: int = 1) -> torch.Tensor:
    """‖x_u‖·‖g_u‖ for activations and gradients (B, C, h, w) → (B, h, w).

    ``kernel_size`` k > 1: x_u is the zero-padded k×k patch of A centred on u (odd k only, so
    that the virtual identity conv keeps the grid).
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd positive integer (1 or 3), got {kernel_size}")
    grad_norm = G.norm(dim=1)  # ‖g_u‖ over channels
    if kernel_size == 1:
        act_norm = A.norm(dim=1)
    else:
        b, c, h, w = A.shape
        patches = F.unfold(A, kernel_size, padding=kernel_size // 2)  # (B, C·k², hw)
        act_norm = patches.norm(dim=1).view(b, h, w)
    return act_norm * grad_norm


def default_layers(adapter: ModelAdapter) -> list[str]:
    """The layers NormGrad combines by default: the CNN's stages, or each ViT block's input.

    A ViT block's *output* patch tokens at the last block never reach a class-token head
    (their gradient is 0), so on a ViT we take each block's first norm (its normalised input),
    as the adapter's own target layer does.
    """
    if adapter.kind == "vit":
        return [f"{name}.norm1" for name in adapter.layers]
    return list(adapter.layers)


class MetaStepMixin:
    """Adds the meta-saliency step (Sec. 5) to a :class:`CAMExplainer` subclass."""

    meta: bool = False
    lr: float = DEFAULT_META_LR

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        if not self.meta:
            return super().explain(images, target)  # type: ignore[misc]
        A, G = meta_layer_signals(self.adapter, images, target, [self.layer], lr=self.lr)  # type: ignore[attr-defined]
        return self.map_from_signals(A[0], G[0], tuple(images.shape[-2:]))

    def map_from_signals(self, A: torch.Tensor, G: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The method's map (B, H, W) from the layer's activations and gradients (B, C, h, w),
        e.g. those of :func:`papers.normgrad.meta.meta_layer_signals_sweep` at one lr."""
        cam = self.cam(A, G)  # type: ignore[attr-defined]
        if self.relu:  # type: ignore[attr-defined]
            cam = cam.clamp_min(0)
        return upsample(cam, size)


@register_method("normgrad", blocks=True)
@register_method("normgrad_3x3", leaderboard=False, kernel_size=3)
@register_method("normgrad_meta", meta=True)
class NormGrad(MetaStepMixin, CAMExplainer):
    """NormGrad at one layer (default: the adapter's target layer; ``block=k``: the output of the
    k-th block, registered as ``normgrad_b<k>``: the layer study of Sec. 4)."""

    relu = False  # a product of norms is already ≥ 0

    def __init__(
        self,
        adapter: ModelAdapter,
        layer: str | None = None,
        kernel_size: int = 1,
        meta: bool = False,
        lr: float = DEFAULT_META_LR,
        block: int | None = None,
    ) -> None:
        super().__init__(adapter, layer, block)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive integer (1 or 3), got {kernel_size}")
        self.kernel_size = int(kernel_size)
        self.meta = bool(meta)
        self.lr = float(lr)

    def cam(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None  # needs_gradients is True: the base class always passes G
        return normgrad_map(A, G, self.kernel_size)


@register_method("gradcam_meta", leaderboard=False, meta=True)
class MetaGradCAM(MetaStepMixin, GradCAM):
    """Grad-CAM after the meta step (the paper applies the step to every method, Table 3). Plain
    Grad-CAM at the k-th block (the layer study, Sec. 4) is ``gradcam_b<k>``."""

    def __init__(
        self,
        adapter: ModelAdapter,
        layer: str | None = None,
        meta: bool = True,
        lr: float = DEFAULT_META_LR,
    ) -> None:
        super().__init__(adapter, layer)
        self.meta = bool(meta)
        self.lr = float(lr)


@register_method("normgrad_combined")
@register_method("normgrad_combined_product", leaderboard=False, accumulation="product")
class NormGradCombined(Explainer):
    """NormGrad maps of several layers, combined (Sec. 4).

    ``layers`` default to the adapter's ``layers`` (CNN stages / ViT blocks); ``layer_weights``
    default to uniform. Each layer's map is upsampled to the input, min–max normalised per
    image, and accumulated as Σ_l w̄_l M_l (``sum``) or ∏_l M_l^{w̄_l} (``product``), with
    w̄ = w / Σw. One forward and one backward pass serve all layers.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        layers: Sequence[str] | None = None,
        layer_weights: Sequence[float] | None = None,
        accumulation: str = "sum",
        kernel_size: int = 1,
        meta: bool = False,
        lr: float = DEFAULT_META_LR,
    ) -> None:
        self.layers = list(layers) if layers is not None else default_layers(adapter)
        if not self.layers:
            raise ValueError(f"model {adapter.name!r} lists no layers; pass layers=[...] to combine")
        super().__init__(adapter, self.layers[-1])
        for name in self.layers:
            adapter.module(name)  # a wrong name fails here with the nearest names
        weights = [1.0] * len(self.layers) if layer_weights is None else [float(w) for w in layer_weights]
        if len(weights) != len(self.layers) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(
                f"layer_weights must be {len(self.layers)} non-negative numbers with a positive sum, got {layer_weights}"
            )
        if accumulation not in ("sum", "product"):
            raise ValueError(f"accumulation must be 'sum' or 'product', got {accumulation!r}")
        total = sum(weights)
        self.layer_weights = [w / total for w in weights]
        self.accumulation = accumulation
        self.kernel_size = int(kernel_size)
        self.meta = bool(meta)
        self.lr = float(lr)

    def layer_maps(self, images: torch.Tensor, target: Target | None) -> list[torch.Tensor]:
        """Each layer's NormGrad map at input resolution, un-normalised: a list of (B, H, W)."""
        size = tuple(images.shape[-2:])
        if self.meta:
            A, G = meta_layer_signals(self.adapter, images, target, self.layers, lr=self.lr)
        else:
            signals = layer_signals(self.adapter, images, target, self.layers, gradients=True)
            A = [self.adapter.to_grid(a).float() for a in signals.activations]
            G = [self.adapter.to_grid(g).float() for g in signals.gradients or []]
        return [upsample(normgrad_map(a, g, self.kernel_size), size) for a, g in zip(A, G)]

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        maps = [normalize_maps(m) for m in self.layer_maps(images, target)]
        if self.accumulation == "sum":
            return sum(w * m for w, m in zip(self.layer_weights, maps))
        combined = torch.ones_like(maps[0])
        for w, m in zip(self.layer_weights, maps):
            combined = combined * m.pow(w)
        return combined
