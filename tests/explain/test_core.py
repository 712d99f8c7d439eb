"""The explanation core against closed-form gradients of a one-conv-layer network.

Toy model: A = conv(x) (C channels), then in-place ReLU, global average pooling and a linear
layer W (K × C). The class score is y_c = Σ_k W_ck · mean_u ReLU(A_k(u)) + b_c, hence
∂y_c/∂A_k(u) = W_ck / (h·w) · 1[A_k(u) > 0] — no autograd needed to know it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shared.explain import (
    CAMExplainer,
    ClassTarget,
    SimilarityTarget,
    capture,
    get_method,
    layer_signals,
    normalize_maps,
    register_method,
    upsample,
)
from shared.models.adapter import LayerNotFoundError, ModelAdapter


class ToyNet(nn.Module):
    def __init__(self, channels: int = 5, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.act = nn.ReLU(inplace=True)  # in place on purpose: capture must survive it
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def toy_adapter(seed: int = 0, task: str = "classifier", metric: str | None = None) -> ModelAdapter:
    torch.manual_seed(seed)
    return ModelAdapter(ToyNet(), "cnn", task, "conv", mean=(0, 0, 0), std=(1, 1, 1), metric=metric)


class GapCAM(CAMExplainer):
    def weights(self, A, G):
        return G.mean(dim=(2, 3))


def test_gradient_at_layer_matches_closed_form():
    adapter = toy_adapter()
    x = torch.rand(4, 3, 6, 6)
    labels = torch.tensor([0, 1, 2, 1])
    sig = layer_signals(adapter, x, ClassTarget(labels), ["conv"])
    A = adapter.model.conv(x).detach()
    W = adapter.model.fc.weight.detach()
    expected = W[labels][:, :, None, None] / 36.0 * (A > 0).float()
    assert torch.allclose(sig.activations[0], A)  # not overwritten by the in-place ReLU
    assert torch.allclose(sig.gradients[0], expected, atol=1e-7)
    assert torch.allclose(sig.scores, adapter(x).gather(1, labels[:, None])[:, 0])


def test_cam_explainer_combines_relus_and_upsamples():
    adapter = toy_adapter(1)
    x = torch.rand(2, 3, 6, 6)
    labels = torch.tensor([2, 0])
    maps = GapCAM(adapter)(x, ClassTarget(labels))
    A = adapter.model.conv(x).detach()
    W = adapter.model.fc.weight.detach()
    G = W[labels][:, :, None, None] / 36.0 * (A > 0).float()
    hand = torch.relu((G.mean(dim=(2, 3))[:, :, None, None] * A).sum(1))
    assert maps.shape == (2, 6, 6) and maps.dtype == torch.float32
    assert torch.allclose(maps, hand, atol=1e-7)
    big = torch.rand(2, 3, 12, 12)
    assert GapCAM(adapter)(big, ClassTarget(labels)).shape == (2, 12, 12)


def test_batched_equals_one_image_at_a_time():
    adapter = toy_adapter(2)
    x = torch.rand(5, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 0, 1])
    batched = GapCAM(adapter)(x, ClassTarget(labels))
    single = torch.cat([GapCAM(adapter)(x[i : i + 1], ClassTarget(labels[i : i + 1])) for i in range(5)])
    assert torch.allclose(batched, single, atol=1e-6)


def test_no_parameter_gradients_and_requires_grad_restored():
    adapter = toy_adapter()
    before = [p.requires_grad for p in adapter.parameters()]
    GapCAM(adapter)(torch.rand(2, 3, 6, 6), ClassTarget([0, 1]))
    assert all(p.grad is None for p in adapter.parameters())
    assert [p.requires_grad for p in adapter.parameters()] == before


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_hooks_removed_on_success_and_on_error():
    adapter = toy_adapter()
    GapCAM(adapter)(torch.rand(2, 3, 6, 6), ClassTarget([0, 1]))
    assert _hook_count(adapter) == 0
    with pytest.raises(IndexError):
        GapCAM(adapter)(torch.rand(2, 3, 6, 6), ClassTarget([0, 7]))
    assert _hook_count(adapter) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with capture({"conv": adapter.model.conv}):
            raise RuntimeError("boom")
    assert _hook_count(adapter) == 0


def test_several_layers_at_once_give_the_same_gradients():
    adapter = toy_adapter(3)
    x = torch.rand(3, 3, 6, 6)
    target = ClassTarget([0, 1, 2])
    alone = layer_signals(adapter, x, target, ["conv"]).gradients[0]
    both = layer_signals(adapter, x, target, ["conv", "act"]).gradients
    assert torch.allclose(both[0], alone)
    W = adapter.model.fc.weight.detach()
    assert torch.allclose(both[1], W[[0, 1, 2]][:, :, None, None].expand_as(both[1]) / 36.0)


def test_wrong_layer_name_lists_nearest():
    adapter = toy_adapter()
    with pytest.raises(LayerNotFoundError, match="no layer 'cnov'.*'conv'"):
        GapCAM(adapter, layer="cnov")


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.rand(3, 6, 6), r"\(B, 3, H, W\).*images\[None\]"),
        (torch.rand(2, 1, 6, 6), r"\(B, 3, H, W\) batch, got shape \(2, 1, 6, 6\)"),
        (torch.full((2, 3, 6, 6), float("nan")), "NaN"),
        ((torch.rand(2, 3, 6, 6) * 255).to(torch.uint8), "divide uint8 images by 255"),
    ],
)
def test_bad_images_are_explained(images, message):
    with pytest.raises((ValueError, TypeError), match=message):
        GapCAM(toy_adapter())(images, ClassTarget([0, 1][: images.shape[0] if images.dim() == 4 else 1]))


def test_target_count_and_class_range():
    adapter = toy_adapter()
    with pytest.raises(ValueError, match="3 targets for 2 images"):
        GapCAM(adapter)(torch.rand(2, 3, 6, 6), ClassTarget([0, 1, 2]))
    with pytest.raises(IndexError, match="class 5 is out of range for a model with 3 classes"):
        GapCAM(adapter)(torch.rand(2, 3, 6, 6), ClassTarget([0, 5]))


def test_nan_activations_name_the_layer():
    adapter = toy_adapter()
    with torch.no_grad():
        adapter.model.conv.bias[0] = float("nan")
    with pytest.raises(FloatingPointError, match="layer 'conv'"):
        GapCAM(adapter)(torch.rand(2, 3, 6, 6), ClassTarget([0, 1]))


def test_similarity_target_values_and_index():
    f = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    r = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    cos = SimilarityTarget(r, "cosine")(f)
    assert torch.allclose(cos, torch.tensor([0.0, 9.0 / 15.0]))
    euc = SimilarityTarget(r, "euclidean")(f)
    assert torch.allclose(euc, torch.tensor([-5.0, -16.0]))
    picked = SimilarityTarget(r, "euclidean")(f[[1, 1]], index=torch.tensor([0, 1]))
    assert torch.allclose(picked, torch.tensor([-(9.0 + 4.0), -16.0]))
    with pytest.raises(ValueError, match="do not match the reference"):
        SimilarityTarget(r)(torch.rand(2, 3))


def test_gradient_method_explains_an_embedding_model():
    adapter = toy_adapter(4, task="embedding", metric="cosine")
    x = torch.rand(2, 3, 6, 6)
    with torch.no_grad():
        ref = adapter(torch.rand(2, 3, 6, 6))
    maps = GapCAM(adapter)(x, SimilarityTarget(ref, "cosine"))
    assert maps.shape == (2, 6, 6) and torch.isfinite(maps).all()


def test_class_target_probability_is_softmax():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    p = ClassTarget([2]).probability(logits)
    assert torch.allclose(p, torch.softmax(logits, 1)[:, 2])


def test_vit_tokens_to_grid_drop_prefix_and_lay_out_row_major():
    adapter = toy_adapter()
    adapter.num_prefix_tokens = 1
    tokens = torch.zeros(1, 1 + 6, 2)
    tokens[0, 1:, 0] = torch.arange(6.0)  # channel 0 holds the patch index
    tokens[0, 0, :] = -1.0  # class token, must disappear
    with pytest.raises(ValueError, match="square grid"):
        adapter.to_grid(tokens)
    tokens = torch.zeros(1, 1 + 4, 2)
    tokens[0, 1:, 0] = torch.arange(4.0)
    grid = adapter.to_grid(tokens)
    assert grid.shape == (1, 2, 2, 2)
    assert grid[0, 0].tolist() == [[0.0, 1.0], [2.0, 3.0]]


def test_upsample_and_normalise():
    m = torch.tensor([[[0.0, 2.0], [4.0, 6.0]]])
    up = upsample(m, (4, 4))
    assert torch.allclose(up, F.interpolate(m[:, None], size=(4, 4), mode="bilinear", align_corners=False)[:, 0])
    n = normalize_maps(m)
    assert n.min() == 0 and n.max() == 1 and torch.allclose(n[0, 1, 0], torch.tensor(2 / 3))
    assert torch.equal(normalize_maps(torch.ones(1, 2, 2)), torch.zeros(1, 2, 2))


def test_registry_builds_and_rejects_unknown():
    register_method("toy_gapcam_for_tests")(GapCAM)
    spec = get_method("toy_gapcam_for_tests")
    assert isinstance(spec.build(toy_adapter()), GapCAM)
    with pytest.raises(KeyError, match="unknown method 'toy_gapcam_for_test'.*toy_gapcam_for_tests"):
        get_method("toy_gapcam_for_test")
