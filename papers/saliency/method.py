"""Image-specific class saliency (Simonyan, Vedaldi, Zisserman, ICLR-W 2014; arXiv 1312.6034).

Sec. 3.1: the class score S_c is approximated around the image I_0 by its first-order Taylor
expansion S_c(I) ≈ w^T I + b, with

    w = ∂S_c / ∂I |_{I_0}                                   (Eq. 3)

and for a colour image the saliency map is "the maximum magnitude of w across all colour
channels": M_ij = max_c |w_h(i,j,c)|. Computed with one backward pass for the whole batch.

The gradient is taken with respect to the [0, 1] image the explainer contract takes (the
adapter normalises inside the model): w = std_c · ∂S/∂x̃ for the normalised input x̃ (README).

:func:`gradients_at` is the batched engine the path methods share (Integrated Gradients,
SmoothGrad): the gradient at n points per image (B · n rows), in chunks of ``max_batch`` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from shared.explain import Explainer, Target, check_images, frozen, register_method
from shared.explain.gradients import input_gradients, reduce_channels
from shared.models.adapter import ModelAdapter


@register_method("saliency", label="Saliency (gradient)")
class Saliency(Explainer):
    """M = max_c |∂S_c/∂x_c| (Sec. 3.1): the gradient's largest magnitude over colour channels."""

    def __init__(self, adapter: ModelAdapter) -> None:
        super().__init__(adapter)

    def attributions(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        """(B, 3, H, W): w = ∂S_c/∂x, x the [0, 1] images (Eq. 3)."""
        return input_gradients(self.adapter, images, target)

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        if target is None:
            raise ValueError("saliency needs a target (ClassTarget or SimilarityTarget)")
        return reduce_channels(self.attributions(images, target), "abs_max")


def gradients_at(
    adapter: ModelAdapter,
    images: torch.Tensor,
    target: Target,
    points: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    n: int,
    max_batch: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Gradients of the target at ``n`` points per image, ``max_batch`` rows a pass.

    Rows are ordered point-major: row r is point k = r // B of image b = r % B.
    ``points(k, b) -> (rows, 3, H, W)`` builds the inputs of those rows; each row is scored
    against its own image's target (``target(output, index=b)``). Yields ``(k, b, grad)`` per
    chunk, ``grad`` = ∂ target / ∂ input at those points. Scores of different rows are
    independent (eval mode), so one backward pass of their sum gives every row's gradient.
    """
    check_images(images, adapter)
    if target is None:
        raise ValueError("a gradient method needs a target (ClassTarget or SimilarityTarget)")
    if n < 1:
        raise ValueError(f"need at least one point per image, got n={n}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    B = images.shape[0]
    rows = torch.arange(B * n, device=images.device)
    with frozen(adapter), torch.enable_grad():
        for chunk in rows.split(max_batch):
            k, b = chunk // B, chunk % B
            x = points(k, b).detach().requires_grad_(True)
            scores = target(adapter(x), index=b)
            (grad,) = torch.autograd.grad(scores.sum(), x)
            yield k, b, grad


__all__ = ["Saliency", "gradients_at"]
