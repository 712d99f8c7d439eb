"""Our small networks are registered into timm and have the promised shapes."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import shared.models  # noqa: F401  (registers the small models into timm)
from shared.models.archs import VGGSmall


@pytest.mark.parametrize("arch", ["resnet_small", "vgg_small", "vit_small_shapes"])
def test_registered_models_build_through_timm(arch: str) -> None:
    assert arch in timm.list_models(arch)
    model = timm.create_model(arch, num_classes=8).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 8)


@pytest.mark.parametrize("arch", ["resnet_small", "vgg_small"])
def test_cnn_last_map_is_8x8_at_64px(arch: str) -> None:
    model = timm.create_model(arch, num_classes=8).eval()
    with torch.no_grad():
        feats = model.forward_features(torch.rand(1, 3, 64, 64))
    assert feats.shape[-2:] == (8, 8)
    assert feats.shape[1] == model.num_features


def test_vit_has_an_8x8_patch_grid_and_a_class_token() -> None:
    model = timm.create_model("vit_small_shapes", num_classes=8)
    assert tuple(model.patch_embed.grid_size) == (8, 8)
    assert model.num_prefix_tokens == 1
    with torch.no_grad():
        tokens = model.forward_features(torch.rand(1, 3, 64, 64))
    assert tokens.shape[1] == 1 + 64


def test_vgg_small_is_plain_and_timm_like() -> None:
    model = timm.create_model("vgg_small", num_classes=5).eval()
    assert isinstance(model, VGGSmall)
    kinds = {type(m) for m in model.features}
    assert kinds == {nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d}
    assert not any(m.inplace for m in model.features if isinstance(m, nn.ReLU))
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        # the head is GAP + linear: logits = fc(mean over positions)
        expected = model.fc(feats.mean(dim=(2, 3)))
        torch.testing.assert_close(model(x), expected)
        torch.testing.assert_close(model.forward_head(feats, pre_logits=True), feats.mean(dim=(2, 3)))
    pooled = timm.create_model("vgg_small", num_classes=0).eval()
    with torch.no_grad():
        assert pooled(x).shape == (3, pooled.num_features)
    model.reset_classifier(3)
    assert model.get_classifier().out_features == 3
    with torch.no_grad():
        assert model(x).shape == (3, 3)


def test_no_pretrained_weights_for_our_models() -> None:
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("vgg_small", pretrained=True)
