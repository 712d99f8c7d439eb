"""Map-only metrics: complexity (sparseness, complexity, effective complexity) and the
localisation additions (MaxBoxAccV2, attribution localisation, top-k intersection, AUC).

Checked against hand-computed values, properties, a plain-loop MaxBoxAccV2 reference written
here (scipy.ndimage.label + find_objects per image and threshold), sklearn's roc_auc_score per
image, and Quantus 0.6 on the same maps (its metric classes called with ``model=None``,
channel-first numpy, ``disable_warnings=True``); each comparison states its conventions and
tolerance.
"""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from shared.metrics import max_box_accuracy, relevance_mass_accuracy
from shared.metrics.complexity import complexity, effective_complexity, sparseness
from shared.metrics.localisation import (
    MaxBoxAccV2,
    all_component_best_iou,
    attribution_localisation,
    default_top_k,
    localisation_auc,
    max_box_accuracy_v2,
    top_k_intersection,
)

quantus = pytest.importorskip("quantus")


def _random_maps(seed: int, b: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, h, w, generator=g)


def _quantus(metric, maps: torch.Tensor, masks: torch.Tensor | None = None) -> np.ndarray:
    """Run a Quantus metric on (B, H, W) maps as single-channel images (x is a dummy input)."""
    a = maps.numpy()[:, None].astype(np.float32)
    x = np.zeros_like(a)
    y = np.zeros(a.shape[0], dtype=int)
    s = None if masks is None else masks.numpy()[:, None].astype(np.float32)
    return np.asarray(metric(model=None, x_batch=x, y_batch=y, a_batch=a.copy(), s_batch=s), dtype=np.float64)


# --- complexity ------------------------------------------------------------------------------


def test_complexity_metrics_by_hand():
    n = 16
    one_hot = torch.zeros(1, 4, 4)
    one_hot[0, 2, 1] = -3.0  # abs: a negative spike is as concentrated as a positive one
    uniform = torch.full((1, 4, 4), 0.5)
    half = torch.zeros(1, 4, 4)
    half[0, :2] = 2.0  # 8 equal pixels, 8 zeros
    maps = torch.cat([one_hot, uniform, half])
    # Gini: one-hot (2n - n - 1) * 1 / (n * 1) = (n - 1) / n; uniform 0; half: sorted values are
    # 0 x 8 then 2 x 8: sum_{i=9..16} (2i - 17) * 2 / (16 * 16) = 2 * 64 / 256 = 0.5.
    assert sparseness(maps).tolist() == pytest.approx([(n - 1) / n, 0.0, 0.5], abs=1e-12)
    # Entropy of |a| / sum |a|: one-hot 0, uniform log n, half log 8.
    assert complexity(maps).tolist() == pytest.approx([0.0, math.log(n), math.log(8)], abs=1e-12)
    assert effective_complexity(maps).tolist() == [1.0, 16.0, 8.0]


def test_complexity_metrics_zero_map_scale_and_sign():
    zero = torch.zeros(1, 3, 3)
    assert sparseness(zero).item() == 0.0
    assert math.isnan(complexity(zero).item())
    assert effective_complexity(zero).item() == 0.0
    maps = _random_maps(0, b=4, h=6, w=5)
    for f in (sparseness, complexity, effective_complexity):
        ref = f(maps)
        torch.testing.assert_close(f(maps * 7.5), ref, rtol=1e-6, atol=1e-9)  # scale-invariant
        torch.testing.assert_close(f(-maps), ref, rtol=0, atol=0)  # abs
        torch.testing.assert_close(f(maps[1:3]), ref[1:3], rtol=0, atol=0)  # batch-invariant
    # eps is relative to each map's own maximum: 1e-6 of the max is negligible, 1e-4 is not.
    m = torch.zeros(2, 2, 2)
    m[:, 0, 0] = torch.tensor([1.0, 1000.0])
    m[:, 0, 1] = torch.tensor([1e-6, 1e-3])
    m[:, 1, 0] = torch.tensor([1e-4, 1e-1])
    assert effective_complexity(m).tolist() == [2.0, 2.0]
    assert effective_complexity(m, eps=1e-3).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="eps"):
        effective_complexity(m, eps=-1.0)


# Quantus's default normalise_by_max divides by the largest |a| of the whole batch; per-image
# normalise_axes gives our per-map normalisation (otherwise the defaults: abs=True, normalise=True).
_PER_IMAGE = {"disable_warnings": True, "normalise_func_kwargs": {"normalise_axes": (1, 2, 3)}}


@pytest.mark.parametrize(
    ("ours", "theirs", "tol"),
    [
        # Quantus adds 1e-7 to each max-normalised |a| before the Gini index, which shrinks it by
        # the factor S / (S + n 1e-7), S = sum of normalised values (~10 here: ~1e-6 relative),
        # and works in float32: tol 1e-5.
        (sparseness, lambda: quantus.Sparseness(**_PER_IMAGE), 1e-5),
        # Quantus: float32 and log(p + 1e-12); ours float64 with 0 log 0 = 0: tol 1e-5.
        (complexity, lambda: quantus.Complexity(**_PER_IMAGE), 1e-5),
        # Counts: exact (no value within float32 rounding of eps * max).
        (effective_complexity, lambda: quantus.EffectiveComplexity(**_PER_IMAGE), 0.0),
    ],
    ids=["sparseness", "complexity", "effective_complexity"],
)
def test_complexity_metrics_match_quantus(ours, theirs, tol):
    maps = _random_maps(1, b=3, h=8, w=8)
    # Exact zeros and tiny values (below and well above 1e-5 of the max) so the count is not trivial.
    maps = maps * (torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(2)) > 0.3)
    maps[:, 0, :4] = torch.tensor([1e-8, -1e-7, 1e-3, -1e-2])
    maps[1] *= 100.0  # a map at another scale: batch-wide and per-image normalisation differ
    np.testing.assert_allclose(ours(maps).numpy(), _quantus(theirs(), maps), rtol=0, atol=tol)


def test_effective_complexity_differs_from_quantus_batch_wide_default():
    """Documents the convention difference: Quantus's default max is over the whole batch."""
    maps = torch.ones(2, 4, 4)
    maps[1] *= 1e-6  # tiny map next to a large one
    default = _quantus(quantus.EffectiveComplexity(disable_warnings=True), maps)
    assert default.tolist() == [16, 0]  # 1e-6 / 1 < eps: the small map counts nothing
    assert effective_complexity(maps).tolist() == [16.0, 16.0]


# --- localisation: attribution localisation, top-k intersection, AUC ---------------------------


def _random_masks(seed: int, b: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    masks = torch.rand(b, h, w, generator=torch.Generator().manual_seed(seed)) > 0.6
    masks[:, 0, 0] = True  # never empty
    masks[:, -1, -1] = False  # never full
    return masks


def test_attribution_localisation_is_relevance_mass_plus_weighting():
    maps = torch.tensor([[[2.0, -1.0], [1.0, 1.0]]])
    masks = torch.tensor([[[True, True], [False, False]]])
    # Positive mass 4, inside 2 (the -1 is dropped): 0.5; weighted by the mask share 2/4.
    assert attribution_localisation(maps, masks).item() == pytest.approx(0.5)
    assert attribution_localisation(maps, masks, weighted=True).item() == pytest.approx(0.25)
    maps, masks = _random_maps(3, b=5), _random_masks(4, b=5)
    torch.testing.assert_close(attribution_localisation(maps, masks), relevance_mass_accuracy(maps, masks), rtol=0, atol=0)


@pytest.mark.parametrize("weighted", [False, True])
def test_attribution_localisation_matches_quantus(weighted):
    # The paper's definition is Quantus with abs=False, positive_attributions=True (its default
    # abs=True scores |a|). Quantus adds 1e-9 to the denominator and is float32: tol 1e-6.
    # Its weighting divides by x_batch[2:].size, the image area only for B = 3 single-channel
    # images, which is what we pass here.
    maps, masks = _random_maps(5, b=3), _random_masks(6, b=3)
    metric = quantus.AttributionLocalisation(abs=False, positive_attributions=True, weighted=weighted, disable_warnings=True)
    np.testing.assert_allclose(
        attribution_localisation(maps, masks, weighted=weighted).numpy(), _quantus(metric, maps, masks), rtol=0, atol=1e-6
    )


def test_top_k_intersection_by_hand_and_default_k():
    maps = torch.tensor([[[0.9, 0.5, 0.5], [0.5, 0.1, 0.0], [0.2, 0.3, 0.4]]])
    masks = torch.zeros(1, 3, 3, dtype=torch.bool)
    masks[0, 0, 0] = True
    masks[0, 1, 0] = True  # third of the tied 0.5s in raster order
    # Top 3 with stable ties: flat 0 (0.9), 1 and 2 (0.5, before flat 3): one of three inside.
    assert top_k_intersection(maps, masks, k=3).item() == pytest.approx(1 / 3)
    assert top_k_intersection(maps, masks, k=4).item() == pytest.approx(2 / 4)
    # Concept influence: times (H W) / |mask| = 9 / 2.
    assert top_k_intersection(maps, masks, k=4, concept_influence=True).item() == pytest.approx(0.5 * 9 / 2)
    assert default_top_k(224, 224) == 1000
    assert default_top_k(64, 64) == round(1000 * 4096 / 50176) == 82
    assert default_top_k(2, 2) == 1
    with pytest.raises(ValueError, match="k must be"):
        top_k_intersection(maps, masks, k=10)


@pytest.mark.parametrize("concept_influence", [False, True])
def test_top_k_intersection_matches_quantus(concept_influence):
    # Tie-free random maps (Quantus's argsort is not stable), signed (its abs=False default);
    # the result is a ratio of small integers: exact up to float rounding.
    maps, masks = _random_maps(7, b=3), _random_masks(8, b=3)
    metric = quantus.TopKIntersection(k=10, concept_influence=concept_influence, disable_warnings=True)
    np.testing.assert_allclose(
        top_k_intersection(maps, masks, k=10, concept_influence=concept_influence).numpy(),
        _quantus(metric, maps, masks),
        rtol=1e-12,
        atol=0,
    )


def test_localisation_auc_by_hand_and_against_sklearn():
    from sklearn.metrics import roc_auc_score

    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[:, :2] = True
    perfect = masks.float()
    maps = torch.stack([perfect[0], -perfect[1], torch.zeros(4, 4)])
    assert localisation_auc(maps, masks).tolist() == [1.0, 0.0, 0.5]  # separated, reversed, constant
    full = torch.ones(1, 4, 4, dtype=torch.bool)
    assert math.isnan(localisation_auc(torch.rand(1, 4, 4), full).item())
    # Heavy ties (values quantised to 4 levels): sklearn interpolates the ROC curve through tied
    # scores, i.e. ties count one half, the same as average ranks. Float64 sums: tol 1e-12.
    g = torch.Generator().manual_seed(9)
    maps = torch.randint(0, 4, (6, 10, 12), generator=g).float()
    masks = _random_masks(10, b=6, h=10, w=12)
    ours = localisation_auc(maps, masks).numpy()
    ref = [roc_auc_score(m.flatten().numpy(), a.flatten().numpy()) for a, m in zip(maps, masks)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)


def test_localisation_auc_matches_quantus():
    # Quantus AUC: sklearn roc_curve + auc per image after its max normalisation (ranks unchanged).
    maps, masks = _random_maps(11, b=3), _random_masks(12, b=3)
    np.testing.assert_allclose(localisation_auc(maps, masks).numpy(), _quantus(quantus.AUC(disable_warnings=True), maps, masks), atol=1e-12)


# --- MaxBoxAccV2 -------------------------------------------------------------------------------


def _blobby_maps(seed: int, b: int, h: int, w: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(b, h, w))
    return torch.from_numpy(ndimage.gaussian_filter(noise, sigma=(0, 1.5, 1.5))).float()


def _reference_best_iou(maps: np.ndarray, boxes: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Plain loops: min-max normalise (float32, as the metric), threshold, label each map with
    8-connectivity, box every component with find_objects (exclusive ends), best IoU."""
    out = np.zeros((maps.shape[0], thresholds.shape[0]))
    eight = np.ones((3, 3), dtype=bool)
    for i, m in enumerate(maps.astype(np.float32)):
        lo, hi = m.min(), m.max()
        norm = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        gx0, gy0, gx1, gy1 = boxes[i]
        for j, t in enumerate(thresholds):
            labels, _ = ndimage.label(norm > t, structure=eight)
            for sl in ndimage.find_objects(labels):
                y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
                iw = max(0, min(x1, gx1) - max(x0, gx0))
                ih = max(0, min(y1, gy1) - max(y0, gy0))
                inter = iw * ih
                union = (x1 - x0) * (y1 - y0) + (gx1 - gx0) * (gy1 - gy0) - inter
                out[i, j] = max(out[i, j], inter / union)
    return out


def test_max_box_accuracy_v2_matches_plain_loop_reference():
    b, h, w = 6, 24, 24
    maps = _blobby_maps(13, b, h, w)
    boxes = torch.tensor([[2, 3, 12, 14], [10, 10, 22, 20], [0, 0, 24, 24], [5, 1, 9, 6], [14, 2, 23, 11], [3, 15, 10, 23]])
    thresholds = torch.arange(20, dtype=torch.float64) / 20
    result = max_box_accuracy_v2(maps, boxes, thresholds=thresholds, max_maps=50)  # several chunks
    best = _reference_best_iou(maps.numpy(), boxes.numpy(), thresholds.numpy().astype(np.float32))
    deltas = np.array([0.3, 0.5, 0.7])
    np.testing.assert_array_equal(result.hits.numpy(), (best[:, :, None] >= deltas).astype(np.float64))
    assert result.hits.sum() > 0 and (result.hits == 0).any()  # not a trivial case
    box_acc = result.hits.mean(0)
    assert result.per_iou.tolist() == box_acc.amax(0).tolist()
    assert result.value == pytest.approx(float(box_acc.amax(0).mean()))
    # Propagation (``label_components``, the path on accelerators) agrees with SciPy's labeller.
    fg = (torch.rand(40, h, w, generator=torch.Generator().manual_seed(14)) > 0.55)
    gt = boxes.repeat(7, 1)[:40]
    torch.testing.assert_close(all_component_best_iou(fg, gt, use_scipy=False), all_component_best_iou(fg, gt, use_scipy=True), rtol=0, atol=0)


def test_max_box_accuracy_v2_two_blobs_by_hand():
    # Two blobs; the ground truth is around the smaller one. The largest component misses it,
    # every-component matching finds it.
    maps = torch.zeros(1, 10, 10)
    maps[0, 1:5, 1:5] = 1.0  # 16 px
    maps[0, 6:9, 6:9] = 1.0  # 9 px
    boxes = torch.tensor([[6, 6, 9, 9]])
    v2 = max_box_accuracy_v2(maps, boxes, thresholds=torch.tensor([0.5]))
    assert v2.hits[0, 0].tolist() == [1.0, 1.0, 1.0] and v2.value == 1.0
    largest = max_box_accuracy_v2(maps, boxes, thresholds=torch.tensor([0.5]), multi_contour=False)
    assert largest.hits[0, 0].tolist() == [0.0, 0.0, 0.0]
    # A ground-truth box far from both blobs: IoU 0 with every component box.
    away = max_box_accuracy_v2(maps, torch.tensor([[0, 7, 2, 10]]), thresholds=torch.tensor([0.5]))
    assert away.hits.sum().item() == 0.0
    assert isinstance(v2, MaxBoxAccV2)
    assert v2.best_thresholds.tolist() == [0.5, 0.5, 0.5]


def test_max_box_accuracy_v2_properties_against_max_box_accuracy():
    maps = _blobby_maps(15, 8, 20, 20)
    g = torch.Generator().manual_seed(16)
    xy0 = torch.randint(0, 10, (8, 2), generator=g)
    size = torch.randint(4, 10, (8, 2), generator=g)
    boxes = torch.cat([xy0, xy0 + size], dim=1)
    v1 = max_box_accuracy(maps, boxes)
    only_largest = max_box_accuracy_v2(maps, boxes, iou_thresholds=(0.5,), multi_contour=False)
    torch.testing.assert_close(only_largest.hits[:, :, 0], v1.hits, rtol=0, atol=0)
    every = max_box_accuracy_v2(maps, boxes, iou_thresholds=(0.5,))
    assert bool((every.hits[:, :, 0] >= v1.hits).all())  # the largest component is a candidate
    assert every.value >= v1.value


def test_max_box_accuracy_v2_bad_input():
    maps = torch.rand(2, 8, 8)
    boxes = torch.tensor([[0, 0, 4, 4], [1, 1, 5, 5]])
    with pytest.raises(ValueError, match="iou_thresholds"):
        max_box_accuracy_v2(maps, boxes, iou_thresholds=(0.0, 0.5))
    with pytest.raises(ValueError, match="thresholds"):
        max_box_accuracy_v2(maps, boxes, thresholds=torch.tensor([]))
    with pytest.raises(ValueError, match="boxes"):
        max_box_accuracy_v2(maps, boxes[:1])
