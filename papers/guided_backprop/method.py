"""Guided back-propagation (Springenberg, Dosovitskiy, Brox, Riedmiller, ICLR-W 2015, "Striving
for Simplicity: The All Convolutional Net"; arXiv 1412.6806).

The gradient of the score with respect to the image, except that at every ReLU f = max(x, 0)
the backward signal R coming down is gated by the forward input *and* by its own sign
(Fig. 1):

    R_in = 1[x > 0] · max(R_out, 0)

(the plain gradient keeps only 1[x > 0]; the deconvnet only max(R_out, 0)). Implemented by
:func:`shared.explain.gradients.relu_backward` (rule ``guided``): a forward hook on each
``nn.ReLU`` puts an identity whose backward clamps the gradient at 0 on the ReLU's output, the
ReLU's own backward then applies 1[x > 0]; the forward pass is unchanged.

Map: max_c |R_c| over the colour channels (Simonyan et al.'s reduction; the paper shows the
(B, 3, H, W) signal as an image: :meth:`GuidedBackprop.attributions`). Defined for ReLU CNNs
only: a ViT's GELU (or any non-ReLU activation) has no guided rule, and is refused.

Grad-CAM's Guided Grad-CAM (papers/gradcam/method.py) imports :func:`guided_backprop` from here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from shared.explain import Explainer, Target, register_method
from shared.explain.gradients import input_gradients, reduce_channels, relu_backward, relu_modules
from shared.models.adapter import ModelAdapter


def check_guided_backprop_applies(model: nn.Module, model_name: str = "model") -> list[nn.ReLU]:
    """The model's ReLU modules; a clear error where guided back-propagation is not defined."""
    return relu_modules(model, model_name, "guided back-propagation")


@contextmanager
def guided_relus(model: nn.Module, model_name: str = "model") -> Iterator[int]:
    """Every ``nn.ReLU`` of ``model`` back-propagates the guided way for the block only (hooks
    removed on exit, also on error). Yields the number of ReLUs made guided."""
    with relu_backward(model, "guided", model_name) as n:
        yield n


def guided_backprop(adapter: ModelAdapter, images: torch.Tensor, target: Target) -> torch.Tensor:
    """(B, 3, H, W): guided back-propagation of the target to the [0, 1] images (one backward pass)."""
    return input_gradients(adapter, images, target, rule="guided")


def _refuse_vit(adapter: ModelAdapter, what: str) -> None:
    if adapter.kind == "vit":
        raise ValueError(
            f"{what} is not defined for vision transformers: guided back-propagation is a rule for "
            f"ReLU backward passes and a ViT uses GELU; use 'saliency' or 'gradcam' on the ViT"
        )


@register_method("guided_backprop", kinds=["cnn"], label="Guided backprop")
class GuidedBackprop(Explainer):
    """Guided back-propagation, map max_c |R_c| (ReLU CNNs only)."""

    def __init__(self, adapter: ModelAdapter) -> None:
        _refuse_vit(adapter, "guided back-propagation")
        super().__init__(adapter)
        check_guided_backprop_applies(adapter.model, adapter.name)

    def attributions(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        """(B, 3, H, W): the guided signal R at the image."""
        return guided_backprop(self.adapter, images, target)

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        if target is None:
            raise ValueError("guided back-propagation needs a target (ClassTarget or SimilarityTarget)")
        return reduce_channels(self.attributions(images, target), "abs_max")


__all__ = ["GuidedBackprop", "check_guided_backprop_applies", "guided_backprop", "guided_relus"]
