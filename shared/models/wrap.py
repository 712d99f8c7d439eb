"""Explain your own model: ``wrap(model)`` turns a timm or torchvision network into an adapter.

>>> import timm
>>> from shared.models import wrap
>>> adapter = wrap(timm.create_model("resnet18", pretrained=False, num_classes=10))
>>> adapter.kind, adapter.target_layer
('cnn', 'layer4')

Where to look inside the network (kind, target layer, ordered layers, ViT token layout) comes
from :func:`shared.models.zoo.adapter_spec`, which knows timm ResNet / VGG / ConvNeXt /
EfficientNet / VisionTransformer, torchvision ResNet / VGG / VisionTransformer and the zoo's
own networks. Any other network needs ``layer=`` (the module whose activations are explained).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .adapter import IMAGENET_MEAN, IMAGENET_STD, ModelAdapter
from .zoo import adapter_spec

__all__ = ["wrap"]


def _candidate_layers(model: nn.Module, n: int = 5) -> list[str]:
    """A few module names worth passing as ``layer=``: the last convolutions, else the last children."""
    names = [name for name, m in model.named_modules() if name and isinstance(m, nn.Conv2d)]
    if not names:
        names = [name for name, _ in model.named_modules() if name]
    return names[-n:]


def _arch_name(model: nn.Module) -> str | None:
    """timm's architecture name (e.g. ``resnet18``), where the model carries one."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, dict) and cfg.get("architecture"):
        return str(cfg["architecture"])
    return None


def wrap(
    model: nn.Module,
    layer: str | None = None,
    *,
    task: str = "classifier",
    metric: str | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    name: str | None = None,
) -> ModelAdapter:
    """A :class:`ModelAdapter` around ``model``, in explain mode, ready for ``build_explainer``.

    ``layer`` overrides the inferred target layer (a name from ``model.named_modules()``);
    it is required for an architecture the adapter specs do not know. ``task="embedding"``
    with ``metric="cosine"`` or ``"euclidean"`` explains a model that outputs embeddings
    (use :class:`~shared.explain.SimilarityTarget`). Images passed to the adapter are in
    [0, 1] and normalised with ``mean`` / ``std``.

    The model itself is modified, as the zoo's models are: it is put in eval mode, its
    parameters stop requiring gradients, and its ReLUs are made not in-place (so that hooks
    see unmodified activations).
    """
    if isinstance(model, ModelAdapter):
        raise TypeError("wrap() takes the network itself; this is already a ModelAdapter (use it directly)")
    if not isinstance(model, nn.Module):
        raise TypeError(f"wrap() takes a torch.nn.Module, got {type(model).__name__}")
    try:
        spec = adapter_spec(model)
    except TypeError:
        if layer is None:
            candidates = ", ".join(repr(c) for c in _candidate_layers(model))
            raise ValueError(
                f"cannot infer where to look inside a {type(model).__name__}: pass the layer to explain, "
                f'wrap(model, layer="<a module name>"), e.g. one of {candidates} '
                f"(all names: [n for n, _ in model.named_modules()])"
            ) from None
        # An unknown network with an explicit layer: a ViT if it has timm's token layout.
        is_vit = hasattr(model, "patch_embed") and hasattr(model, "num_prefix_tokens")
        spec = dict(
            kind="vit" if is_vit else "cnn",
            target_layer=layer,
            layers=[layer],
            num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 0)) if is_vit else 0,
        )
    for module in model.modules():
        # as shared.models.zoo.build_model: hooks must see activations before an in-place ReLU
        if isinstance(module, nn.ReLU):
            module.inplace = False
    model.eval()
    adapter = ModelAdapter(
        model,
        kind=spec["kind"],
        task=task,
        target_layer=layer if layer is not None else spec["target_layer"],
        layers=spec["layers"],
        mean=mean,
        std=std,
        metric=metric if task == "embedding" else None,
        num_prefix_tokens=spec["num_prefix_tokens"],
        name=name if name is not None else (_arch_name(model) or type(model).__name__),
        arch=_arch_name(model),
    )
    return adapter.explain_mode()
