"""SR maps (papers/sr_lrp): the context-aware saliency step against a hand-computed example,
its properties, and the registered methods against a direct zennit call with the authors' rules."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import LayerMapComposite, layer_map_base
from zennit.rules import Epsilon, ZPlus
from zennit.types import Convolution

from papers.lrp.method import TimmCanonizer
from papers.sr_lrp.method import _patches, context_aware_saliency, relevance_image
from shared.explain import ClassTarget, build_explainer
from shared.explain.upsample import upsample
from shared.models import build_adapter
from shared.models.adapter import IMAGENET_MEAN, IMAGENET_STD


def test_patch_vectors_are_unfolds_columns() -> None:
    x = torch.rand(2, 3, 11, 13, generator=torch.Generator().manual_seed(0))
    vecs, centres, grid = _patches(x, 5, 2)
    torch.testing.assert_close(vecs, F.unfold(x, kernel_size=5, stride=2).transpose(1, 2))
    assert grid == (4, 5)
    torch.testing.assert_close(centres[6], torch.tensor([1 * 2 + 2.0, 1 * 2 + 2.0]) / 13)  # row 1, column 1


@pytest.mark.parametrize("context", [False, True])
def test_hand_computed_4x4(context: bool) -> None:
    """A 4×4 map, 0 except one pixel of 1 at (1, 2); 1×1 patches, one scale, K = 3, c = 3.

    d(i, j) = |m_i − m_j| / (1 + 3 · ‖pos_i − pos_j‖ / 4). A background pixel has 14 identical
    neighbours (d = 0): S = 0. The distinct pixel's 3 most similar patches are the 3 farthest
    pixels: S = 1 − exp(−mean of their d). With the immediate context, the only focus is the
    distinct pixel: its value is kept, the others are 0 anyway."""
    m = torch.zeros(1, 1, 4, 4)
    m[0, 0, 1, 2] = 1.0
    d = []
    for y in range(4):
        for x in range(4):
            if (y, x) != (1, 2):
                d.append(1.0 / (1 + 3 * math.hypot(y - 1, x - 2) / 4))
    expected = torch.zeros(4, 4)
    expected[1, 2] = 1 - math.exp(-sum(sorted(d)[:3]) / 3)
    S = context_aware_saliency(m, patch=1, stride=1, scales=(1.0,), neighbour_scales=(1.0,), k=3, c=3.0, context=context)
    torch.testing.assert_close(S[0], expected, rtol=1e-6, atol=1e-7)


def test_constant_map_gives_constant_saliency() -> None:
    """0 everywhere, up to the float rounding of the anti-aliased resizes (a resized constant
    differs from it in the last bits, so d_colour is ~1e-6 instead of 0)."""
    S = context_aware_saliency(torch.full((2, 3, 32, 32), 0.4))
    assert float(S.abs().max()) < 1e-4
    assert bool((context_aware_saliency(torch.zeros(1, 3, 32, 32)) == 0).all())  # exactly 0 where the resizes are exact


def test_distinct_region_is_the_most_salient() -> None:
    g = torch.Generator().manual_seed(0)
    m = 0.1 * torch.rand(2, 3, 64, 64, generator=g)  # a textured background
    m[0, :, 8:18, 40:52] += 0.8
    m[1, :, 44:56, 6:16] += 0.8
    S = context_aware_saliency(m)
    up = upsample(S, (64, 64))
    for i, (ys, xs) in enumerate([(slice(8, 18), slice(40, 52)), (slice(44, 56), slice(6, 16))]):
        y, x = divmod(int(up[i].argmax()), 64)
        assert ys.start <= y < ys.stop and xs.start <= x < xs.stop
        inside = torch.zeros(64, 64, dtype=torch.bool)
        inside[ys, xs] = True
        assert up[i][inside].mean() > 3 * up[i][~inside].mean()


@pytest.fixture(scope="module")
def adapter():
    torch.manual_seed(0)
    a = build_adapter("plaincnn", {"arch": "vgg_small", "task": "classifier"}, ["a", "b", "c", "d"]).explain_mode()
    with torch.no_grad():
        for m in a.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return a


def _authors_relevance(adapter, images, labels):
    """The authors' LRP through zennit directly: LRP-0 convolutions, bias-free z⁺ dense layers,
    output × one-hot(class) as output relevance, at the normalised input."""
    composite = LayerMapComposite(
        layer_map_base(1e-9) + [(Convolution, Epsilon(1e-9)), (nn.Linear, ZPlus(stabilizer=1e-9, zero_params=["bias"]))],
        canonizers=[SequentialMergeBatchNorm(), TimmCanonizer()],
    )
    x = ((images - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)).requires_grad_(True)
    with Gradient(model=adapter.model, composite=composite) as attributor:
        _, relevance = attributor(x, lambda y: torch.eye(y.shape[1])[labels] * y.detach())
    return relevance


def test_methods_equal_direct_zennit_plus_saliency(adapter) -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 3])
    relevance = _authors_relevance(adapter, images, labels)
    lrp = build_explainer("lrp_authors", adapter)(images, ClassTarget(labels))
    torch.testing.assert_close(lrp, relevance.abs().sum(1), rtol=0, atol=1e-5 * float(lrp.abs().max()))
    sr = build_explainer("sr_lrp", adapter, work_size=32)(images, ClassTarget(labels))
    expected = upsample(context_aware_saliency(relevance_image(relevance)), (32, 32))
    torch.testing.assert_close(sr, expected, rtol=0, atol=1e-4)
    assert bool(torch.isfinite(sr).all()) and sr.max() > 0
