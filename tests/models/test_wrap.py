"""``shared.models.wrap``: explain your own timm / torchvision network, and README's snippet runs.

All models are built with ``pretrained=False`` and small inputs (no downloads, a few seconds).
"""

from __future__ import annotations

import re

import pytest
import timm
import torch
import torchvision
from torch import nn

from shared import REPO_ROOT
from shared.explain import ClassTarget, SimilarityTarget, build_explainer
from shared.models import ModelAdapter, build_adapter, wrap

SIZE = 64


def _readme_wrap_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    found = [b for b in blocks if "wrap(" in b]
    assert len(found) == 1, "README.md must have exactly one python block that uses wrap("
    return found[0]


def test_readme_snippet_runs_as_written() -> None:
    namespace: dict = {}
    exec(compile(_readme_wrap_block(), "README.md", "exec"), namespace)  # noqa: S102 - the documented snippet
    maps = namespace["maps"]
    assert maps.shape == (4, 64, 64) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()
    assert isinstance(namespace["vit"], ModelAdapter) and namespace["vit"].kind == "vit"


def _tv_vit() -> nn.Module:
    from torchvision.models import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5)


MODELS = [
    # id, factory, input size, kind, target layer, first and last ordered layers
    ("timm_resnet18", lambda: timm.create_model("resnet18", pretrained=False, num_classes=5), SIZE, "cnn", "layer4", ("layer1", "layer4")),
    ("timm_convnext_atto", lambda: timm.create_model("convnext_atto", pretrained=False, num_classes=5), SIZE, "cnn", "stages.3", ("stages.0", "stages.3")),
    ("timm_efficientnet_b0", lambda: timm.create_model("efficientnet_b0", pretrained=False, num_classes=5), SIZE, "cnn", "bn2", ("blocks.0", "bn2")),
    (
        "timm_vit_tiny",
        lambda: timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32, patch_size=8, depth=2),
        32,
        "vit",
        "blocks.1.norm1",
        ("blocks.0", "blocks.1"),
    ),
    ("tv_resnet18", lambda: torchvision.models.resnet18(num_classes=5), SIZE, "cnn", "layer4", ("layer1", "layer4")),
    ("tv_vgg11", lambda: torchvision.models.vgg11(num_classes=5), SIZE, "cnn", "features.19", ("features.0", "features.18")),
    ("tv_vit", _tv_vit, 32, "vit", "encoder.layers.encoder_layer_1.ln_1", ("encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1")),
]


@pytest.mark.parametrize(("factory", "size", "kind", "target", "ends"), [m[1:] for m in MODELS], ids=[m[0] for m in MODELS])
def test_wrap_infers_layers_and_gradcam_runs(factory, size: int, kind: str, target: str, ends: tuple[str, str]) -> None:
    torch.manual_seed(0)
    model = factory().train()
    adapter = wrap(model)
    assert adapter.kind == kind and adapter.task == "classifier" and adapter.metric is None
    assert adapter.target_layer == target
    assert (adapter.layers[0], adapter.layers[-1]) == ends
    assert adapter.num_prefix_tokens == (1 if kind == "vit" else 0)
    # explain mode: eval, frozen, no in-place ReLU left
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert not any(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))
    images = torch.rand(2, 3, size, size)
    maps = build_explainer("gradcam", adapter)(images, ClassTarget(torch.tensor([0, 3])))
    assert maps.shape == (2, size, size) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all()


def test_timm_vit_token_layout_comes_from_patch_embed() -> None:
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=5, img_size=32, patch_size=8, depth=1, reg_tokens=2)
    adapter = wrap(model)
    assert adapter.num_prefix_tokens == 3  # class token + 2 registers
    assert adapter.grid_size(16) == (4, 4)
    assert adapter.to_grid(torch.zeros(1, 3 + 16, 192)).shape == (1, 192, 4, 4)


def test_layer_overrides_the_target_and_bad_names_are_reported() -> None:
    adapter = wrap(timm.create_model("resnet18", pretrained=False, num_classes=5), layer="layer3")
    assert adapter.target_layer == "layer3" and adapter.layers[-1] == "layer4"
    maps = build_explainer("gradcam", adapter)(torch.rand(1, 3, SIZE, SIZE), ClassTarget(torch.tensor([1])))
    assert maps.shape == (1, SIZE, SIZE) and torch.isfinite(maps).all()
    with pytest.raises(KeyError, match="nearest layer names"):
        wrap(timm.create_model("resnet18", pretrained=False, num_classes=5), layer="layer9")


def _tiny_custom() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip


def test_unknown_architecture_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match=r'wrap\(model, layer="<a module name>"\)') as err:
        wrap(_tiny_custom())
    assert "Sequential" in str(err.value) and "'0'" in str(err.value) and "'2'" in str(err.value)
    # ... and with the layer named, it works
    model = _tiny_custom()
    adapter = wrap(model, layer="3")
    assert adapter.kind == "cnn" and adapter.target_layer == "3" and adapter.layers == ["3"]
    assert not model[1].inplace and not model[3].inplace
    maps = build_explainer("gradcam", adapter)(torch.rand(2, 3, 16, 16), ClassTarget(torch.tensor([0, 1])))
    assert maps.shape == (2, 16, 16) and torch.isfinite(maps).all()


def test_wrap_rejects_an_adapter() -> None:
    adapter = build_adapter("resnet", {"arch": "resnet_small", "task": "classifier"}, ["a", "b"])
    with pytest.raises(TypeError, match="already a ModelAdapter"):
        wrap(adapter)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_embedding_wrap_explains_similarity(metric: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=0)  # (B, 512) pooled features
    adapter = wrap(model, task="embedding", metric=metric)
    assert adapter.task == "embedding" and adapter.metric == metric and adapter.target_layer == "layer4"
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        reference = adapter(torch.rand(2, 3, SIZE, SIZE))
    maps = build_explainer("gradcam", adapter)(images, SimilarityTarget(reference, metric))
    assert maps.shape == (2, SIZE, SIZE) and torch.isfinite(maps).all()


def test_embedding_wrap_needs_a_metric() -> None:
    with pytest.raises(ValueError, match="metric"):
        wrap(timm.create_model("resnet18", pretrained=False, num_classes=0), task="embedding")


def test_a_raw_model_is_refused_with_a_pointer_to_wrap() -> None:
    import timm

    from shared.explain import build_explainer

    with pytest.raises(TypeError, match=r"shared\.models\.wrap\(model\)"):
        build_explainer("gradcam", timm.create_model("resnet18", pretrained=False, num_classes=3))


def test_block_variants_on_a_torchvision_vit() -> None:
    from torchvision.models import VisionTransformer as TVViT

    from shared.explain import ClassTarget, build_explainer
    from shared.models import wrap

    torch.manual_seed(0)
    adapter = wrap(TVViT(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=3))
    explainer = build_explainer("gradcam_b1", adapter)
    assert explainer.layer == "encoder.layers.encoder_layer_0.ln_1"
    maps = explainer(torch.rand(2, 3, 32, 32), ClassTarget([0, 1]))
    assert maps.shape == (2, 32, 32) and bool(torch.isfinite(maps).all())
