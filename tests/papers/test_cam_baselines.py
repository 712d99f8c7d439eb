"""The CAM-family baselines (Score-CAM, LayerCAM, XGrad-CAM, HiResCAM, Ablation-CAM) against
independent computations.

* pytorch-grad-cam 1.5.7 at its conventions, on a toy CNN whose explained layer has the input's
  resolution: every upsampling / resize is then the identity on both sides (pytorch-grad-cam
  resizes with ``UpsamplingBilinear2d`` = align_corners=True and cv2, we with
  align_corners=False: README.md of each paper), and its maps are min-max normalised
  (``scale_cam_image``, 1e-7 in the denominator), so ours are normalised the same way.
* hand-written references (the authors' Score-CAM loop, a per-channel Ablation-CAM forward,
  LayerCAM's fusion written out);
* the equality theorems: at the last layer of a GAP + linear head, ∂y/∂A is constant over
  positions, so XGrad-CAM's and HiResCAM's maps equal Grad-CAM's; on the ViT they differ.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import shared.models  # noqa: F401  (registers our small timm models)
from papers.ablationcam.method import AblationCAM
from papers.gradcam.method import GradCAM
from papers.hirescam.method import HiResCAM
from papers.layercam.method import LayerCAM, LayerCAMFusion
from papers.scorecam.method import ScoreCAM
from papers.xgradcam.method import XGradCAM
from shared.explain import ClassTarget
from shared.models import build_adapter
from shared.models.adapter import ModelAdapter

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from tiny_zoo import SIZE
from tiny_zoo import ZOO as TINY_ZOO


class TwoConv(nn.Module):
    """conv → ReLU (``act``, explained, full resolution) → conv → ReLU → GAP → linear: the
    gradient at ``act`` varies over positions, so HiResCAM ≠ Grad-CAM ≠ XGrad-CAM here."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, stride=stride)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 5, 3, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act2(self.conv2(self.act(self.conv1(x)))).mean(dim=(2, 3)))


def toy(stride: int = 1, seed: int = 0, identity_norm: bool = True) -> ModelAdapter:
    torch.manual_seed(seed)
    model = TwoConv(stride)
    with torch.no_grad():
        model.conv2.bias.uniform_(0.0, 0.3)  # most conv2 units alive: a signed, varying gradient
    norm = dict(mean=(0, 0, 0), std=(1, 1, 1)) if identity_norm else {}
    return ModelAdapter(model, "cnn", "classifier", "act", **norm).eval()


def scale(maps: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam's scale_cam_image on ours: min-max with 1e-7 in the denominator, twice
    (once per layer in compute_cam_per_layer, once more in aggregate_multi_layers): the 1e-7
    is visible on the tiny maps of a random toy network."""
    m = maps.double().flatten(1)
    for _ in range(2):
        m = m - m.min(dim=1, keepdim=True).values
        m = m / (1e-7 + m.max(dim=1, keepdim=True).values)
    return m.reshape(maps.shape).numpy()


def theirs(cls, adapter: ModelAdapter, images: torch.Tensor, labels: list[int], **kwargs) -> np.ndarray:
    model = copy.deepcopy(adapter.model)  # pytorch-grad-cam runs loss.backward(): its own trainable copy
    for p in model.parameters():
        p.requires_grad_(True)
    cam = cls(model=model, target_layers=[model.act], **kwargs)
    return cam(input_tensor=images, targets=[ClassifierOutputTarget(c) for c in labels])


IMAGES = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
LABELS = [0, 3, 1]


@pytest.mark.parametrize(
    ("ours", "reference", "kwargs"),
    [
        (XGradCAM, "XGradCAM", {}),
        (HiResCAM, "HiResCAM", {}),
        (LayerCAM, "LayerCAM", {}),
        (ScoreCAM, "ScoreCAM", {"weighting": "softmax_logits", "masking": "normalised"}),
        (AblationCAM, "AblationCAM", {"denominator": "signed"}),
    ],
    ids=["xgradcam", "hirescam", "layercam", "scorecam", "ablationcam"],
)
def test_matches_pytorch_grad_cam(ours, reference, kwargs):
    adapter = toy()
    maps = ours(adapter, **kwargs)(IMAGES, ClassTarget(LABELS))
    expected = theirs(getattr(pgc, reference), adapter, IMAGES, LABELS)
    assert maps.abs().max() > 0
    # pytorch-grad-cam works in float32 and adds 1e-7 (XGrad-CAM's denominator, the scaling)
    np.testing.assert_allclose(scale(maps), expected, atol=2e-5)


def test_scorecam_weights_match_pytorch_grad_cam_get_cam_weights():
    adapter = toy()
    model = copy.deepcopy(adapter.model)
    cam = pgc.ScoreCAM(model=model, target_layers=[model.act])
    A = F.relu(adapter.model.conv1(IMAGES)).detach()
    expected = cam.get_cam_weights(IMAGES, model.act, [ClassifierOutputTarget(c) for c in LABELS], A.numpy(), None)
    got = ScoreCAM(adapter, weighting="softmax_logits", masking="normalised").weights(IMAGES, A, ClassTarget(LABELS))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)


def authors_scorecam(adapter: ModelAdapter, image: torch.Tensor, label: int) -> torch.Tensor:
    """haofanwang/Score-CAM cam/scorecam.py's loop, one image, transcribed: the *normalised*
    input times each mask, the softmax probability of the class, constant channels skipped,
    Σ score · upsampled map, ReLU (its final min-max division left out)."""
    x = (image[None] - adapter._mean) / adapter._std  # apply_transforms: ImageNet normalisation
    h, w = x.shape[-2:]
    with torch.no_grad():
        activations = F.relu(adapter.model.conv1(x))
        saliency = torch.zeros(1, 1, h, w)
        for i in range(activations.shape[1]):
            m = F.interpolate(activations[:, i : i + 1], size=(h, w), mode="bilinear", align_corners=False)
            if m.max() == m.min():
                continue
            norm = (m - m.min()) / (m.max() - m.min())
            score = F.softmax(adapter.model(x * norm), dim=1)[0][label]
            saliency += score * m
    return F.relu(saliency)[0, 0]


def test_scorecam_default_is_the_authors_code_with_normalised_masking():
    adapter = toy(stride=2, identity_norm=False)  # a 4×4 layer: the upsampling is exercised
    images = IMAGES.clone()
    with torch.no_grad():
        adapter.model.conv1.weight[0] = 0  # channel 0 constant (its bias): the authors skip it
    maps = ScoreCAM(adapter, masking="normalised")(images, ClassTarget(LABELS))
    expected = torch.stack([authors_scorecam(adapter, images[i], c) for i, c in enumerate(LABELS)])
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-6)
    # masking in [0, 1] image space (our default) scores other copies, hence other weights
    other = ScoreCAM(adapter)(images, ClassTarget(LABELS))
    assert (other - maps).abs().max() > 1e-4 * maps.abs().max()


def test_scorecam_chunking_does_not_change_the_maps():
    adapter = toy(stride=2)
    a = ScoreCAM(adapter, max_batch=5)(IMAGES, ClassTarget(LABELS))
    b = ScoreCAM(adapter, max_batch=1000)(IMAGES, ClassTarget(LABELS))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_scorecam_baseline_subtracts_the_fully_masked_score():
    adapter = toy(stride=2)
    A = F.relu(adapter.model.conv1(IMAGES)).detach()
    plain = ScoreCAM(adapter).weights(IMAGES, A, ClassTarget(LABELS))
    based = ScoreCAM(adapter, subtract_baseline=True).weights(IMAGES, A, ClassTarget(LABELS))
    with torch.no_grad():
        black = adapter(torch.zeros_like(IMAGES)).softmax(1)[torch.arange(3), LABELS].double()
    constant = (A.flatten(2).amax(2) - A.flatten(2).amin(2)) <= 0  # skipped channels keep α = 0
    assert bool(constant.any()) and bool((~constant).any())
    torch.testing.assert_close(based, torch.where(constant, torch.zeros_like(plain), plain - black[:, None]))


# -- Ablation-CAM: the prefix once vs a full forward per ablated channel ------------------------


def naive_ablation_scores(adapter: ModelAdapter, layer: str, images: torch.Tensor, labels: list[int]) -> torch.Tensor:
    """y_c^k by brute force: for every image and channel, a full forward with a hook zeroing channel k."""
    module = adapter.module(layer)
    out = []
    with torch.no_grad():
        for i, c in enumerate(labels):
            row = []
            channels = module(adapter.model.conv1(images[i : i + 1])).shape[1] if layer == "act" else None
            for k in range(channels or 0):
                h = module.register_forward_hook(lambda m, inp, o, k=k: o.index_fill(1, torch.tensor([k]), 0.0))
                row.append(adapter(images[i : i + 1])[0, c])
                h.remove()
            out.append(torch.stack(row))
    return torch.stack(out).double()


def test_ablationcam_prefix_once_equals_a_full_forward_per_channel():
    adapter = toy(stride=2)
    explainer = AblationCAM(adapter, max_batch=7)  # chunks that mix images
    A = F.relu(adapter.model.conv1(IMAGES)).detach()
    y = adapter(IMAGES).detach()[torch.arange(3), LABELS].double()
    got = explainer.scores(IMAGES, A, y, ClassTarget(LABELS))
    assert explainer.last_path == "prefix_once"
    torch.testing.assert_close(got, naive_ablation_scores(adapter, "act", IMAGES, LABELS), rtol=1e-5, atol=1e-6)
    full = AblationCAM(adapter, prefix_once=False)
    torch.testing.assert_close(full.scores(IMAGES, A, y, ClassTarget(LABELS)), got, rtol=1e-5, atol=1e-6)
    assert full.last_path == "full"
    # the map: ReLU(Σ_k (y − y_k)/|y| A_k), upsampled
    w = (y[:, None] - got) / y.abs()[:, None]
    expected = F.interpolate(F.relu(torch.einsum("bk,bkhw->bhw", w.float(), A))[:, None], size=(8, 8), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(explainer(IMAGES, ClassTarget(LABELS)), expected, rtol=1e-5, atol=1e-6)


class Residual(nn.Module):
    """stem → (stem + conv2(ReLU(conv1(stem)))) → GAP → linear; ``inner`` is inside the branch."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.inner = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        return self.fc((s + self.conv2(self.inner(self.conv1(s)))).mean(dim=(2, 3)))


def test_ablationcam_refuses_the_shortcut_inside_a_residual_branch_and_falls_back():
    torch.manual_seed(0)
    adapter = ModelAdapter(Residual(), "cnn", "classifier", "inner", mean=(0, 0, 0), std=(1, 1, 1)).eval()
    target = ClassTarget([0, 2, 1])
    with pytest.raises(ValueError, match="not the only path"):
        AblationCAM(adapter, prefix_once=True)(IMAGES, target)
    auto = AblationCAM(adapter)
    maps = auto(IMAGES, target)
    assert auto.last_path == "full"
    torch.testing.assert_close(maps, AblationCAM(adapter, prefix_once=False)(IMAGES, target))
    # brute force: zero channel k of `inner` in a full forward
    with torch.no_grad():
        y = adapter(IMAGES)[torch.arange(3), [0, 2, 1]].double()
        A = adapter.model.inner(adapter.model.conv1(adapter.model.stem(IMAGES)))
        y_k = torch.zeros(3, 4, dtype=torch.float64)
        for k in range(4):
            h = adapter.model.inner.register_forward_hook(lambda m, i, o, k=k: o.index_fill(1, torch.tensor([k]), 0.0))
            y_k[:, k] = adapter(IMAGES)[torch.arange(3), [0, 2, 1]].double()
            h.remove()
    w = ((y[:, None] - y_k) / y.abs()[:, None]).float()
    torch.testing.assert_close(maps, F.relu(torch.einsum("bk,bkhw->bhw", w, A)), rtol=1e-5, atol=1e-6)
    # one image: the skip path broadcasts over the copies, which is exact, so the shortcut is taken
    one = AblationCAM(adapter)
    torch.testing.assert_close(one(IMAGES[:1], target.subset(torch.tensor([0]))), maps[:1], rtol=1e-5, atol=1e-6)
    assert one.last_path == "prefix_once"


# -- LayerCAM's fusion ----------------------------------------------------------------------------


def test_layercam_fusion_is_tanh_scaled_maximum_of_the_layer_maps():
    adapter = toy(stride=2)
    target = ClassTarget(LABELS)
    fused = LayerCAMFusion(adapter, layers=["act", "act2"])(IMAGES, target)
    shallow = LayerCAM(adapter, layer="act")(IMAGES, target)  # already upsampled to 8×8, ReLU'd
    deep = LayerCAM(adapter, layer="act2")(IMAGES, target)
    peak = lambda m: m.flatten(1).amax(1)[:, None, None]  # noqa: E731
    expected = torch.maximum(torch.tanh(2.0 * shallow / peak(shallow)), deep / peak(deep))
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-6)
    every = LayerCAMFusion(adapter, layers=["act", "act2"], scale_deepest=True)(IMAGES, target)
    torch.testing.assert_close(every, torch.maximum(torch.tanh(2.0 * shallow / peak(shallow)), torch.tanh(2.0 * deep / peak(deep))))


# -- XGrad-CAM and HiResCAM equal Grad-CAM before GAP + linear, and differ elsewhere -------------

ZOO = {role: TINY_ZOO[role] for role in ("resnet", "plaincnn", "vit")}


@pytest.fixture(scope="module")
def zoo() -> dict[str, ModelAdapter]:
    torch.manual_seed(0)
    adapters = {k: build_adapter(k, cfg, ["a", "b", "c", "d"]).explain_mode() for k, cfg in ZOO.items()}
    with torch.no_grad():  # trained ViTs have non-trivial LayerNorm affines (see test_registry_contract)
        for m in adapters["vit"].modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return adapters


def test_the_cnn_heads_are_gap_plus_linear(zoo):
    """The premise of the theorem, checked on the models themselves: logits = fc(mean_u A(u))."""
    for name in ("resnet", "plaincnn"):
        adapter = zoo[name]
        x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
        store = {}
        h = adapter.module(adapter.target_layer).register_forward_hook(lambda m, i, o: store.setdefault("A", o.clone()))
        with torch.no_grad():
            logits = adapter(x)
        h.remove()
        torch.testing.assert_close(logits, adapter.model.fc(store["A"].mean(dim=(2, 3))), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["resnet", "plaincnn"])
@pytest.mark.parametrize("method", [XGradCAM, HiResCAM])
def test_equal_to_gradcam_before_gap_and_linear(zoo, model, method):
    adapter = zoo[model]
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    target = ClassTarget([0, 1, 2])
    ours, gradcam = method(adapter)(x, target), GradCAM(adapter)(x, target)
    assert gradcam.abs().max() > 0
    torch.testing.assert_close(ours, gradcam, rtol=1e-4, atol=1e-6 * float(gradcam.abs().max()))


@pytest.mark.parametrize("method", [XGradCAM, HiResCAM])
def test_differs_from_gradcam_on_the_vit(zoo, method):
    # a ViT's class-token head is not GAP + linear over the explained tokens: ∂y/∂A varies
    adapter = zoo["vit"]
    x = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    target = ClassTarget([0, 1, 2])
    ours, gradcam = method(adapter)(x, target), GradCAM(adapter)(x, target)
    rel = (ours - gradcam).flatten(1).abs().amax(1) / gradcam.flatten(1).abs().amax(1).clamp_min(1e-12)
    # an untrained tiny ViT's gradient varies little over tokens, so the gap is small (0.4-5 % of
    # the map's scale here) but 1000× the float32 rounding the equality tests allow (1e-6)
    assert bool((rel > 1e-3).all()), rel
