"""Guided back-propagation (Springenberg et al. 2015) against captum 0.9 and its scope.

1. captum's ``GuidedBackprop`` overrides every ``nn.ReLU``'s backward with a (full) module
   backward hook returning relu(grad) of the gradient at the ReLU's input (the ReLU's own gate
   1[x > 0] already applied: 1[x > 0] · max(g, 0), the same rule as ours, by a different
   mechanism: we put an identity with backward max(g, 0) on the ReLU's output). Same callable:
   an ``nn.Module`` wrapping the adapter and the target (captum needs a module to find the
   ReLUs), the target row passed as a forward argument. Equal on the ReLU CNN roles, including
   timm's resnet18 whose ReLUs are in-place (captum 0.9's hooks handle in-place modules;
   ours need no change: the hook wraps the ReLU's output tensor).
2. A GELU ViT is refused with a clear error (directly: ValueError; through the registry:
   MethodNotApplicable); so is a CNN with a non-ReLU activation.
3. Guided Grad-CAM (papers/gradcam) uses this very function.
"""

from __future__ import annotations

import pytest
import timm
import torch
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from torch import nn

import shared.models  # noqa: F401
from papers.guided_backprop.method import GuidedBackprop, guided_backprop
from shared.explain import ClassTarget, build_explainer
from shared.explain.pair import PairTarget
from shared.explain.registry import MethodNotApplicable
from shared.models import build_adapter
from shared.models.adapter import ModelAdapter
from tiny_zoo import SIZE
from tiny_zoo import ZOO as TINY_ZOO

ZOO = {role: TINY_ZOO[role] for role in ("resnet", "plaincnn", "embed_cosine", "embed_euclidean")}


class Scored(nn.Module):
    """x, index ↦ target(adapter(x), index): the callable both implementations differentiate."""

    def __init__(self, adapter: ModelAdapter, target) -> None:
        super().__init__()
        self.adapter, self.target = adapter, target

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.target(self.adapter(x), index=index)


def role(name: str):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, SIZE, SIZE, generator=g)
    if name == "timm_resnet18":  # in-place ReLUs
        model = timm.create_model("resnet18", pretrained=False, num_classes=4)
        adapter = ModelAdapter(model, "cnn", "classifier", "layer4", name="resnet18").explain_mode()
        return adapter, images, ClassTarget([0, 1, 3])
    adapter = build_adapter(name, ZOO[name], ["a", "b", "c", "d"]).explain_mode()
    if adapter.task == "classifier":
        return adapter, images, ClassTarget([0, 1, 3])
    return adapter, images, PairTarget.from_images(adapter, torch.rand(3, 3, SIZE, SIZE, generator=g))


@pytest.mark.parametrize("name", [*ZOO, "timm_resnet18"])
def test_equals_captum_guided_backprop(name):
    adapter, images, target = role(name)
    inplace = [m.inplace for m in adapter.modules() if isinstance(m, nn.ReLU)]
    if name == "timm_resnet18":
        assert any(inplace)
    ours_gb = build_explainer("guided_backprop", adapter)
    ours = ours_gb.attributions(images, target)
    theirs = CaptumGuidedBackprop(Scored(adapter, target)).attribute(images, additional_forward_args=(torch.arange(3),))
    scale = float(ours.abs().max())
    assert scale > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6 * scale)
    torch.testing.assert_close(ours_gb(images, target), theirs.abs().amax(1), rtol=1e-5, atol=1e-6 * scale)
    # nothing left behind: hooks, in-place flags, the plain gradient
    assert all(not m._forward_hooks and not m._backward_hooks for m in adapter.modules() if isinstance(m, nn.ReLU))
    assert [m.inplace for m in adapter.modules() if isinstance(m, nn.ReLU)] == inplace
    # guided differs from the plain gradient (the rule does something)
    plain = torch.autograd.functional.vjp(lambda x: target(adapter(x)), images, torch.ones(3))[1]
    assert not torch.allclose(plain, ours, atol=1e-3 * scale)


def test_refuses_gelu_vit_and_non_relu_cnn():
    torch.manual_seed(0)
    vit = build_adapter("vit", {"arch": "vit_small_shapes", "task": "classifier", "arch_kwargs": {"img_size": SIZE}}, ["a", "b"])
    with pytest.raises(ValueError, match="not defined for vision transformers.*GELU"):
        GuidedBackprop(vit)
    with pytest.raises(MethodNotApplicable, match="guided_backprop"):
        build_explainer("guided_backprop", vit)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="ReLU networks only.*SiLU"):
        GuidedBackprop(ModelAdapter(model, "cnn", "classifier", "0"))
    functional = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="no nn.ReLU modules"):
        GuidedBackprop(ModelAdapter(functional, "cnn", "classifier", "0"))


def test_guided_gradcam_uses_this_guided_backprop():
    import papers.gradcam.method as gradcam

    assert gradcam.guided_backprop is guided_backprop
