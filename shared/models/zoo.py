"""Build a configured model (timm) and wrap it in a :class:`ModelAdapter`.

A model config is one entry of the workflow config's ``models:`` section (schema
``$defs/model``): ``arch`` (a timm name; ours are registered by :mod:`shared.models.archs`),
``task``, ``metric``, ``embedding_dim``, ``pretrained``, ``arch_kwargs``, ``num_classes``.
Where to look inside a network (target layer, layer list, token layout) is derived from the
network's type, so the paper-scale timm models get the same treatment as ours.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import timm
from timm.models.convnext import ConvNeXt
from timm.models.efficientnet import EfficientNet
from timm.models.resnet import ResNet
from timm.models.vgg import VGG
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from . import archs  # noqa: F401  (registers resnet_small, vgg_small, vit_small_shapes into timm)
from .adapter import IMAGENET_MEAN, IMAGENET_STD, ModelAdapter
from .archs import VGGSmall
from .embedding import EmbeddingNet

__all__ = ["adapter_spec", "build", "build_adapter", "build_model", "num_outputs"]


def num_outputs(model_cfg: Mapping[str, Any], classes: Sequence[str]) -> int:
    """The classifier's number of logits: ``num_classes`` if configured, else one per class.

    ``num_classes`` is set where labels index a larger label space than the dataset's classes
    (Imagenette labels are ImageNet indices, so an ImageNet classifier keeps its 1000 logits).
    """
    n = model_cfg.get("num_classes")
    if n is not None:
        return int(n)
    if not classes:
        raise ValueError("a classifier needs the dataset's classes (or num_classes in its model config)")
    return len(classes)


def build_model(model_cfg: Mapping[str, Any], classes: Sequence[str] = (), pretrained: bool | None = None) -> nn.Module:
    """The network a model config describes (timm), in training mode.

    ``pretrained`` overrides the config (checkpoint loading builds with ``False``, then loads
    the saved weights). Activations are made not in-place so that hooks see unmodified tensors.
    """
    arch = str(model_cfg["arch"])
    kwargs = dict(model_cfg.get("arch_kwargs") or {})
    use_pretrained = bool(model_cfg.get("pretrained", False)) if pretrained is None else pretrained
    task = model_cfg.get("task", "classifier")
    if task == "embedding":
        backbone = timm.create_model(arch, pretrained=use_pretrained, num_classes=0, global_pool="", **kwargs)
        model: nn.Module = EmbeddingNet(backbone, model_cfg.get("embedding_dim"))
    elif task == "classifier":
        model = timm.create_model(arch, pretrained=use_pretrained, num_classes=num_outputs(model_cfg, classes), **kwargs)
    else:
        raise ValueError(f"model task must be 'classifier' or 'embedding', got {task!r}")
    for module in model.modules():
        # timm's ResNet/VGG use ReLU(inplace=True): a hook on the previous layer would then see
        # its output overwritten, and layer-wise inversion would lose the pre-activation.
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return model


def _cnn_spec(model: nn.Module) -> tuple[str, list[str]]:
    """(target layer, ordered layers) of a CNN."""
    if isinstance(model, ResNet):
        layers = [f"layer{i}" for i in range(1, 5) if isinstance(getattr(model, f"layer{i}", None), nn.Module)]
        return layers[-1], layers
    if isinstance(model, (VGG, VGGSmall)):
        # The conv layers in order; the target is the last ReLU of `features` (the rectified last
        # conv map, before any final max pool), as in Grad-CAM's VGG experiments.
        convs = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
        relus = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]
        return relus[-1], convs
    if isinstance(model, ConvNeXt):
        layers = [f"stages.{i}" for i in range(len(model.stages))]
        return layers[-1], layers
    if isinstance(model, EfficientNet):
        # `bn2` is timm's BatchNormAct2d after `conv_head`: the rectified last map before pooling.
        layers = [f"blocks.{i}" for i in range(len(model.blocks))] + ["bn2"]
        return "bn2", layers
    tv_resnet, tv_vgg = _torchvision_cnn_types()
    if tv_resnet is not None and isinstance(model, tv_resnet):
        layers = [f"layer{i}" for i in range(1, 5)]
        return layers[-1], layers
    if tv_vgg is not None and isinstance(model, tv_vgg):
        convs = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
        relus = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]
        return relus[-1], convs
    raise TypeError(
        f"no adapter spec for a {type(model).__name__}; add one in shared/models/zoo.py (_cnn_spec / adapter_spec)"
    )


def _torchvision_cnn_types() -> tuple[type | None, type | None]:
    """torchvision's ResNet and VGG classes (None where torchvision cannot be imported)."""
    try:
        from torchvision.models import VGG as TVVGG
        from torchvision.models import ResNet as TVResNet
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None, None
    return TVResNet, TVVGG


def _torchvision_vit_type() -> type | None:
    try:
        from torchvision.models import VisionTransformer as TVViT
    except ImportError:  # pragma: no cover - torchvision is a dependency
        return None
    return TVViT


def adapter_spec(model: nn.Module) -> dict[str, Any]:
    """Where to look inside ``model``: kind, target layer, ordered layers, prefix tokens."""
    if isinstance(model, EmbeddingNet):
        _, layers = _cnn_spec(model.backbone)
        # The embedding is the GAP of `embed`'s output: explaining that layer decomposes the
        # similarity exactly.
        return dict(kind="cnn", target_layer="embed", layers=[f"backbone.{n}" for n in layers] + ["embed"], num_prefix_tokens=0)
    if isinstance(model, VisionTransformer):
        depth = len(model.blocks)
        # With the class-token head, the patch tokens of the *last* block's output never reach
        # the logits (the final norm is per token), so their gradient is zero. The usual ViT
        # Grad-CAM layer is the last block's first norm: its input is the last block's input.
        return dict(
            kind="vit",
            target_layer=f"blocks.{depth - 1}.norm1",
            layers=[f"blocks.{i}" for i in range(depth)],
            num_prefix_tokens=int(model.num_prefix_tokens),
        )
    tv_vit = _torchvision_vit_type()
    if tv_vit is not None and isinstance(model, tv_vit):
        # torchvision's ViT: one class token, a square patch grid, the same last-block argument.
        depth = len(model.encoder.layers)
        return dict(
            kind="vit",
            target_layer=f"encoder.layers.encoder_layer_{depth - 1}.ln_1",
            layers=[f"encoder.layers.encoder_layer_{i}" for i in range(depth)],
            num_prefix_tokens=1,
        )
    target, layers = _cnn_spec(model)
    return dict(kind="cnn", target_layer=target, layers=layers, num_prefix_tokens=0)


def build_adapter(
    name: str,
    model_cfg: Mapping[str, Any],
    classes: Sequence[str] = (),
    model: nn.Module | None = None,
    pretrained: bool | None = None,
) -> ModelAdapter:
    """A :class:`ModelAdapter` for the configured model ``name``.

    ``model`` is built from ``model_cfg`` unless given (e.g. a trained network). Every model
    normalises with ImageNet's mean and std, from-scratch ones included, so that inputs are
    treated the same way everywhere.
    """
    if model is None:
        model = build_model(model_cfg, classes, pretrained=pretrained)
    spec = adapter_spec(model)
    task = str(model_cfg.get("task", "classifier"))
    return ModelAdapter(
        model,
        kind=spec["kind"],
        task=task,
        target_layer=spec["target_layer"],
        layers=spec["layers"],
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        metric=model_cfg.get("metric") if task == "embedding" else None,
        num_prefix_tokens=spec["num_prefix_tokens"],
        name=name,
        classes=classes,
        arch=model_cfg.get("arch"),
    )


build = build_adapter
"""``shared.models.build(name, cfg, classes)``: the name used in docs/ARCHITECTURE.md."""
