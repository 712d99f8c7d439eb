"""Cascading randomisation and class sensitivity on a small real network."""

import pytest
import torch
from torch import nn

from shared.metrics import cascading_randomisation, class_sensitivity, spearman


def small_net():
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(3, 6, 3, padding=1))
    net.add_module("bn", nn.BatchNorm2d(6))
    net.add_module("relu", nn.ReLU())
    net.add_module("conv2", nn.Conv2d(6, 6, 3, padding=1))
    net.add_module("pool", nn.AdaptiveAvgPool2d(1))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(6, 4))
    return net.eval()


IMAGES = torch.rand(3, 3, 10, 10, generator=torch.Generator().manual_seed(1))
CLASSES = torch.tensor([0, 1, 2])


def input_gradient(model):
    x = IMAGES.clone().requires_grad_(True)
    score = model(x).gather(1, CLASSES.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(score, x)
    return grad.abs().amax(1)


def test_cascading_randomisation_leaves_the_model_alone_and_is_deterministic():
    net = small_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    original, steps = cascading_randomisation(net, ["fc", "conv2", "conv1"], input_gradient, seed=3)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert [s.layer for s in steps] == ["fc", "conv2", "conv1"]
    assert steps[-1].layers == ("fc", "conv2", "conv1")
    assert torch.allclose(original, input_gradient(net))
    # Randomising the weights changes the input gradient: correlation well below 1.
    assert steps[-1].spearman.max() < 0.9
    assert all(s.spearman.shape == (3,) and s.ssim.shape == (3,) for s in steps)
    _, again = cascading_randomisation(net, ["fc", "conv2", "conv1"], input_gradient, seed=3)
    assert all(torch.equal(a.spearman, b.spearman) for a, b in zip(steps, again))


def test_a_model_independent_explanation_passes_unchanged():
    fixed = torch.rand(2, 8, 8)
    _, steps = cascading_randomisation(small_net(), ["fc", "conv1"], lambda m: fixed)
    for s in steps:
        assert torch.allclose(s.spearman, torch.ones(2, dtype=torch.float64))
        assert torch.allclose(s.spearman_abs, torch.ones(2, dtype=torch.float64))
        assert torch.allclose(s.ssim, torch.ones(2, dtype=torch.float64))


def test_unknown_layer_is_named():
    with pytest.raises(ValueError, match="module 'head' not found"):
        cascading_randomisation(small_net(), ["head"], input_gradient)


def test_class_sensitivity_by_hand():
    gen = torch.Generator().manual_seed(2)
    base = torch.rand(2, 8, 8, generator=gen)
    logits = torch.tensor([[0.1, 3.0, -2.0], [5.0, -1.0, 0.0]])  # top 1, 0; bottom 2, 1

    def insensitive(images, classes):
        return base

    def opposite(images, classes):
        sign = torch.where(classes == torch.tensor([1, 0]), 1.0, -1.0).view(-1, 1, 1)
        return base * sign

    res = class_sensitivity(torch.zeros(2, 3, 8, 8), logits, insensitive)
    assert res.top_class.tolist() == [1, 0] and res.bottom_class.tolist() == [2, 1]
    assert torch.allclose(res.correlation, torch.ones(2, dtype=torch.float64))
    assert torch.all(res.pointing_disagreement == 0)
    res = class_sensitivity(torch.zeros(2, 3, 8, 8), logits, opposite)
    assert torch.allclose(res.dissimilarity, torch.full((2,), 2.0, dtype=torch.float64))
    assert torch.allclose(res.correlation, spearman(base, -base))
