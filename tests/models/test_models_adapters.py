"""Adapters find the right layers and token grid on every architecture we explain.

The paper-scale ImageNet models are built with ``pretrained=False`` (no downloads in tests);
their layer names and grids do not depend on the weights.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from torch import nn

from shared.models import IMAGENET_MEAN, IMAGENET_STD, ModelAdapter, build_adapter

CLASSES8 = [f"c{i}" for i in range(8)]


def capture(adapter: ModelAdapter, names: list[str], images: torch.Tensor, grad_of: str | None = None):
    """Forward ``images``, recording the outputs of ``names``; optionally d(score)/d(grad_of)."""
    acts: dict[str, torch.Tensor] = {}
    handles = [adapter.module(n).register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o)) for n in names]
    try:
        out = adapter(images)
    finally:
        for h in handles:
            h.remove()
    grad = None
    if grad_of is not None:
        score = out[:, 0].sum() if adapter.task == "classifier" else out.sum()
        (grad,) = torch.autograd.grad(score, acts[grad_of])
    return out, acts, grad


SMALL = [
    # name, config, layers, target, target grid
    ("resnet", {"arch": "resnet_small", "task": "classifier"}, ["layer1", "layer2", "layer3", "layer4"], "layer4", (8, 8)),
    ("plaincnn", {"arch": "vgg_small", "task": "classifier"}, [f"features.{i}" for i in (0, 4, 8, 12, 15)], "features.17", (8, 8)),
    ("vit", {"arch": "vit_small_shapes", "task": "classifier"}, [f"blocks.{i}" for i in range(4)], "blocks.3.norm1", (8, 8)),
]


@pytest.mark.parametrize(("name", "cfg", "layers", "target", "grid"), SMALL, ids=[s[0] for s in SMALL])
def test_small_model_adapters(name: str, cfg: dict, layers: list[str], target: str, grid: tuple[int, int]) -> None:
    adapter = build_adapter(name, cfg, CLASSES8)
    assert adapter.layers == layers
    assert adapter.target_layer == target
    assert adapter.mean == IMAGENET_MEAN and adapter.std == IMAGENET_STD
    assert adapter.metric is None and adapter.task == "classifier"
    assert not any(m.inplace for m in adapter.model.modules() if isinstance(m, nn.ReLU))
    adapter.eval()
    out, acts, grad = capture(adapter, [target, *layers], torch.rand(2, 3, 64, 64), grad_of=target)
    assert out.shape == (2, 8)
    assert adapter.to_grid(acts[target]).shape[-2:] == grid
    # the explained layer must carry gradient to the spatial positions (else every CAM is 0)
    g = adapter.to_grid(grad)
    assert g.abs().amax(dim=(0, 1)).gt(0).float().mean() > 0.5
    if name == "vit":
        assert adapter.kind == "vit" and adapter.num_prefix_tokens == 1
        for layer in layers:
            assert acts[layer].shape == (2, 1 + 64, 128)
    else:
        assert adapter.kind == "cnn" and adapter.num_prefix_tokens == 0


def test_vit_last_block_output_gets_no_patch_gradient() -> None:
    """Why the ViT target is ``blocks[-1].norm1``: the class-token head ignores the last block's patches."""
    adapter = build_adapter("vit", {"arch": "vit_small_shapes", "task": "classifier"}, CLASSES8).eval()
    _, _, grad = capture(adapter, ["blocks.3"], torch.rand(2, 3, 64, 64), grad_of="blocks.3")
    assert grad[:, 1:].abs().max() == 0
    assert grad[:, 0].abs().max() > 0


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_embedding_adapter_is_a_gap_of_its_target_layer(metric: str) -> None:
    cfg = {"arch": "resnet_small", "task": "embedding", "metric": metric, "embedding_dim": 32}
    adapter = build_adapter("embed", cfg).eval()
    assert adapter.task == "embedding" and adapter.metric == metric
    assert adapter.target_layer == "embed"
    assert adapter.layers == ["backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4", "embed"]
    assert isinstance(adapter.module("embed"), nn.Conv2d) and adapter.module("embed").kernel_size == (1, 1)
    with torch.no_grad():
        out, acts, _ = capture(adapter, ["embed"], torch.rand(3, 3, 64, 64))
    assert out.shape == (3, 32)
    assert acts["embed"].shape == (3, 32, 8, 8)
    # exact decomposition: the embedding is the spatial mean of the target layer's map
    torch.testing.assert_close(out, acts["embed"].mean(dim=(2, 3)), rtol=0, atol=1e-6)


def test_embedding_without_projection_pools_the_backbone_map() -> None:
    adapter = build_adapter("e", {"arch": "vgg_small", "task": "embedding", "metric": "cosine"}).eval()
    with torch.no_grad():
        out, acts, _ = capture(adapter, ["backbone.features.17"], torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 128)
    torch.testing.assert_close(out, acts["backbone.features.17"].mean(dim=(2, 3)), rtol=0, atol=1e-6)


def paper_scale_config() -> dict:
    """config/paper-scale.yaml merged over config/default.yaml, as Snakemake's --configfile does."""
    from snakemake.utils import update_config

    from shared.config import REPO_ROOT, validate_config

    config = yaml.safe_load((REPO_ROOT / "config" / "default.yaml").read_text())
    update_config(config, yaml.safe_load((REPO_ROOT / "config" / "paper-scale.yaml").read_text()))
    return validate_config(config, "default + paper-scale")


PAPER_SCALE = [
    # model name, layers, target, target grid at 224 px, channels
    ("resnet", ["layer1", "layer2", "layer3", "layer4"], "layer4", (7, 7), 2048),
    ("plaincnn", [f"features.{i}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)], "features.29", (14, 14), 512),
    ("vit", [f"blocks.{i}" for i in range(12)], "blocks.11.norm1", (14, 14), 384),
    ("embed_cosine", ["backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4", "embed"], "embed", (7, 7), 512),
    ("embed_euclidean", ["backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4", "embed"], "embed", (7, 7), 512),
]


@pytest.mark.parametrize(("name", "layers", "target", "grid", "channels"), PAPER_SCALE, ids=[p[0] for p in PAPER_SCALE])
def test_paper_scale_adapters_at_224px(name: str, layers: list[str], target: str, grid: tuple[int, int], channels: int) -> None:
    cfg = paper_scale_config()["models"][name]
    assert cfg["pretrained"] is True
    # the weights cannot be fetched here; layer names and grids do not depend on them
    adapter = build_adapter(name, cfg, pretrained=False).eval()
    assert adapter.layers == layers
    assert adapter.target_layer == target
    with torch.no_grad():
        out, acts, _ = capture(adapter, [target], torch.rand(1, 3, 224, 224))
    assert out.shape == ((1, 1000) if cfg["task"] == "classifier" else (1, cfg["embedding_dim"]))
    assert adapter.to_grid(acts[target]).shape == (1, channels, *grid)
    if name == "vit":
        assert adapter.kind == "vit" and adapter.num_prefix_tokens == 1
        assert adapter.grid_size(196) == (14, 14)
    else:
        assert adapter.kind == "cnn"
