"""Occlusion sensitivity and the deconvnet (Zeiler & Fergus 2014) against independent computations.

Occlusion:
1. captum 0.9 ``Occlusion`` on the same model, window, stride and grey fill (the baseline =
   the normalisation's mean colour), with captum's forward function scoring what ours scores:
   the softmax probabilities with ``target=labels`` for a classifier, the similarity to the
   reference for an embedding model. captum's map is (B, 3, H, W) with equal channels (its window
   spans the three channels); ours is channel 0 of it. A 32 px image with window 10 / stride 4
   has a last window cut off at the border (captum's rule, which ours follows). Tolerance: the
   scores are float32 in both (one ulp at a probability or cosine near 1 is 1.2e-7), so 1e-6
   absolute, or 1e-5 of the map's scale where that is larger.
2. A hand-computed case: a linear "classifier" whose logit is Σ_p w_p·x_p, so occluding window
   W changes the logit by Σ_{q∈W} w_q (x_q − g), and the map at p is the mean of that over the
   windows covering p, written with explicit loops over the windows.

Deconvnet:
3. captum ``Deconvolution`` (ReLU backward = ReLU of the gradient) on the zoo's ReLU CNNs, on
   the adapter itself (so both differentiate with respect to [0, 1] images), max |·| over channels.
4. A 2-layer ReLU net y = W₂ ReLU(W₁ x): the deconvnet signal at the input is
   W₁ᵀ max(W₂[c], 0), independent of x (the forward gate is not applied), while the plain
   gradient W₁ᵀ (W₂[c] ⊙ 1[W₁x > 0]) is not.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import shared.models  # noqa: F401
from papers.zeiler_fergus.method import Deconvnet, Occlusion, window_starts
from shared.explain import ClassTarget, build_explainer
from shared.explain.pair import PairTarget
from shared.explain.registry import MethodNotApplicable
from shared.models import build_adapter
from shared.models.adapter import ModelAdapter
from tiny_zoo import ZOO as TINY_ZOO

captum_attr = pytest.importorskip("captum.attr")

CLASSES = ["a", "b", "c", "d"]
SIZE = 32  # (32 − 10) / 4 = 5.5: the last window is cut off at the border
ZOO = {role: TINY_ZOO[role] for role in ("resnet", "plaincnn", "vit", "embed_cosine")}


@pytest.fixture(scope="module")
def zoo() -> dict[str, ModelAdapter]:
    torch.manual_seed(0)
    return {name: build_adapter(name, cfg, CLASSES).explain_mode() for name, cfg in ZOO.items()}


def _inputs(adapter: ModelAdapter, b: int = 2):
    g = torch.Generator().manual_seed(3)
    images = torch.rand(b, 3, SIZE, SIZE, generator=g)
    if adapter.task == "classifier":
        return images, ClassTarget(torch.tensor([1, 3][:b]))
    return images, PairTarget.from_images(adapter, torch.rand(b, 3, SIZE, SIZE, generator=g))


@pytest.mark.parametrize("model", ["resnet", "vit", "embed_cosine"])
def test_occlusion_equals_captum(zoo, model: str) -> None:
    adapter = zoo[model]
    images, target = _inputs(adapter)
    ours = Occlusion(adapter, window=10, stride=4)(images, target)
    grey = torch.tensor(adapter.mean).view(1, 3, 1, 1)
    if adapter.task == "classifier":
        # captum's target picks the class from the forward's (B, K) output: give it probabilities
        occlusion = captum_attr.Occlusion(lambda x: adapter(x).softmax(dim=1))
        kwargs = {"target": target.labels, "perturbations_per_eval": 64}
    else:
        # one image per forward (perturbations_per_eval=1): row i is image i, scored against its reference
        occlusion = captum_attr.Occlusion(lambda x: target(adapter(x)))
        kwargs = {"perturbations_per_eval": 1}
    with torch.no_grad():
        theirs = occlusion.attribute(images, sliding_window_shapes=(3, 10, 10), strides=(3, 4, 4), baselines=grey, **kwargs)
    assert torch.equal(theirs[:, 0], theirs[:, 2])
    scale = float(theirs.abs().max())
    assert scale > 0
    # float32 scores in both; captum subtracts them in float32, ours in float64
    torch.testing.assert_close(ours, theirs[:, 0], rtol=0, atol=max(1e-6, 1e-5 * scale))


class LinearLogit(nn.Module):
    """logits = (Σ_p w_p·x_p, 0): class 0's logit is linear in the image."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, size, size, generator=torch.Generator().manual_seed(5)))
        self.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = (x * self.w).sum(dim=(1, 2, 3))
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


def test_occlusion_hand_computed_linear_logit() -> None:
    size, window, stride = 7, 3, 2  # starts 0, 2, 4 (⌈(7 − 3)/2⌉ + 1 = 3): none cut off
    model = LinearLogit(size)
    adapter = ModelAdapter(model, "cnn", "classifier", "head", mean=(0.2, 0.5, 0.7), std=(1, 1, 1)).eval()
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(6))
    maps = Occlusion(adapter, window=window, stride=stride, probability=False)(images, ClassTarget([0, 0]))
    w = model.w.detach().double()
    grey = torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64).view(3, 1, 1)
    starts = window_starts(size, window, stride)
    assert starts == [0, 2, 4]
    for i in range(2):
        x = images[i].double() - grey  # adapter normalisation: (x − mean) / 1, so the logit is Σ w (x − mean)
        total = torch.zeros(size, size, dtype=torch.float64)
        count = torch.zeros(size, size, dtype=torch.float64)
        for top in starts:
            for left in starts:
                cut = (slice(None), slice(top, top + window), slice(left, left + window))
                drop = float((w[cut] * x[cut]).sum())  # Σ_{q∈W} w_q (x_q − g): occluded pixels become g
                total[cut[1:]] += drop
                count[cut[1:]] += 1
        torch.testing.assert_close(maps[i].double(), total / count, rtol=1e-5, atol=1e-5)


def test_occlusion_cut_off_window_and_bad_knobs(zoo) -> None:
    assert window_starts(30, 8, 4) == [0, 4, 8, 12, 16, 20, 24]  # the last window spans 24..29 only
    adapter = zoo["resnet"]
    images, target = _inputs(adapter, 1)
    with pytest.raises(ValueError, match="stride"):
        Occlusion(adapter, window=4, stride=8)(images, target)
    with pytest.raises(ValueError, match="image side"):
        Occlusion(adapter, window=64)(images, target)
    with pytest.raises(ValueError, match="fill"):
        Occlusion(adapter, fill="black")
    # the defaults scale with the image: 1/8 and 1/16 of the side
    assert Occlusion(adapter).geometry(224, 224) == ((28, 28), (14, 14))
    assert Occlusion(adapter).geometry(64, 64) == ((8, 8), (4, 4))


class CaptumSimilarity(nn.Module):
    """The similarity target as a module, so captum finds the adapter's ReLUs through it."""

    def __init__(self, adapter: ModelAdapter, target: PairTarget) -> None:
        super().__init__()
        self.adapter, self.target = adapter, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.target(self.adapter(x))


@pytest.mark.parametrize("model", ["resnet", "plaincnn", "embed_cosine"])
def test_deconvnet_equals_captum(zoo, model: str) -> None:
    adapter = zoo[model]
    images, target = _inputs(adapter)
    ours = build_explainer("deconvnet", adapter)(images, target)
    x = images.clone().requires_grad_(True)
    if adapter.task == "classifier":
        theirs = captum_attr.Deconvolution(adapter).attribute(x, target=target.labels)
    else:
        theirs = captum_attr.Deconvolution(CaptumSimilarity(adapter, target)).attribute(x)
    theirs = theirs.detach().abs().amax(dim=1)
    assert float(theirs.max()) > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6 * float(theirs.max()))
    assert all(not p.requires_grad for p in adapter.model.parameters())


class TwoLayer(nn.Module):
    def __init__(self, size: int, hidden: int = 16, classes: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3 * size * size, hidden)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x.flatten(1))))


def test_deconvnet_hand_rule_two_layer_relu_net() -> None:
    size = 4
    torch.manual_seed(7)
    model = TwoLayer(size)
    adapter = ModelAdapter(model, "cnn", "classifier", "fc1", mean=(0, 0, 0), std=(1, 1, 1)).eval()
    images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(8)) - 0.5
    labels = torch.tensor([0, 2, 1])
    maps = Deconvnet(adapter)(images, ClassTarget(labels))
    W1, W2 = model.fc1.weight.detach(), model.fc2.weight.detach()
    signal = W2[labels].clamp_min(0) @ W1  # W₁ᵀ max(W₂[c], 0), no forward gate
    expected = signal.view(3, 3, size, size).abs().amax(dim=1)
    torch.testing.assert_close(maps, expected, rtol=1e-5, atol=1e-6)
    # the plain gradient gates by the forward activation: it differs here
    gate = (model.fc1(images.flatten(1)) > 0).float()
    gradient = ((W2[labels] * gate) @ W1).view(3, 3, size, size).abs().amax(dim=1)
    assert (gradient - expected).abs().max() > 1e-3


def test_deconvnet_refuses_non_relu_models(zoo) -> None:
    with pytest.raises(MethodNotApplicable, match="deconvnet"):
        build_explainer("deconvnet", zoo["vit"])
    with pytest.raises(ValueError, match="cnn"):
        Deconvnet(zoo["vit"])
    gelu = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.LazyLinear(2))
    gelu(torch.rand(1, 3, 8, 8))
    adapter = ModelAdapter(gelu, "cnn", "classifier", "0", mean=(0, 0, 0), std=(1, 1, 1))
    with pytest.raises(ValueError, match="ReLU networks only.*GELU"):
        Deconvnet(adapter)
