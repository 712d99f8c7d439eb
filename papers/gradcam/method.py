"""Grad-CAM and Guided Grad-CAM (Selvaraju et al., ICCV 2017).

Notation of the paper: A^k is feature map k of the explained convolutional layer, y^c the score
of class c before the softmax (any differentiable target here: a logit or a similarity).

    α_k^c = 1/Z Σ_i Σ_j ∂y^c / ∂A^k_ij                 (Eq. 1, Z = number of positions)
    L^c_Grad-CAM = ReLU(Σ_k α_k^c A^k)                  (Eq. 2)
    Guided Grad-CAM = guided back-propagation ⊙ upsample(L^c_Grad-CAM)   (Sec. 3.2)

The authors' Lua code sums the gradients over positions instead of averaging them; that only
rescales every map by Z and changes no ranking, normalised map or metric used here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from shared.explain import CAMExplainer, Explainer, Target, check_images, frozen, register_method
from shared.models.adapter import ModelAdapter

# Activation modules that make guided back-propagation undefined in its original sense (it
# is a rule for the ReLU's backward pass only).
NON_RELU_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.GELU,
    nn.SiLU,
    nn.ELU,
    nn.LeakyReLU,
    nn.PReLU,
    nn.Hardswish,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
)


@register_method("gradcam", blocks=True)
class GradCAM(CAMExplainer):
    """Grad-CAM: channel weights are the spatially averaged gradients (Eqs. 1–2)."""

    relu = True  # Eq. (2)

    def weights(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None  # needs_gradients is True: the base class always passes G
        return G.mean(dim=(2, 3))  # Eq. (1): α_k = 1/Z Σ_ij ∂y/∂A^k_ij


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward passes only the positive part of the incoming gradient.

    Placed on a ReLU's *output*, the ReLU's own backward then multiplies by 1[input > 0], so
    the gradient reaching the ReLU's input is 1[x > 0] · max(g, 0): the guided rule
    (Springenberg et al. 2015), with no change to the forward pass.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad.clamp_min(0)


def check_guided_backprop_applies(model: nn.Module, model_name: str = "model") -> list[nn.ReLU]:
    """The model's ReLU modules; a clear error where guided back-propagation is not defined."""
    others = sorted({type(m).__name__ for m in model.modules() if isinstance(m, NON_RELU_ACTIVATIONS)})
    if others:
        raise ValueError(
            f"guided back-propagation is defined for ReLU networks only, but {model_name!r} uses "
            f"{', '.join(others)}; use plain Grad-CAM (method 'gradcam') on this model"
        )
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(
            f"{model_name!r} has no nn.ReLU modules: guided back-propagation needs its ReLUs as "
            f"modules (functional F.relu calls cannot be hooked); use 'gradcam' instead"
        )
    return relus


@contextmanager
def guided_relus(model: nn.Module, model_name: str = "model") -> Iterator[int]:
    """Make every ``nn.ReLU`` of ``model`` back-propagate the guided way, for the block only.

    Forward hooks wrap each ReLU output in :class:`_PositiveGradient`; this works for in-place
    ReLUs too (the hook sees the final output tensor). The hooks are removed on exit, also on
    error. Yields the number of ReLUs made guided.
    """
    relus = check_guided_backprop_applies(model, model_name)
    handles = [r.register_forward_hook(lambda mod, inp, out: _PositiveGradient.apply(out)) for r in relus]
    try:
        yield len(relus)
    finally:
        for h in handles:
            h.remove()


def guided_backprop(adapter: ModelAdapter, images: torch.Tensor, target: Target) -> torch.Tensor:
    """Guided back-propagation: (B, 3, H, W) gradient of the target w.r.t. the [0, 1] images.

    Parameters are frozen (no parameter gradient is computed); scores of different images are
    independent in eval mode, so the gradient of their sum is each image's own gradient.
    """
    check_images(images, adapter)
    x = images.detach().clone().requires_grad_(True)
    with frozen(adapter), guided_relus(adapter.model, adapter.name), torch.enable_grad():
        scores = target(adapter(x))
        (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad


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
