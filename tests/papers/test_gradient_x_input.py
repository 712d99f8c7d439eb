"""Gradient × input (Shrikumar et al. 2016) against an independent computation and captum.

Conventions (README): ours is (x − x_ref) ⊙ ∂y/∂x with x the [0, 1] image; reference ``mean``
(default: the normalised input's zero, x̃ ⊙ ∂y/∂x̃ exactly) or ``black`` (x ⊙ ∂y/∂x).

1. Closed form: for a linear classifier y = W x̃ + b the mean-reference map sums to
   W x̃ = y(x) − b = y(x) − y(μ) (gradient × input is exact for a linear model).
2. captum 0.9 ``InputXGradient`` on the same callable (x ↦ target(adapter(x))), summed over
   channels: with x for ``black``, with x − μ fed to z ↦ target(adapter(z + μ)) for ``mean``;
   and captum on the bare model with the normalised input x̃ (the usual captum practice) equals
   the ``mean`` reference. Every model role.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import InputXGradient
from torch import nn

import shared.models  # noqa: F401
from papers.gradient_x_input.method import GradientXInput
from shared.explain import ClassTarget, build_explainer
from shared.explain.pair import PairTarget
from shared.models import build_adapter
from shared.models.adapter import ModelAdapter
from tiny_zoo import SIZE, ZOO, role




def test_mean_reference_is_exact_on_a_linear_classifier():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 3))
    adapter = ModelAdapter(model, "cnn", "classifier", "1", mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.5)).explain_mode()
    x = torch.rand(2, 3, 4, 5)
    labels = torch.tensor([2, 0])
    maps = GradientXInput(adapter)(x, ClassTarget(labels))
    with torch.no_grad():
        y = adapter(x).gather(1, labels[:, None])[:, 0]
        y_ref = adapter(adapter._mean.expand_as(x)).gather(1, labels[:, None])[:, 0]
    torch.testing.assert_close(maps.sum(dim=(1, 2)), y - y_ref, rtol=1e-5, atol=1e-6)
    black = GradientXInput(adapter, reference="black")(x, ClassTarget(labels))
    W = model[1].weight.detach()[labels].reshape(2, 3, 4, 5) / adapter._std
    torch.testing.assert_close(black, (x * W).sum(1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(ZOO))
def test_gradient_x_input_equals_captum_on_the_same_callable(name):
    adapter, images, target = role(name)
    index = torch.arange(images.shape[0])
    mean = adapter._mean

    black = build_explainer("gradient_x_input", adapter, reference="black")(images, target)
    theirs = InputXGradient(lambda x, i: target(adapter(x), index=i)).attribute(images, additional_forward_args=(index,))
    scale = float(black.abs().max())
    assert scale > 0
    torch.testing.assert_close(black, theirs.sum(1), rtol=1e-5, atol=1e-6 * scale)

    ours = build_explainer("gradient_x_input", adapter)(images, target)  # default: mean reference
    shifted = InputXGradient(lambda z, i: target(adapter(z + mean), index=i)).attribute(images - mean, additional_forward_args=(index,))
    scale = float(ours.abs().max())
    torch.testing.assert_close(ours, shifted.sum(1), rtol=1e-5, atol=1e-6 * scale)
    if name == "resnet":
        normalised = (images - mean) / adapter._std
        bare = InputXGradient(adapter.model).attribute(normalised, target=target.labels)
        torch.testing.assert_close(ours, bare.sum(1), rtol=1e-5, atol=1e-5 * scale)


def test_unknown_reference_is_refused():
    adapter, _, _ = role("resnet")
    with pytest.raises(ValueError, match="unknown reference"):
        GradientXInput(adapter, reference="grey")
