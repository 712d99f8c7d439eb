"""Where a block-parametrised method looks: the output of the model's k-th block.

``<method>_b<k>`` (a method registered with ``blocks=True``) explains ``block_layers(adapter)[k-1]``:

- a plain CNN (a ``features`` nn.Sequential of conv / BN / ReLU / pool): each conv block's ReLU
  output, bottom to top (the last one is the adapter's target layer);
- a ViT: each block's first norm, ``blocks.<i>.norm1`` (the block's normalised input; the last
  block's output patch tokens get no gradient from a class-token head, see the adapter);
- any other CNN (ResNet stages, embedding networks): ``adapter.layers``.
"""

from __future__ import annotations

from torch import nn

from shared.models.adapter import ModelAdapter


def plain_features(adapter: ModelAdapter) -> tuple[str, nn.Sequential] | None:
    """(name, module) of the model's ``features`` nn.Sequential, if it is a plain CNN."""
    for name, module in adapter.model.named_modules():
        if name.split(".")[-1] == "features" and isinstance(module, nn.Sequential):
            return name, module
    return None


def block_layers(adapter: ModelAdapter) -> list[str]:
    """The output layer of each block of the model, bottom to top (see the module docstring)."""
    if adapter.kind == "vit":
        # timm names a block's first norm `norm1`, torchvision `ln_1`
        modules = dict(adapter.model.named_modules())
        return [f"{name}.norm1" if f"{name}.norm1" in modules else f"{name}.ln_1" for name in adapter.layers]
    plain = plain_features(adapter)
    if plain is not None:
        prefix, features = plain
        return [f"{prefix}.{i}" for i, m in enumerate(features) if isinstance(m, nn.ReLU)]
    return list(adapter.layers)


def block_layer(adapter: ModelAdapter, block: int) -> str:
    """The output layer of block ``block`` (1-based); a clear error if the model has fewer."""
    layers = block_layers(adapter)
    if not 1 <= block <= len(layers):
        raise ValueError(f"model {adapter.name!r} has {len(layers)} blocks ({', '.join(layers)}); block {block} does not exist")
    return layers[block - 1]


def layer_or_block(adapter: ModelAdapter, layer: str | None, block: int | None) -> str | None:
    """The explained layer given by name or as the k-th block (never both); None: the default."""
    if block is None:
        return layer
    if layer is not None:
        raise ValueError("give either layer= or block=, not both")
    return block_layer(adapter, block)
