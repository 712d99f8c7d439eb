"""T-TAME: each loss term against values written out by hand on tiny tensors, the head's
structure on hand-set weights, output shapes/ranges on the tiny zoo's CNN and ViT, training
determinism, and batched maps == per-image maps."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from papers.ttame.method import (
    TTAMEHead,
    area_loss,
    classifier_features,
    feature_layers,
    masked_cross_entropy,
    masked_input,
    own_masks,
    regularised_masks,
    smoothness_loss,
    train_head,
    ttame_loss,
    ttame_maps,
)
from shared.models.adapter import ModelAdapter
from tests.tiny_zoo import SIZE, role

M = [[0.0, 1.0, 0.5], [0.25, 0.75, 0.0], [1.0, 0.5, 0.25]]


def test_area_loss_by_hand():
    m = torch.tensor([[[[0.0, 1.0], [0.5, 0.25]]]])
    expected = sum((v + 0.0005) ** 0.3 for v in (0.0, 1.0, 0.5, 0.25)) / 4
    assert area_loss(m).item() == pytest.approx(expected, rel=1e-6)
    assert area_loss(m, power=1).item() == pytest.approx(0.4375, rel=1e-6)  # p = 1: plain mean, no ε


def test_smoothness_loss_by_hand():
    h = w = 3
    vertical = sum((M[u + 1][v] - M[u][v]) ** 2 for u in range(h - 1) for v in range(w))
    horizontal = sum((M[u][v + 1] - M[u][v]) ** 2 for u in range(h) for v in range(w - 1))
    border = sum(M[0][v] ** 2 + M[h - 1][v] ** 2 for v in range(w)) + sum(M[u][0] ** 2 + M[u][w - 1] ** 2 for u in range(h))
    one = (vertical + horizontal + 0.3 * border) / 2  # / (p · B), p = 2, B = 1
    m = torch.tensor(M)[None, None]
    assert smoothness_loss(m).item() == pytest.approx(one, rel=1e-6)
    assert smoothness_loss(m, border_penalty=0).item() == pytest.approx((vertical + horizontal) / 2, rel=1e-6)
    # B = 2 images with 3 maps each (the code's B × B-style stacks): summed over all, divided by 2 · B = 4
    six = torch.tensor(M)[None, None].expand(2, 3, 3, 3)
    assert smoothness_loss(six).item() == pytest.approx(6 * 2 * one / 4, rel=1e-6)


def test_masked_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = torch.tensor([0, 1])
    rows = [[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]]
    expected = -sum(r[y] - math.log(sum(math.exp(v) for v in r)) for r, y in zip(rows, (0, 1))) / 2
    assert masked_cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_total_loss_weights():
    logits = torch.tensor([[1.0, -1.0]])
    labels = torch.tensor([1])
    m = torch.tensor(M)[None, None]
    ce = -(-1.0 - math.log(math.exp(1.0) + math.exp(-1.0)))
    area = sum((v + 0.0005) ** 0.3 for row in M for v in row) / 9
    terms = ttame_loss(logits, labels, m)
    assert terms["ce"].item() == pytest.approx(1.5 * ce, rel=1e-6)
    assert terms["area"].item() == pytest.approx(2 * area, rel=1e-6)
    assert terms["smoothness"].item() == pytest.approx(0.01 * smoothness_loss(m).item(), rel=1e-6)
    assert terms["loss"].item() == pytest.approx(1.5 * ce + 2 * area + 0.01 * smoothness_loss(m).item(), rel=1e-6)


def test_mask_selection_as_the_code():
    a = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).view(2, 3, 1, 1)  # a[i, k] = 3 i + k
    labels = torch.tensor([2, 0])
    reg = regularised_masks(a, labels)  # every image's maps of every predicted class: (B, B, h, w)
    assert reg.flatten().tolist() == [2.0, 0.0, 5.0, 3.0]
    assert own_masks(a, labels).flatten().tolist() == [2.0, 3.0]  # image i's own class only


def test_masked_input_black_for_cnns_mean_for_vit():
    x = torch.full((1, 3, 2, 2), 0.8)
    m = torch.tensor([[[[1.0, 0.0], [0.5, 0.0]]]])
    cnn, _, _ = role("plaincnn", 1)
    vit, _, _ = role("vit", 1)
    assert torch.allclose(masked_input(cnn, x, m)[0, :, 0], torch.tensor([[0.8, 0.0]] * 3))
    mean = torch.tensor(vit.mean)
    got = masked_input(vit, x, m)
    assert torch.allclose(got[0, :, 0, 1], mean) and torch.allclose(got[0, :, 0, 0], torch.full((3,), 0.8))
    # in the model's normalised space the masked ViT input is m · normalise(x), as the code's "new" policy
    std = torch.tensor(vit.std).view(1, 3, 1, 1)
    assert torch.allclose((got - mean.view(1, 3, 1, 1)) / std, m * (x - mean.view(1, 3, 1, 1)) / std, atol=1e-6)


def test_head_structure_on_hand_set_weights():
    """Zero 1×1 convs and fresh eval BN make each branch ReLU(F); a fuser of ones sums the channels."""
    head = TTAMEHead([2, 1], (2, 2), num_classes=1).eval()
    for conv in head.convs:
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    nn.init.ones_(head.fuser.weight)
    nn.init.zeros_(head.fuser.bias)
    f1 = torch.tensor([[[[1.0, -2.0], [3.0, 0.5]], [[-1.0, 1.0], [2.0, -3.0]]]])  # (1, 2, 2, 2)
    f2 = torch.full((1, 1, 1, 1), 4.0)  # a constant 1×1 map upsamples to 4 everywhere
    a, c = head([f1, f2])
    expected = torch.tensor([[1.0 + 0.0, 0.0 + 1.0], [3.0 + 2.0, 0.5 + 0.0]]) + 4.0
    assert torch.allclose(c[0, 0], expected)
    assert torch.allclose(a, torch.sigmoid(c))


@pytest.mark.parametrize("name", ["resnet", "vit"])
def test_maps_shape_range_and_batch_independence(name):
    adapter, images, _ = role(name, 3)
    g = torch.Generator().manual_seed(3)
    train = torch.rand(8, 3, SIZE, SIZE, generator=g)
    result = train_head(adapter, train, epochs=1, batch_size=4, lr=0.01, seed=0)
    assert result.layers == feature_layers(adapter, 3) and len(result.history) == 1
    classes = torch.tensor([0, 1, 3])
    _, feats = classifier_features(adapter, images, result.layers)
    a, c = result.head(feats)
    assert a.shape == c.shape == (3, len(adapter.classes), *feats[0].shape[-2:])
    assert bool(((a > 0) & (a < 1)).all())
    maps = ttame_maps(adapter, result.head, result.layers, images, classes)
    assert maps.shape == (3, SIZE, SIZE)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0 + 1e-6
    alone = torch.cat([ttame_maps(adapter, result.head, result.layers, images[i : i + 1], classes[i : i + 1]) for i in range(3)])
    assert torch.allclose(alone, maps, atol=1e-6)


def test_training_is_deterministic_and_trains():
    adapter, _, _ = role("plaincnn", 1)
    g = torch.Generator().manual_seed(5)
    train = torch.rand(8, 3, SIZE, SIZE, generator=g)
    torch.manual_seed(123)  # the global RNG must not matter
    one = train_head(adapter, train, epochs=2, batch_size=4, lr=0.01, seed=7)
    torch.manual_seed(456)
    two = train_head(adapter, train, epochs=2, batch_size=4, lr=0.01, seed=7)
    s1, s2 = one.head.state_dict(), two.head.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert one.history == two.history
    fresh = train_head(adapter, train, epochs=1, batch_size=4, lr=0.0, seed=7).head.state_dict()
    assert not torch.equal(fresh["fuser.weight"], s1["fuser.weight"])  # the head did move
    assert all(not p.requires_grad for p in adapter.model.parameters()) and not adapter.training  # classifier frozen


def test_recomputed_features_train_the_same_head():
    """cache_features=False (paper scale: features recomputed every step) trains the same head."""
    adapter, _, _ = role("plaincnn", 1)
    train = torch.rand(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    cached = train_head(adapter, train, epochs=1, batch_size=4, lr=0.01, seed=7).head.state_dict()
    fresh = train_head(adapter, train, epochs=1, batch_size=4, lr=0.01, seed=7, cache_features=False).head.state_dict()
    assert all(torch.allclose(cached[k].float(), fresh[k].float(), atol=1e-5) for k in cached)


def test_layers_are_the_last_three_stages():
    """As the code's choices: ResNet stages 2-4, a plain CNN's last three stage ends (pools, and the
    last ReLU when no pool ends it), a ViT's last three blocks' first norm."""
    assert feature_layers(role("resnet", 1)[0]) == ["layer2", "layer3", "layer4"]
    assert feature_layers(role("plaincnn", 1)[0]) == ["features.7", "features.11", "features.17"]
    assert feature_layers(role("vit", 1)[0]) == ["blocks.1.norm1", "blocks.2.norm1", "blocks.3.norm1"]
    vgg = ModelAdapter(nn.Sequential(), "cnn", "classifier", "")  # VGG-16's layout: features.16, 23, 30 (the paper's)
    vgg.model.add_module("features", nn.Sequential(*[nn.MaxPool2d(2) if i in (4, 9, 16, 23, 30) else nn.ReLU() for i in range(31)]))
    assert feature_layers(vgg) == ["features.16", "features.23", "features.30"]
