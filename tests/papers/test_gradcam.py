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


# ---------------------------------------------------------------- ImageNet classifiers on VOC-like pairs data; the pointing game

from shared.data.convert import VOC_CLASSES  # noqa: E402


def box_mask(size: int, x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


VOC_LIKE = {  # image id -> objects (class, box x0 y0 x1 y1) on 32 x 32 images
    "000001": [("cat", (2, 2, 10, 12)), ("dog", (12, 0, 32, 20))],  # two mapped classes: a pair (dog: 39 % of the image)
    "000002": [("cat", (2, 2, 10, 12)), ("person", (12, 0, 32, 32))],  # a person: unmapped
    "000003": [("dog", (4, 4, 28, 28))],  # one class
    "000004": [("dog", (0, 0, 6, 6)), ("car", (10, 10, 20, 20)), ("dog", (24, 24, 30, 30))],  # two classes, dog twice
    "000005": [("cat", (0, 0, 8, 8)), ("dog", (10, 10, 16, 16)), ("car", (20, 20, 30, 30))],  # three classes
}


def voc_like_dataset(root, pascal_difficult=None, original_sizes=None):
    """A VOC-like test split (VOC's class list, boxes as masks) in the common layout."""
    import numpy as np

    from shared.data.layout import DatasetWriter

    rng = np.random.default_rng(0)
    extra = {"pascal_difficult": pascal_difficult or {}}
    if original_sizes is not None:
        extra["original_sizes"] = original_sizes
    with DatasetWriter(root, "vocish", "voc2007", list(VOC_CLASSES), (32, 32), extra_meta=extra) as writer:
        for image_id, objects in VOC_LIKE.items():
            image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
            writer.add_image("test", image_id, image, [
                {"mask": box_mask(32, *box).numpy(), "label": VOC_CLASSES.index(name), "class_name": name} for name, box in objects
            ])
        return writer.commit()


def imagenet_adapter(biases: dict[int, float]) -> ModelAdapter:
    """A tiny 1000-logit classifier whose logits are constant biases (the mapped targets are known)."""
    model = GapNet(channels=4, classes=1000)
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()
        for index, value in biases.items():
            model.fc.bias[index] = value
    model.num_classes = 1000  # as timm's classifiers say
    adapter = ModelAdapter(model, "cnn", "classifier", "act", mean=(0, 0, 0), std=(1, 1, 1), classes=["tench", "English springer"])
    return adapter.eval()


CAT_DOG_CAR = {281: 1.0, 282: 2.0, 242: 3.0, 151: 1.0, 817: 1.5, 0: 9.0}  # tiger cat, boxer, sports car (tench scores highest)


def test_label_space_from_the_checkpoints_dataset_or_the_logits(tmp_path):
    import json

    from papers.gradcam.figures import classifier_label_space

    wide = imagenet_adapter({})
    assert classifier_label_space(wide) == "imagenet-1k"  # 1000 logits, 2 names
    narrow = adapter_for(GapNet(classes=3), "act")
    narrow.model.num_classes = 3
    narrow.classes = ["a", "b", "c"]
    assert classifier_label_space(narrow) is None  # class names index the logits
    # the checkpoint's dataset says so (Imagenette's meta.json: label_space imagenet-1k)
    data = tmp_path / "nette"
    data.mkdir()
    (data / "meta.json").write_text(json.dumps({"name": "nette", "label_space": "imagenet-1k"}))
    sidecar = tmp_path / "m.json"
    sidecar.write_text(json.dumps({"name": "m", "model": {}, "adapter": {}, "weights": {}, "metrics": {}, "classes": [],
                                   "format": __import__("shared.models.checkpoint", fromlist=["SIDECAR_FORMAT"]).SIDECAR_FORMAT,
                                   "dataset": {"name": "nette", "path": str(data)}}))
    assert classifier_label_space(narrow, tmp_path / "m.safetensors") == "imagenet-1k"


def test_mapped_pairs_keep_images_of_exactly_two_mapped_classes(tmp_path):
    from papers.gradcam.figures import load_pairs

    root = voc_like_dataset(tmp_path / "voc")
    adapter = imagenet_adapter(CAT_DOG_CAR)
    pairs = load_pairs(adapter, str(root), 10, torch.device("cpu"), batch_size=2)
    assert pairs["selection"] == {
        "scanned": 5, "kept": 2, "left_out": {"an object of an unmapped class": 1, "not exactly two mapped classes": 2},
    }
    assert pairs["class_names"] == ["cat", "dog", "dog", "car"]
    # each class at its best ImageNet class on the image (tench scores highest but is no cat/dog/car)
    assert pairs["labels"].tolist() == [282, 242, 242, 817]
    assert pairs["target_names"] == ["tiger cat", "boxer", "boxer", "sports car"]
    assert pairs["partner"].tolist() == [1, 0, 3, 2]
    # a class's mask is the union of its boxes; the other mask is the other class's
    dogs = box_mask(32, 0, 0, 6, 6) | box_mask(32, 24, 24, 30, 30)
    assert torch.equal(pairs["masks"][2], dogs) and torch.equal(pairs["other_masks"][3], dogs)
    assert torch.equal(pairs["other_masks"][2], box_mask(32, 10, 10, 20, 20))
    assert torch.equal(pairs["images"][0], pairs["images"][1])
    # n_images counts kept images: one image is the first pair, found after scanning one image
    first = load_pairs(adapter, str(root), 1, torch.device("cpu"), label_space="imagenet-1k")
    assert first["selection"]["kept"] == 1 and first["selection"]["scanned"] == 1 and first["class_names"] == ["cat", "dog"]


def test_an_imagenet_classifier_on_non_voc_pairs_is_refused(tmp_path):
    from papers.gradcam.figures import load_pairs
    from shared.data.generate import generate

    root = generate("shapes_pair", {"image_size": 32, "n_test": 4, "seed": 2, "n_classes": 3}, tmp_path / "pairs")
    with pytest.raises(ValueError, match="1000 outputs but 2 class names.*not VOC classes"):
        load_pairs(imagenet_adapter({}), str(root), 4, torch.device("cpu"))


def test_pointing_hit_rule_hand_computed():
    """TorchRay's rule: the map's maximum is a hit when a mask pixel is *strictly* closer than the
    tolerance (pointing_game.py line 82, ``(v + u) < tolerance**2``), distances in pixels of the
    original image (our pixel's size given per map)."""
    from shared.metrics import pointing_hits

    mask = box_mask(32, 20, 10, 25, 15)  # x 20..24, y 10..14

    def peak(y: int, x: int) -> torch.Tensor:
        m = torch.zeros(32, 32)
        m[y, x] = 1.0
        return m

    def hit(y: int, x: int, size=(1.0, 1.0)) -> float:
        return float(pointing_hits(peak(y, x)[None], mask[None], 15, torch.tensor([size]))[0])

    # our pixels are the original's: 14 px left of the box is in, 15 px (the tolerance itself) is out
    assert hit(12, 6) == 1.0 and hit(12, 5) == 0.0
    assert hit(12, 22) == 1.0  # on the object
    # diagonal from the corner (y 10, x 20): (9, 12) -> exactly 15 px: out; (9, 11) -> 14.2 px: in
    assert hit(1, 8) == 0.0 and hit(1, 9) == 1.0
    # a 160 x 160 original shown at 32 px: one of our pixels is 5 of its; 2 px = 10 in, 3 px = 15 out
    assert hit(12, 18, (5.0, 5.0)) == 1.0 and hit(12, 17, (5.0, 5.0)) == 0.0
    # a non-square original (H0 = 80, W0 = 240 at 32 x 32): 5 px above the box = 12.5 px in, 2 px left = 15 out
    assert hit(5, 22, (2.5, 7.5)) == 1.0 and hit(12, 18, (2.5, 7.5)) == 0.0
    # batched == one by one; a flat map points at (0, 0) (torch.argmax: the first maximum), an empty mask misses
    maps = torch.stack([peak(12, 6), peak(12, 5), torch.zeros(32, 32), peak(3, 3)])
    masks = torch.stack([mask, mask, box_mask(32, 0, 0, 2, 2), torch.zeros(32, 32, dtype=torch.bool)])
    assert pointing_hits(maps, masks, 15).tolist() == [1.0, 0.0, 1.0, 0.0]


def test_default_tolerance_scaling_and_difficult_subset():
    from papers.gradcam.figures import ClassRows, ebp_difficult, pixel_sizes

    masks = torch.zeros(5, 64, 64, dtype=torch.bool)
    masks[0, :31, :32] = True  # 992 / 4096 = 0.242 < 1/4, another class present: difficult
    masks[1, :32, :32] = True  # exactly 1/4: not less
    masks[2, :8, :8] = True  # small, but the image's only class: no distractor
    masks[3, :8, :8] = True
    masks[4, :40, :40] = True
    rows = ClassRows(
        images=torch.zeros(3, 3, 64, 64), image_index=torch.tensor([0, 0, 1, 2, 2]), image_ids=["a", "a", "b", "c", "c"],
        class_names=["dog", "cat", "dog", "cat", "car"], masks=masks, n_classes=torch.tensor([2, 2, 1, 2, 2]),
        all_difficult=torch.zeros(5, dtype=torch.bool),
    )
    assert ebp_difficult(rows).tolist() == [True, False, False, True, False]
    # no original size recorded: the image counts as a VOC image of longer side 500 (15 px -> 1.92 of our 64)
    sizes = pixel_sizes(rows, None)
    assert sizes[0].tolist() == [500 / 64, 500 / 64]
    assert 15 / float(sizes[0, 0]) == pytest.approx(1.92)
    # a recorded original (H0, W0) = (375, 500) scales each axis by its own factor
    assert pixel_sizes(rows, {"b": [375, 500]})[2].tolist() == [375 / 64, 500 / 64]


def test_pointing_rows_of_a_voc_like_split_for_an_imagenet_classifier(tmp_path):
    from papers.gradcam.figures import load_pointing, pointing_game_hits
    from shared.metrics import pointing_hits

    # 000003's only dog is PASCAL-difficult (left out, as TorchRay); one of 000004's two dogs is (kept)
    root = voc_like_dataset(tmp_path / "voc", pascal_difficult={"000003": [0], "000004": [2]}, original_sizes={"000001": [375, 500]})
    adapter = imagenet_adapter(CAT_DOG_CAR)
    game = load_pointing(adapter, str(root), 5, torch.device("cpu"), "imagenet-1k", batch_size=3)
    assert game.left_out == {"a class the classifier cannot explain": 1, "every box of the class PASCAL-difficult": 1}
    assert game.n_images == 5 and game.space == "imagenet-1k"
    rows = game.rows
    assert list(zip(rows.image_ids, rows.class_names)) == [
        ("000001", "cat"), ("000001", "dog"), ("000002", "cat"), ("000004", "dog"), ("000004", "car"),
        ("000005", "cat"), ("000005", "dog"), ("000005", "car"),
    ]
    assert game.targets.tolist() == [282, 242, 282, 242, 817, 282, 242, 817]
    assert rows.images.shape[0] == 4 and rows.image_index.tolist() == [0, 0, 1, 2, 2, 3, 3, 3]  # each image once
    assert torch.equal(rows.masks[3], box_mask(32, 0, 0, 6, 6) | box_mask(32, 24, 24, 30, 30))  # both dogs
    # difficult (Zhang et al.): class area < 1/4 and another class in the image (the person counts)
    assert game.difficult.tolist() == [True, False, True, True, True, True, True, True]
    assert game.pixel_size[0].tolist() == [375 / 32, 500 / 32] and game.pixel_size[2].tolist() == [500 / 32, 500 / 32]
    # batched explanation == each row on its own, scored with the same rule
    hits = pointing_game_hits(adapter, "gradcam", game, 3, torch.device("cpu"))
    explain = build_explainer("gradcam", adapter)
    for r in range(len(rows)):
        maps = explain(rows.images[rows.image_index[r : r + 1]], ClassTarget(game.targets[r : r + 1]))
        assert float(hits[r]) == float(pointing_hits(maps, rows.masks[r : r + 1], 15, game.pixel_size[r : r + 1])[0])


def test_class_mean_accuracy_is_torchrays_mean_over_classes():
    from papers.gradcam.figures import class_mean_accuracy

    nan = float("nan")
    mean, per_class = class_mean_accuracy(torch.tensor([1.0, 0.0, 1.0, 1.0, nan]), ["dog", "dog", "cat", "cat", "car"])
    assert per_class == {"cat": [2, 2], "dog": [1, 2]} and mean == pytest.approx((0.5 + 1.0) / 2)


def tiny_checkpoint(tmp_path, name: str, classes: list[str], num_classes: int | None = None):
    from shared.models import build_adapter, save_checkpoint
    from shared.models.checkpoint import adapter_record

    spec = {"arch": "vgg_small", "task": "classifier", "arch_kwargs": {"cfg": [8, "M", 16, "M", 16]}}
    if num_classes is not None:
        spec["num_classes"] = num_classes
    torch.manual_seed(0)
    adapter = build_adapter(name, spec, classes)
    ckpt = tmp_path / f"{name}.safetensors"
    save_checkpoint(ckpt, adapter.model, {
        "name": name, "model": spec, "metrics": {}, "primary_metric": "test_accuracy", "gate": 0.0, "classes": classes,
        "seed": 0, "dataset": {"name": "tiny", "content_hash": "0" * 64}, "adapter": adapter_record(adapter), "training": {},
    })
    return ckpt


@pytest.mark.parametrize("space", ["class names", "imagenet-1k"])
def test_pairs_and_pointing_steps_write_records_and_tables(tmp_path, space):
    """Both steps end to end: a classifier of the pairs data's classes on two-object images, and a
    1000-logit classifier on VOC-like images through the mapping (what was left out is in the caption)."""
    import json

    from papers.gradcam.figures import STEPS
    from shared.data import load_split
    from shared.data.generate import generate
    from shared.figure_step import step_main

    if space == "class names":
        data = generate("shapes_pair", {"image_size": 32, "n_test": 4, "seed": 2, "n_classes": 3}, tmp_path / "pairs")
        ckpt = tiny_checkpoint(tmp_path, "tiny", load_split(data, "test").classes)
    else:
        data = voc_like_dataset(tmp_path / "voc", pascal_difficult={"000003": [0]})
        ckpt = tiny_checkpoint(tmp_path, "tiny", ["tench", "English springer"], num_classes=1000)
    cfg = json.dumps({"seed": 0, "device": "cpu", "threads": 2, "deterministic": True,
                      "eval": {"n_images": 5, "batch_size": 3, "bootstrap": 20, "ci": 0.95}})
    common = ["--models", str(ckpt), "--datasets", str(data), "--maps-dir", str(tmp_path / "maps"), "--config-json", cfg,
              "--methods", "gradcam", "eigencam"]
    out = tmp_path / "out"
    assert step_main(STEPS, argv=["pointing", "--out", f"records={out / 'pointing.json'}", f"table={out / 'pointing.md'}", *common]) == 0
    records = json.loads((out / "pointing.json").read_text())
    assert {(r["metric"], r["method"]) for r in records} == {
        (metric, m) for metric in ("pointing_game_all", "pointing_game_difficult") for m in ("gradcam", "eigencam")
    }
    by = {(r["metric"], r["method"]): r for r in records}
    every, hard = by["pointing_game_all", "gradcam"], by["pointing_game_difficult", "gradcam"]
    assert set(every["extra"]["per_image"]) <= {0.0, 1.0}
    assert len(hard["extra"]["per_image"]) == len(every["extra"]["per_image"]) == every["n"]
    assert hard["extra"]["excluded"] == sum(v is None for v in hard["extra"]["per_image"])  # rows outside the subset: NaN
    assert hard["n"] == every["n"] - hard["extra"]["excluded"]
    assert every["extra"]["label_space"] == space and "class_mean" in every["extra"]
    caption = (out / "pointing.md").read_text()
    if space == "class names":
        assert every["n"] == 8  # 4 pair images, two classes each, nothing left out
        assert every["extra"]["left_out"] == {"a class the classifier cannot explain": 0, "every box of the class PASCAL-difficult": 0}
    else:
        assert every["n"] == 8 and "rows left out: 1 (a class the classifier cannot explain), 1 (every box" in caption
        assert every["extra"]["left_out"]["every box of the class PASCAL-difficult"] == 1
    figure = out / "pairs.png"
    assert step_main(STEPS, argv=["pairs", "--out", f"records={out / 'pairs.json'}", f"table={out / 'pairs.md'}", f"figure={figure}", *common]) == 0
    pairs_records = json.loads((out / "pairs.json").read_text())
    assert figure.is_file() and {r["metric"] for r in pairs_records} == {"mass_on_object", "mass_on_other", "mass_object_minus_other"}
    if space == "imagenet-1k":
        assert all(r["n"] == 4 and r["extra"]["selection"]["kept"] == 2 for r in pairs_records)
        assert "2 of the first 5 images kept" in (out / "pairs.md").read_text()
    else:
        assert all("selection" not in r["extra"] for r in pairs_records)
