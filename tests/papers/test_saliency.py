"""Gradient saliency (Simonyan et al. 2014) against an independent computation and captum.

1. Closed form: for a linear classifier y = W x̃ + b on the normalised input x̃ = (x − μ)/σ,
   ∂y_c/∂x = W_c / σ, so the map is max_c |W_c(i, j) / σ_c|.
2. captum 0.9 ``Saliency(abs=True)`` on the same callable (x ↦ target(adapter(x)), x the [0, 1]
   image; the target row index passed as an additional forward argument), then the maximum over
   colour channels: equal on every model role (CNN, ViT, embedding models through
   SimilarityTarget). The same captum call on the bare model with the normalised input gives
   σ_c × ours per channel (the documented relation).
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency as CaptumSaliency
from torch import nn

import shared.models  # noqa: F401  (registers the small timm models)
from papers.saliency.method import Saliency
from shared.explain import ClassTarget, build_explainer
from shared.explain.pair import PairTarget
from shared.models import build_adapter
from shared.models.adapter import ModelAdapter
from tiny_zoo import SIZE, ZOO, role




def scored(adapter, target):
    """The callable captum differentiates: row i of the batch scored against target row index[i]."""
    return lambda x, index: target(adapter(x), index=index)


def test_saliency_closed_form_on_linear_classifier():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 3))
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.5)
    adapter = ModelAdapter(model, "cnn", "classifier", "1", mean=mean, std=std).explain_mode()
    x = torch.rand(2, 3, 4, 5)
    labels = torch.tensor([2, 0])
    W = model[1].weight.detach()[labels].reshape(2, 3, 4, 5)
    expected = (W / torch.tensor(std).view(1, 3, 1, 1)).abs().amax(dim=1)
    torch.testing.assert_close(Saliency(adapter)(x, ClassTarget(labels)), expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", list(ZOO))
def test_saliency_equals_captum_on_the_same_callable(name):
    adapter, images, target = role(name)
    ours = build_explainer("saliency", adapter)(images, target)
    index = torch.arange(images.shape[0])
    theirs = CaptumSaliency(scored(adapter, target)).attribute(images, abs=True, additional_forward_args=(index,))
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs.amax(dim=1), rtol=1e-5, atol=1e-6 * float(ours.abs().max()))
    if name == "resnet":
        # captum on the bare model takes the normalised input: its gradient is σ_c × ours
        normalised = (images - adapter._mean) / adapter._std
        bare = CaptumSaliency(adapter.model).attribute(normalised, target=target.labels, abs=True)
        ours_full = Saliency(adapter).attributions(images, target).abs()
        torch.testing.assert_close(bare, ours_full * adapter._std, rtol=1e-5, atol=1e-6 * float(bare.max()))


def test_saliency_needs_a_target():
    adapter, images, _ = role("resnet")
    with pytest.raises(ValueError, match="needs a target"):
        Saliency(adapter)(images, None)
