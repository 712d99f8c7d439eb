"""Input gradients and the ReLU backward rules the gradient methods share.

``input_gradients(adapter, images, target)`` is ∂ score / ∂ x for the [0, 1] images x the
explainer contract takes (the adapter normalises inside the model, so this is the gradient a
user of the model sees; the gradient with respect to the normalised input is it times the
per-channel std). :func:`reduce_channels` turns a (B, 3, H, W) attribution into the contract's
(B, H, W) map. :func:`relu_backward` swaps every ReLU's backward pass for guided
back-propagation's or the deconvnet's rule for the duration of a block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Literal

import torch
from torch import nn

from shared.explain.base import check_images, frozen
from shared.explain.targets import Target
from shared.models.adapter import ModelAdapter

Reduction = Literal["abs_max", "sum", "abs_sum", "l2"]
REDUCTIONS: tuple[str, ...] = ("abs_max", "sum", "abs_sum", "l2")

ReluRule = Literal["guided", "deconvnet"]

# Activations for which a ReLU backward rule has no meaning (it is a rule for ReLU's gate).
NON_RELU_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.PReLU, nn.Hardswish, nn.Mish, nn.Tanh, nn.Sigmoid,
)


def input_gradients(adapter: ModelAdapter, images: torch.Tensor, target: Target, rule: ReluRule | None = None) -> torch.Tensor:
    """(B, 3, H, W): ∂ target / ∂ images, the images in [0, 1]; ``rule`` a ReLU backward rule.

    Parameters are frozen (no parameter gradient is computed). Scores of different images are
    independent in eval mode, so the gradient of their sum is each image's own gradient: one
    backward pass for the batch.
    """
    check_images(images, adapter)
    if target is None:
        raise ValueError("a gradient method needs a target (ClassTarget or SimilarityTarget)")
    x = images.detach().clone().requires_grad_(True)
    with ExitStack() as stack:
        stack.enter_context(frozen(adapter))
        if rule is not None:
            stack.enter_context(relu_backward(adapter.model, rule, adapter.name))
        with torch.enable_grad():
            scores = target(adapter(x))
            (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad


def reduce_channels(attribution: torch.Tensor, how: Reduction) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W).

    ``abs_max``: max_c |a_c| (Simonyan et al. 2014, Sec. 3.1: "the maximum magnitude of w across
    all colour channels"); ``sum``: Σ_c a_c, signed (captum's and zennit's usual heat-map, and
    LRP's conservation: the map sums to the relevance); ``abs_sum``: Σ_c |a_c|; ``l2``: ‖a‖₂ over
    channels.
    """
    if attribution.dim() != 4:
        raise ValueError(f"an attribution is (B, C, H, W), got shape {tuple(attribution.shape)}")
    if how == "abs_max":
        return attribution.abs().amax(dim=1)
    if how == "sum":
        return attribution.sum(dim=1)
    if how == "abs_sum":
        return attribution.abs().sum(dim=1)
    if how == "l2":
        return attribution.pow(2).sum(dim=1).sqrt()
    raise ValueError(f"unknown channel reduction {how!r}; one of {', '.join(REDUCTIONS)}")


class _Guided(torch.autograd.Function):
    """Identity forward on a ReLU's output; backward keeps the positive part of the gradient.

    The ReLU's own backward then multiplies by 1[input > 0]: the gradient reaching the ReLU's
    input is 1[x > 0] · max(g, 0), guided back-propagation (Springenberg et al. 2015, Eq. 4)."""

    @staticmethod
    def forward(ctx, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad.clamp_min(0)


class _Deconv(torch.autograd.Function):
    """Forward returns the ReLU's output; backward sends max(g, 0) straight to the ReLU's
    input, skipping its gate 1[x > 0]: the deconvnet's rectification of the signal coming down
    (Zeiler & Fergus 2014, Sec. 2.1; Springenberg et al. 2015, Fig. 1)."""

    @staticmethod
    def forward(ctx, inp: torch.Tensor, out: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return out.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # noqa: D102
        return grad.clamp_min(0), None


def relu_modules(model: nn.Module, model_name: str = "model", what: str = "this backward rule") -> list[nn.ReLU]:
    """The model's ``nn.ReLU`` modules; a clear error where a ReLU rule is not defined."""
    others = sorted({type(m).__name__ for m in model.modules() if isinstance(m, NON_RELU_ACTIVATIONS)})
    if others:
        raise ValueError(
            f"{what} is defined for ReLU networks only, but {model_name!r} uses {', '.join(others)}; "
            f"use a plain gradient method (e.g. 'saliency' or 'gradcam') on this model"
        )
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError(
            f"{model_name!r} has no nn.ReLU modules: {what} needs its ReLUs as modules "
            f"(functional F.relu calls cannot be hooked)"
        )
    return relus


@contextmanager
def relu_backward(model: nn.Module, rule: ReluRule, model_name: str = "model") -> Iterator[int]:
    """Every ``nn.ReLU`` of ``model`` back-propagates by ``rule`` for the block only (forward
    unchanged); hooks removed and ``inplace`` flags restored on exit, also on error. Yields the
    number of ReLUs changed."""
    if rule not in ("guided", "deconvnet"):
        raise ValueError(f"unknown ReLU backward rule {rule!r}; 'guided' or 'deconvnet'")
    relus = relu_modules(model, model_name, "guided back-propagation" if rule == "guided" else "the deconvnet")
    inplace = [r.inplace for r in relus]
    if rule == "guided":
        hook = lambda mod, inp, out: _Guided.apply(out)  # noqa: E731
    else:
        # the deconvnet routes the gradient to the ReLU's input: it must not be overwritten in place
        for r in relus:
            r.inplace = False
        hook = lambda mod, inp, out: _Deconv.apply(inp[0], out)  # noqa: E731
    handles = [r.register_forward_hook(hook) for r in relus]
    try:
        yield len(relus)
    finally:
        for h in handles:
            h.remove()
        for r, flag in zip(relus, inplace):
            r.inplace = flag
