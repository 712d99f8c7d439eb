"""Grad-CAM and Guided Grad-CAM against independent computations.

Toy network: A = ReLU(conv(x)) (explained layer "act"), y = W · mean_u A(u) + b. Then
∂y_c/∂A_k(u) = W_ck / (h·w) exactly, so Grad-CAM's map is ReLU(Σ_k W_ck A_k / (h·w)) in
closed form. Guided back-propagation is checked against a hand-written backward pass
(transposed convolutions with the guided gate), and on timm networks against a model whose
ReLUs were *replaced* by a guided ReLU module — a different mechanism from our hooks.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import shared.models  # noqa: F401  (registers our small timm models)
from papers.gradcam.method import GradCAM, GuidedGradCAM, guided_backprop, guided_relus
from shared.explain import ClassTarget, SimilarityTarget, build_explainer
from shared.models import build
from shared.models.adapter import ModelAdapter


class GapNet(nn.Module):
    """conv → ReLU → GAP → linear (or the GAP embedding itself when classes == 0)."""

    def __init__(self, channels: int = 6, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(channels, classes) if classes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


class TwoConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 5, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(5, 4, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.relu2(self.conv2(self.relu1(self.conv1(x)))).mean(dim=(2, 3)))


def adapter_for(model: nn.Module, layer: str, task: str = "classifier", metric: str | None = None) -> ModelAdapter:
    # .eval() on the adapter itself: shared.explain.frozen restores the *adapter's* mode on exit
    adapter = ModelAdapter(model, "cnn", task, layer, mean=(0, 0, 0), std=(1, 1, 1), metric=metric)
    return adapter.eval()


def test_gradcam_matches_closed_form_on_gap_network():
    adapter = adapter_for(GapNet(), "act")
    x = torch.rand(3, 3, 7, 7)
    labels = torch.tensor([0, 3, 1])
    maps = GradCAM(adapter)(x, ClassTarget(labels))
    A = F.relu(adapter.model.conv(x)).detach()
    W = adapter.model.fc.weight.detach()
    expected = F.relu(torch.einsum("bk,bkhw->bhw", W[labels] / 49.0, A))
    assert torch.allclose(maps, expected, atol=1e-7, rtol=1e-5)
    assert maps.abs().max() > 0  # a non-trivial case


def test_gradcam_cosine_similarity_closed_form():
    # f = mean_u A(u); s = cos(f, r); ∂s/∂f = r/(|f||r|) - s f/|f|^2; ∂f/∂A_k(u) = 1/(hw).
    adapter = adapter_for(GapNet(classes=0), "act", task="embedding", metric="cosine")
    x = torch.rand(2, 3, 5, 5)
    ref = torch.randn(2, 6)
    maps = GradCAM(adapter)(x, SimilarityTarget(ref, "cosine"))
    A = F.relu(adapter.model.conv(x)).detach()
    f = A.mean(dim=(2, 3))
    s = F.cosine_similarity(f, ref)
    ds_df = ref / (f.norm(dim=1, keepdim=True) * ref.norm(dim=1, keepdim=True)) - s[:, None] * f / f.norm(dim=1, keepdim=True) ** 2
    expected = F.relu(torch.einsum("bk,bkhw->bhw", ds_df / 25.0, A))
    assert torch.allclose(maps, expected, atol=1e-6)


def test_gradcam_upsamples_bilinearly_from_a_strided_layer():
    model = GapNet()
    model.conv.stride = (2, 2)
    adapter = adapter_for(model, "act")
    x = torch.rand(2, 3, 8, 8)
    maps = GradCAM(adapter)(x, ClassTarget([1, 2]))
    A = F.relu(model.conv(x)).detach()  # (2, C, 4, 4)
    small = F.relu(torch.einsum("bk,bkhw->bhw", model.fc.weight.detach()[[1, 2]] / 16.0, A))
    expected = F.interpolate(small[:, None], size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    assert maps.shape == (2, 8, 8)
    assert torch.allclose(maps, expected, atol=1e-7)


def manual_guided_backprop(model: TwoConvNet, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Guided back-propagation written out: each ReLU passes max(g, 0) where its input is > 0."""
    with torch.no_grad():
        z1 = model.conv1(x)
        a1 = F.relu(z1)
        z2 = model.conv2(a1)
        h, w = z2.shape[-2:]
        d_a2 = (model.fc.weight[labels] / (h * w))[:, :, None, None].expand_as(z2)
        d_z2 = (z2 > 0) * d_a2.clamp_min(0)
        d_a1 = F.conv_transpose2d(d_z2, model.conv2.weight, padding=1)
        d_z1 = (z1 > 0) * d_a1.clamp_min(0)
        return F.conv_transpose2d(d_z1, model.conv1.weight, padding=1)


def test_guided_backprop_matches_hand_written_backward():
    model = TwoConvNet()
    adapter = adapter_for(model, "relu2")
    x = torch.rand(3, 3, 6, 6)
    labels = torch.tensor([0, 2, 1])
    got = guided_backprop(adapter, x, ClassTarget(labels))
    expected = manual_guided_backprop(model, x, labels)
    assert got.abs().max() > 0
    assert torch.allclose(got, expected, atol=1e-7)
    # and it differs from the plain gradient (the gate is not a no-op here)
    xg = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model(xg).gather(1, labels[:, None]).sum(), xg)
    assert not torch.allclose(plain, got)


def test_guided_gradcam_is_product_of_guided_backprop_and_gradcam():
    adapter = adapter_for(TwoConvNet(), "relu2")
    x = torch.rand(2, 3, 6, 6)
    labels = torch.tensor([1, 0])
    explainer = GuidedGradCAM(adapter)
    colour = explainer.colour(x, ClassTarget(labels))
    expected = manual_guided_backprop(adapter.model, x, labels) * GradCAM(adapter)(x, ClassTarget(labels))[:, None]
    assert torch.allclose(colour, expected, atol=1e-8)
    assert torch.allclose(explainer(x, ClassTarget(labels)), expected.abs().amax(dim=1), atol=1e-8)


class _GuidedReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return (x > 0) * g.clamp_min(0)


class _GuidedReLU(nn.Module):
    def forward(self, x):
        return _GuidedReLUFn.apply(x)


def _replace_relus(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU):
            setattr(module, name, _GuidedReLU())
        else:
            _replace_relus(child)


@pytest.mark.parametrize("arch", ["resnet18", "vgg_small"])
def test_guided_backprop_on_timm_equals_relu_replacement(arch):
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=5).eval()  # resnet18: ReLU(inplace=True)
    adapter = adapter_for(model, "layer4" if arch == "resnet18" else "features.14")
    x = torch.rand(2, 3, 32, 32)
    labels = torch.tensor([0, 4])
    got = guided_backprop(adapter, x, ClassTarget(labels))
    replaced = copy.deepcopy(model)
    _replace_relus(replaced)
    xg = x.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(replaced(xg).gather(1, labels[:, None]).sum(), xg)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-4)
    # hooks are gone afterwards: the plain gradient is back
    assert all(not r._forward_hooks for r in model.modules() if isinstance(r, nn.ReLU))
    assert all(p.grad is None for p in model.parameters())


def test_guided_hooks_removed_on_error():
    model = TwoConvNet()
    with pytest.raises(RuntimeError):
        with guided_relus(model):
            raise RuntimeError("boom")
    assert all(not r._forward_hooks for r in model.modules() if isinstance(r, nn.ReLU))


def test_batched_equals_per_image_on_resnet_small():
    torch.manual_seed(0)
    adapter = build("resnet_small", {"arch": "resnet_small"}, [str(i) for i in range(8)]).explain_mode()
    x = torch.rand(4, 3, 64, 64)
    labels = torch.tensor([0, 3, 5, 7])
    for name in ("gradcam", "guided_gradcam"):
        explainer = build_explainer(name, adapter)
        batched = explainer(x, ClassTarget(labels))
        single = torch.cat([explainer(x[i : i + 1], ClassTarget(labels[i : i + 1])) for i in range(4)])
        assert torch.allclose(batched, single, atol=1e-6 * float(batched.abs().max()) + 1e-12), name


def test_gradcam_on_vit_tokens_matches_manual_grid():
    torch.manual_seed(0)
    adapter = build("vit", {"arch": "vit_small_shapes"}, [str(i) for i in range(8)]).explain_mode()
    x = torch.rand(2, 3, 64, 64)
    labels = torch.tensor([2, 6])
    maps = GradCAM(adapter)(x, ClassTarget(labels))
    # Independent: hook the layer ourselves, drop the class token, lay the 64 tokens on 8×8.
    store = {}
    layer = adapter.model.blocks[-1].norm1
    # the parameters are frozen (explain_mode): make the tokens a leaf we can differentiate
    handle = layer.register_forward_hook(lambda m, i, o: store.setdefault("t", o.detach().requires_grad_(True)))
    try:
        logits = adapter(x)
    finally:
        handle.remove()
    tokens = store["t"]
    (g,) = torch.autograd.grad(logits.gather(1, labels[:, None]).sum(), tokens)
    A = tokens.detach()[:, 1:].reshape(2, 8, 8, -1).permute(0, 3, 1, 2)
    G = g[:, 1:].reshape(2, 8, 8, -1).permute(0, 3, 1, 2)
    small = F.relu((G.mean(dim=(2, 3))[:, :, None, None] * A).sum(1))
    expected = F.interpolate(small[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    assert maps.abs().max() > 0
    assert torch.allclose(maps, expected, atol=1e-6, rtol=1e-4)


def test_guided_gradcam_refuses_vit_and_non_relu_cnn():
    torch.manual_seed(0)
    vit = build("vit", {"arch": "vit_small_shapes"}, [str(i) for i in range(8)])
    with pytest.raises(ValueError, match="not defined for vision transformers"):
        GuidedGradCAM(vit)
    model = GapNet()
    model.act = nn.SiLU()
    with pytest.raises(ValueError, match="ReLU networks only.*SiLU"):
        GuidedGradCAM(adapter_for(model, "act"))


def test_gradcam_needs_a_target_and_one_per_image():
    adapter = adapter_for(GapNet(), "act")
    x = torch.rand(2, 3, 5, 5)
    with pytest.raises(ValueError, match="needs a target"):
        GradCAM(adapter)(x, None)
    with pytest.raises(ValueError, match="one target per image"):
        GradCAM(adapter)(x, ClassTarget([0]))


# ---------------------------------------------------------------- figure computations (papers/gradcam/figures.py)

from papers.gradcam.figures import object_mass_shares, pair_partners, randomisation_layers  # noqa: E402
from shared.plotting import undefined_as_zero  # noqa: E402


def test_object_mass_shares_hand_computed():
    # 2×3 map: positive mass 1 + 2 + 3 + 4 = 10 (the -5 is clipped); own object = {1, 2}, other = {4}
    maps = torch.tensor([[[1.0, 2.0, -5.0], [3.0, 4.0, 0.0]]])
    own = torch.tensor([[[True, True, False], [False, False, False]]])
    other = torch.tensor([[[False, False, False], [False, True, False]]])
    on, off = object_mass_shares(maps, own, other)
    assert on.tolist() == pytest.approx([3 / 10])
    assert off.tolist() == pytest.approx([4 / 10])
    # an all-negative map has no positive mass: 0, 0 (not NaN)
    on0, off0 = object_mass_shares(-maps.abs() - 1, own, other)
    assert on0.tolist() == [0.0] and off0.tolist() == [0.0]
    with pytest.raises(ValueError, match="same shape"):
        object_mass_shares(maps, own[:, :1], other)


def test_object_mass_shares_batched_equals_per_image():
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(5, 6, 7, generator=g)
    own = torch.rand(5, 6, 7, generator=g) > 0.6
    other = ~own & (torch.rand(5, 6, 7, generator=g) > 0.5)
    on, off = object_mass_shares(maps, own, other)
    for i in range(5):
        a, b = object_mass_shares(maps[i : i + 1], own[i : i + 1], other[i : i + 1])
        pos = maps[i].clamp_min(0)
        assert float(a) == pytest.approx(float(pos[own[i]].sum() / pos.sum()))
        assert float(on[i]) == pytest.approx(float(a)) and float(off[i]) == pytest.approx(float(b))


def test_pair_partners_and_bad_pairs():
    assert pair_partners(["a", "a", "b", "b"]).tolist() == [1, 0, 3, 2]
    assert pair_partners(["a", "b", "a", "b"]).tolist() == [2, 3, 0, 1]
    with pytest.raises(ValueError, match="exactly two objects"):
        pair_partners(["a", "a", "b"])


def test_randomisation_layers_from_the_output_down():
    adapter = adapter_for(TwoConvNet(), "relu2")
    assert randomisation_layers(adapter) == ["model.fc", "model.conv2", "model.conv1"]  # ReLUs have no parameters


def test_undefined_correlation_counts_as_zero():
    values, flags = undefined_as_zero(torch.tensor([0.5, float("nan"), -0.2], dtype=torch.float64))
    assert values.tolist() == [0.5, 0.0, -0.2] and flags.tolist() == [0.0, 1.0, 0.0]


def test_pair_images_get_labels_in_the_classifiers_indexing_or_a_clear_error(tmp_path):
    from papers.gradcam.figures import load_pairs
    from shared.data import load_split
    from shared.data.generate import generate

    root = generate("shapes_pair", {"image_size": 32, "n_test": 6, "seed": 2, "n_classes": 3}, tmp_path / "pairs")
    names = load_split(root, "test").classes
    # the classifier lists the classes in another order: labels must follow the classifier
    order = list(reversed(names))
    model = timm.create_model("resnet18", pretrained=False, num_classes=len(order)).eval()
    adapter = ModelAdapter(model, "cnn", "classifier", "layer4", classes=order)
    pairs = load_pairs(adapter, str(root), 12, torch.device("cpu"))
    assert [order[i] for i in pairs["labels"].tolist()] == pairs["class_names"]
    assert len(pairs["class_names"]) > 0
    # 1000 logits but three names (an ImageNet classifier): matching by name would be wrong
    wide = ModelAdapter(timm.create_model("resnet18", pretrained=False, num_classes=1000).eval(), "cnn", "classifier", "layer4", classes=order)
    with pytest.raises(ValueError, match="1000 outputs but 3 class names"):
        load_pairs(wide, str(root), 12, torch.device("cpu"))
