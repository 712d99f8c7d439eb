"""Small networks for the synthetic benchmark, registered into timm.

Importing this module (``import shared.models`` does) makes ``timm.create_model("resnet_small")``,
``timm.create_model("vgg_small")`` and ``timm.create_model("vit_small_shapes")`` work, with the
usual timm keyword arguments (``num_classes``, ``global_pool``, ``img_size``…).

All three keep an 8×8 last feature map / patch grid at 64 px: class activation maps on a 2×2
grid would be useless for localisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import SelectAdaptivePool2d
from timm.models import register_model
from timm.models.resnet import BasicBlock, ResNet
from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

__all__ = ["VGGSmall", "resnet_small", "vgg_small", "vit_small_shapes"]

_FACTORY_ONLY = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")
"""Keys timm.create_model passes to every factory; they describe weight downloads we do not have."""


def _model_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in _FACTORY_ONLY}


@register_model
def resnet_small(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """A four-stage ResNet with one BasicBlock per stage and narrow channels (16, 32, 64, 64).

    The stem's max pool is removed (stem stride 2, so the first stage sees 32×32: small
    shapes need the resolution) and ``output_stride=16`` dilates the last stage instead of
    striding it, so the last stage is 8×8 at 64 px (a plain ResNet would give 2×2).
    """
    if pretrained:
        raise ValueError("resnet_small has no pretrained weights; train it with shared.models.train")
    args: dict[str, Any] = dict(
        block=BasicBlock,
        layers=(1, 1, 1, 1),
        channels=(16, 32, 64, 64),
        stem_width=16,
        output_stride=16,  # counted with timm's stride-4 stem; without the pool the net stride is 8
        global_pool="fast",
    )
    args.update(_model_kwargs(kwargs))
    model = ResNet(**args)
    model.maxpool = nn.Identity()
    return model


class VGGSmall(nn.Module):
    """A plain conv–BN–ReLU–max-pool network without skip connections, timm-style.

    ``features`` is a flat ``nn.Sequential`` of Conv2d / BatchNorm2d / ReLU / MaxPool2d, so a
    method that inverts the network layer by layer (NAFlow) can walk it. The ReLUs are not
    in-place: a hook then sees each layer's input unmodified. The head is a global average
    pool followed by one linear layer (as in Grad-CAM's GAP networks), so CAM is exact.

    ``cfg`` lists conv widths; ``"M"`` is a 2×2 max pool. The default ends at stride 8.
    """

    def __init__(
        self,
        cfg: Sequence[int | str] = (16, "M", 32, "M", 64, "M", 128, 128),
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "fast",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            width = int(item)
            layers += [
                nn.Conv2d(channels, width, kernel_size=3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=False),
            ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.num_features = self.head_hidden_size = channels
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the head (timm API); ``num_classes=0`` makes the model return pooled features."""
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (B, C, h, w)."""
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.head_drop(self.global_pool(x))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def vgg_small(pretrained: bool = False, **kwargs: Any) -> VGGSmall:
    """Five 3×3 conv–BN–ReLU layers and three max pools: an 8×8 last map at 64 px."""
    if pretrained:
        raise ValueError("vgg_small has no pretrained weights; train it with shared.models.train")
    return VGGSmall(**_model_kwargs(kwargs))


class ConvStemPatchEmbed(PatchEmbed):
    """timm's patch embedding with a small convolutional stem instead of one strided conv.

    log2(patch_size) 3×3 stride-2 conv–BN–ReLU layers, then a 1×1 conv to the token width:
    the same patch grid and tokens, but a ViT trained from scratch on a few thousand images
    learns far faster ("Early convolutions help transformers see better", Xiao et al., 2021).
    """

    def __init__(self, *args: Any, stem_width: int = 32, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        patch = self.patch_size[0]
        if self.patch_size[0] != self.patch_size[1] or patch & (patch - 1):
            raise ValueError(f"the conv stem needs a square power-of-two patch size, got {self.patch_size}")
        layers: list[nn.Module] = []
        channels, width = int(kwargs.get("in_chans", 3)), stem_width
        for _ in range(patch.bit_length() - 1):
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels, width = width, width * 2
        layers.append(nn.Conv2d(channels, self.proj.out_channels, kernel_size=1))
        self.proj = nn.Sequential(*layers)


@register_model
def vit_small_shapes(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """A small ViT for 64 px images: 8 px patches (an 8×8 grid), 4 blocks, width 128, class token.

    The patches are embedded by a three-layer conv stem (:class:`ConvStemPatchEmbed`); pass
    ``embed_layer=timm.layers.PatchEmbed`` for the original single-conv patchify.
    """
    if pretrained:
        raise ValueError("vit_small_shapes has no pretrained weights; train it with shared.models.train")
    args: dict[str, Any] = dict(
        img_size=64,
        patch_size=8,
        embed_dim=128,
        depth=4,
        num_heads=4,
        mlp_ratio=2.0,
        class_token=True,
        global_pool="token",
        embed_layer=ConvStemPatchEmbed,
    )
    args.update(_model_kwargs(kwargs))
    return VisionTransformer(**args)
