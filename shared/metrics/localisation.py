"""Localisation metrics: pointing game, energy-based pointing game, weakly-supervised
localisation (CAM fixed threshold, MaxBoxAcc and MaxBoxAccV2), relevance mass and rank accuracy,
attribution localisation, top-k intersection and the mask ROC AUC.

Maps are (B, H, W) raw saliency at image resolution; masks (B, H, W) bool; boxes (B, 4) int64
x0, y0, x1, y1 inclusive-exclusive. Every function returns per-image values (B,) unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import box_masks, check_boxes, check_maps, check_masks, minmax_normalise, stable_descending_order
from ._ranking import average_ranks
from .components import box_iou, label_components, largest_component_boxes


def default_tolerance(height: int) -> float:
    """EBP's pointing-game tolerance: 15 px at 224 px, scaled with the image height."""
    return 15.0 * height / 224.0


def max_locations(maps: Tensor) -> tuple[Tensor, Tensor]:
    """(row, column) of each map's maximum; ties take the first in raster order (torch.argmax)."""
    w = maps.shape[2]
    flat_idx = torch.argmax(maps.flatten(1), dim=1)
    return flat_idx // w, flat_idx % w


def pointing_game(maps: Tensor, masks: Tensor, tolerance: float | None = None) -> Tensor:
    """Pointing game hits (Zhang et al., Excitation Backprop, ECCV 2016, Sec. 5.1), float (B,) of 0/1.

    A hit when the map's maximum lies within ``tolerance`` pixels (Euclidean) of a ground-truth
    pixel; the default is 15 px at 224 px, scaled as 15 * H / 224. When the maximum is shared by
    several pixels we take the first in raster order (deterministic; EBP does not say).
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    b, h, w = maps.shape
    tol = default_tolerance(h) if tolerance is None else float(tolerance)
    if tol < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    r, c = max_locations(maps)
    ys = torch.arange(h, device=maps.device).view(1, h, 1)
    xs = torch.arange(w, device=maps.device).view(1, 1, w)
    d2 = (ys - r.view(-1, 1, 1)) ** 2 + (xs - c.view(-1, 1, 1)) ** 2
    inf = torch.iinfo(d2.dtype).max
    nearest = torch.where(masks, d2, inf).flatten(1).amin(1)
    return (nearest.double() <= tol * tol).double()


def pointing_hits(maps: Tensor, masks: Tensor, tolerance: float, pixel_size: Tensor | None = None) -> Tensor:
    """TorchRay's pointing-game hit per map (Fong et al. 2019's benchmark of Zhang et al.'s game), float (B,) of 0/1.

    As ``torchray/benchmark/pointing_game.py`` (facebookresearch/TorchRay 6a198ee): the point is
    the map's maximum, ``torch.argmax`` of the flattened map (the first in raster order,
    ``_saliency_to_point`` in ``examples/attribution_benchmark.py`` lines 71-79), and it is a hit
    when a pixel of the mask lies *strictly* closer than ``tolerance`` to it (``PointingGame.evaluate``,
    lines 76-87: ``accept = (v + u) < self.tolerance**2``; TorchRay's docs write ``<=``, its code
    ``<``, which we follow). An empty mask is a miss.

    ``pixel_size`` (B, 2): per map, the height and width of one of our pixels in the units of
    ``tolerance`` (TorchRay measures in pixels of the original image, so an image of H0 x W0
    resized to H x W has pixel size (H0 / H, W0 / W)); None means 1 (tolerance in our pixels).
    Distances are taken in those units, so a non-square original resized to a square gives an
    elliptical acceptance region in our pixels, the circle of the original image.
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps, allow_empty=True)
    b, h, w = maps.shape
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if pixel_size is None:
        pixel_size = torch.ones(b, 2, dtype=torch.float64)
    pixel_size = torch.as_tensor(pixel_size, dtype=torch.float64, device=maps.device)
    if pixel_size.shape != (b, 2) or not bool((pixel_size > 0).all()):
        raise ValueError(f"pixel_size must be (B, 2) = ({b}, 2) positive sizes, got {tuple(pixel_size.shape)}")
    r, c = max_locations(maps)
    ys = torch.arange(h, device=maps.device, dtype=torch.float64).view(1, h, 1)
    xs = torch.arange(w, device=maps.device, dtype=torch.float64).view(1, 1, w)
    dy = (ys - r.view(-1, 1, 1)) * pixel_size[:, 0].view(-1, 1, 1)
    dx = (xs - c.view(-1, 1, 1)) * pixel_size[:, 1].view(-1, 1, 1)
    d2 = (dy * dy + dx * dx).masked_fill(~masks, float("inf"))
    return (d2.flatten(1).amin(1) < float(tolerance) ** 2).double()


def energy_pointing_game(maps: Tensor, boxes: Tensor) -> Tensor:
    """Energy-based pointing game (Wang et al., Score-CAM, CVPRW 2020, Sec. 4.2), (B,) in [0, 1].

    Share of the map's energy inside the ground-truth box: sum_{box} relu(L) / sum relu(L).
    Negative values are clipped first (Score-CAM's maps are non-negative). A map with no
    positive mass scores 0.
    """
    maps = check_maps(maps)
    boxes = check_boxes(boxes, maps)
    energy = maps.clamp_min(0).double()
    inside = (energy * box_masks(boxes, *maps.shape[1:])).flatten(1).sum(1)
    total = energy.flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.zeros_like(total))


def relevance_mass_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """Relevance mass accuracy (Arras, Osman & Samek, CLEVR-XAI, Information Fusion 2022, Sec. 4.2).

    R_within / R_total over positive relevance only (negative relevance set to zero), (B,) in
    [0, 1]. A map with no positive relevance scores 0.
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    pos = maps.clamp_min(0).double()
    inside = (pos * masks).flatten(1).sum(1)
    total = pos.flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.zeros_like(total))


def relevance_rank_accuracy(maps: Tensor, masks: Tensor) -> Tensor:
    """Relevance rank accuracy (Arras et al., CLEVR-XAI, Information Fusion 2022, Sec. 4.2).

    With K = |mask|, the share of the K highest-relevance pixels that lie inside the mask,
    (B,) in [0, 1]. Ties in relevance keep the lower flat index first (stable sort).
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    order = stable_descending_order(maps.flatten(1))
    inside_sorted = torch.gather(masks.flatten(1), 1, order).long()
    k = masks.flatten(1).sum(1)
    hits_at_k = torch.cumsum(inside_sorted, dim=1).gather(1, (k - 1).view(-1, 1)).squeeze(1)
    return hits_at_k.double() / k.double()


def threshold_boxes(normalised: Tensor, threshold: float) -> Tensor:
    """Box around the largest 8-connected component of ``normalised > threshold`` (B, 4)."""
    return largest_component_boxes(normalised > threshold)


def cam_localisation(maps: Tensor, boxes: Tensor, threshold: float = 0.2, iou_threshold: float = 0.5) -> Tensor:
    """Weakly-supervised localisation with a fixed threshold (Zhou et al., CAM, CVPR 2016, Sec. 3).

    The map is min-max normalised to [0, 1]; pixels with value above ``threshold`` (20 % of the
    max, as in CAM) are kept; the box around the largest 8-connected component is compared with
    the ground-truth box; a hit when IoU >= ``iou_threshold`` (0.5). Returns hits (B,) of 0/1.
    One ground-truth box per row (a multi-object image appears once per object).
    """
    maps = check_maps(maps)
    boxes = check_boxes(boxes, maps)
    pred = threshold_boxes(minmax_normalise(maps), threshold)
    return (box_iou(pred, boxes) >= iou_threshold).double()


@dataclass(frozen=True)
class MaxBoxAcc:
    """MaxBoxAcc over a dataset: ``hits`` (B, T) per image and threshold, ``thresholds`` (T,).

    ``box_accuracy`` (T,) is the mean over images; ``value`` = max over thresholds and
    ``best_threshold`` where it is reached (the first, if several). Bootstrap over images by
    resampling rows of ``hits`` and taking the max of the column means per resample.
    """

    hits: Tensor
    thresholds: Tensor

    @property
    def box_accuracy(self) -> Tensor:
        return self.hits.mean(0)

    @property
    def value(self) -> float:
        return float(self.box_accuracy.max())

    @property
    def best_threshold(self) -> float:
        return float(self.thresholds[torch.argmax(self.box_accuracy)])


def max_box_accuracy(
    maps: Tensor,
    boxes: Tensor,
    thresholds: Tensor | None = None,
    iou_threshold: float = 0.5,
    max_maps: int = 1024,
) -> MaxBoxAcc:
    """MaxBoxAcc (Choe et al., Evaluating Weakly Supervised Object Localization Methods Right,
    CVPR 2020, Sec. 3): the best box accuracy over score-map thresholds, chosen over the dataset.

    Maps are min-max normalised; for each threshold t (default 0.00, 0.01, ..., 0.99; the
    authors' scripts default to a step of 0.001) the box around the largest component of
    ``map > t`` is a hit when its IoU with the ground-truth box is >= ``iou_threshold`` (0.5:
    the original MaxBoxAcc; the later MaxBoxAccV2, averaging IoU 0.3/0.5/0.7 and matching all
    components, is ``max_box_accuracy_v2``).
    Thresholds are evaluated in batches of ``max_maps`` thresholded maps.
    """
    maps = check_maps(maps)
    boxes = check_boxes(boxes, maps)
    if thresholds is None:
        thresholds = torch.arange(100, dtype=torch.float64) / 100
    thresholds = thresholds.to(device=maps.device, dtype=torch.float32)
    normalised = minmax_normalise(maps)
    b = maps.shape[0]
    t = thresholds.shape[0]
    hits = torch.empty(b, t, dtype=torch.float64, device=maps.device)
    per_chunk = max(1, max_maps // b)
    for start in range(0, t, per_chunk):
        thr = thresholds[start : start + per_chunk]
        fg = normalised.unsqueeze(1) > thr.view(1, -1, 1, 1)  # (B, t', H, W)
        pred = largest_component_boxes(fg.flatten(0, 1)).view(b, -1, 4)
        hits[:, start : start + thr.shape[0]] = (box_iou(pred, boxes.unsqueeze(1)) >= iou_threshold).double()
    return MaxBoxAcc(hits=hits, thresholds=thresholds.double())


# --- MaxBoxAccV2, attribution localisation, top-k intersection, localisation AUC ---------------


@dataclass(frozen=True)
class MaxBoxAccV2:
    """MaxBoxAccV2 over a dataset: ``hits`` (B, T, D) per image, CAM threshold and IoU threshold.

    ``thresholds`` (T,) are the CAM thresholds and ``iou_thresholds`` (D,) the IoU thresholds δ.
    ``box_accuracy`` (T, D) is the mean over images; ``per_iou`` (D,) the max over CAM thresholds
    for each δ (MaxBoxAcc at δ, the threshold chosen per δ as in the authors' code);
    ``value`` = the mean of ``per_iou`` over δ; ``best_thresholds`` (D,) where each max is reached
    (the first, if several). Bootstrap over images by resampling rows of ``hits``.
    """

    hits: Tensor
    thresholds: Tensor
    iou_thresholds: Tensor

    @property
    def box_accuracy(self) -> Tensor:
        return self.hits.mean(0)

    @property
    def per_iou(self) -> Tensor:
        return self.box_accuracy.amax(0)

    @property
    def value(self) -> float:
        return float(self.per_iou.mean())

    @property
    def best_thresholds(self) -> Tensor:
        return self.thresholds[torch.argmax(self.box_accuracy, dim=0)]


def _component_ids_scipy(foreground: Tensor) -> tuple[Tensor, int]:
    """Component id per pixel (N * H * W,) int64, 0 for background, and the number of ids + 1;
    SciPy's C labeller on the whole stack (8-connectivity inside a map, nothing across maps)."""
    import numpy as np
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labels, count = ndimage.label(foreground.numpy(), structure=structure)
    return torch.from_numpy(labels.ravel()).long(), int(count) + 1


def _component_ids_propagation(foreground: Tensor) -> tuple[Tensor, int]:
    """As ``_component_ids_scipy`` from the batched label propagation (``label_components``): a
    component's label is its largest flat index + 1 within its map, made unique over the stack
    by the map's offset (ids are sparse in 1 .. N * H * W)."""
    n, h, w = foreground.shape
    labels = label_components(foreground).flatten(1)
    offset = torch.arange(n, device=labels.device).view(-1, 1) * (h * w)
    ids = torch.where(labels > 0, labels + offset, torch.zeros_like(labels))
    return ids.flatten(), n * h * w + 1


def all_component_best_iou(foreground: Tensor, boxes: Tensor, use_scipy: bool | None = None) -> Tensor:
    """Best IoU (N,) float64 between each ground-truth box (N, 4) and the boxes around *every*
    8-connected component of the matching (N, H, W) foreground mask; 0 for an empty mask.

    Per-component boxes come from four ``scatter_reduce`` passes over the pixels (min / max of
    the columns and rows per component id; background pixels go to a discarded slot 0) and the
    best IoU per map from one more: no loop over maps or components. Component ids come from
    SciPy's C labeller on the CPU (``use_scipy=None``: on the CPU, as ``largest_component_boxes``;
    label propagation's 3x3 max-pools are ~30x slower there) and from the batched label
    propagation ``label_components`` on other devices.
    """
    n, h, w = foreground.shape
    device = foreground.device
    if use_scipy is None:
        use_scipy = device.type == "cpu"
    ids, slots = _component_ids_scipy(foreground.cpu()) if use_scipy else _component_ids_propagation(foreground)
    ids = ids.to(device)
    shape, i64 = (n, h, w), torch.int64  # (int32 halves the copies but its scatter_reduce is slower on CPU)
    xs = torch.arange(w, device=device, dtype=i64).view(1, 1, w).expand(shape).reshape(-1)
    ys = torch.arange(h, device=device, dtype=i64).view(1, h, 1).expand(shape).reshape(-1)
    maps = torch.arange(n, device=device, dtype=i64).view(n, 1, 1).expand(shape).reshape(-1)
    big = torch.full((slots,), max(h, w), dtype=i64, device=device)
    small = torch.full((slots,), -1, dtype=i64, device=device)
    x0 = big.scatter_reduce(0, ids, xs, "amin")
    y0 = big.scatter_reduce(0, ids, ys, "amin")
    x1 = small.scatter_reduce(0, ids, xs, "amax") + 1
    y1 = small.scatter_reduce(0, ids, ys, "amax") + 1
    owner = small.scatter_reduce(0, ids, maps, "amax")
    present = owner >= 0
    present[0] = False  # the background slot
    owner = owner[present]
    comp_boxes = torch.stack([x0, y0, x1, y1], dim=1)[present]
    iou = box_iou(comp_boxes, boxes.to(device)[owner])
    best = torch.zeros(n, dtype=torch.float64, device=device)
    return best.scatter_reduce(0, owner, iou, "amax")


def max_box_accuracy_v2(
    maps: Tensor,
    boxes: Tensor,
    thresholds: Tensor | None = None,
    iou_thresholds: tuple[float, ...] | Tensor = (0.3, 0.5, 0.7),
    multi_contour: bool = True,
    max_maps: int = 1024,
) -> MaxBoxAccV2:
    """MaxBoxAccV2 (Choe et al., Evaluation for Weakly Supervised Object Localization: Protocol,
    Metrics, and Datasets, TPAMI 2022, arXiv:2007.04178, the journal version of their CVPR 2020
    paper, which had MaxBoxAcc; the authors' clovaai/wsolevaluation, README "Improved box
    evaluation", ``evaluation.py``: ``compute_bboxes_from_scoremaps(multi_contour_eval=True)``,
    ``BoxEvaluator.accumulate`` / ``compute``, ``evaluate_wsol(multi_iou_eval=True)``).

    Maps are min-max normalised per image (the authors' ``normalize_scoremap``). At each CAM
    threshold t (default 0.00, 0.01, ..., 0.99, the grid of ``max_box_accuracy``; the authors'
    scripts default to ``cam_curve_interval=0.001``, 1000 thresholds: pass
    ``torch.arange(1000) / 1000`` for that grid) the foreground is ``normalised > t``, a box is
    drawn around *every* 8-connected component (the authors' ``multi_contour_eval=True`` keeps
    every cv2 contour), and the image is a hit at IoU threshold δ when its best-matching box has
    IoU >= δ with the ground-truth box. MaxBoxAccV2 = mean over δ in ``iou_thresholds`` (0.3,
    0.5, 0.7) of the max over t of the box accuracy (the threshold chosen separately per δ, as
    ``BoxEvaluator.compute``). ``multi_contour=False`` keeps only the largest component (the
    authors' ``multi_contour_eval=False``; then the δ = 0.5 column is ``max_box_accuracy``).

    Box convention: inclusive-exclusive (x0, y0, x1, y1) around the component's pixels, the
    same as ``max_box_accuracy`` and ``check_boxes``, with IoU on those areas. The authors take
    ``cv2.boundingRect`` (x, y, w, h) of a contour and use (x, y, x + w, y + h), clipped to
    (W - 1, H - 1), but score IoU with inclusive ends (area (x1 - x0 + 1) (y1 - y0 + 1)), so their
    predicted box is one pixel wider and taller than the component (except where it touches the
    right or bottom edge) while their ground-truth boxes are inclusive; we keep one consistent
    convention instead. Other differences: they threshold the map quantised to uint8 at
    ``int(t * 255)``, we threshold the float map; their contours come from
    ``cv2.RETR_TREE``, which also returns the inner contours of holes, whose boxes (inside the
    component's box) are extra candidates there and are not here; we take one ground-truth box
    per row (a multi-object image appears once per object; the authors match the best of all
    boxes of an image). Thresholds are evaluated in batches of ``max_maps`` thresholded maps.
    """
    maps = check_maps(maps)
    boxes = check_boxes(boxes, maps)
    if thresholds is None:
        thresholds = torch.arange(100, dtype=torch.float64) / 100
    thresholds = torch.as_tensor(thresholds).to(device=maps.device, dtype=torch.float32)
    if thresholds.ndim != 1 or thresholds.numel() == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D tensor of CAM thresholds in [0, 1), got shape {tuple(thresholds.shape)}")
    deltas = torch.as_tensor(iou_thresholds, dtype=torch.float64).to(maps.device)
    if deltas.ndim != 1 or deltas.numel() == 0 or not bool(((deltas > 0) & (deltas <= 1)).all()):
        raise ValueError(f"iou_thresholds must be a non-empty sequence of IoU thresholds in (0, 1], got {iou_thresholds}")
    normalised = minmax_normalise(maps)
    b, t = maps.shape[0], thresholds.shape[0]
    best_iou = torch.empty(b, t, dtype=torch.float64, device=maps.device)
    per_chunk = max(1, max_maps // b)
    for start in range(0, t, per_chunk):
        thr = thresholds[start : start + per_chunk]
        fg = (normalised.unsqueeze(1) > thr.view(1, -1, 1, 1)).flatten(0, 1)  # (B * t', H, W)
        gt = boxes.repeat_interleave(thr.shape[0], dim=0)
        if multi_contour:
            iou = all_component_best_iou(fg, gt)
        else:
            iou = box_iou(largest_component_boxes(fg), gt)
        best_iou[:, start : start + thr.shape[0]] = iou.view(b, -1)
    hits = (best_iou.unsqueeze(2) >= deltas.view(1, 1, -1)).double()
    return MaxBoxAccV2(hits=hits, thresholds=thresholds.double(), iou_thresholds=deltas)


def attribution_localisation(maps: Tensor, masks: Tensor, weighted: bool = False) -> Tensor:
    """Attribution localisation, the inside-total relevance ratio (Kohlbrenner et al., Towards
    Best Practice in Explaining Neural Network Decisions with LRP, IJCNN 2020; Quantus
    ``AttributionLocalisation``, ``quantus/metrics/localisation/attribution_localisation.py``),
    (B,) in [0, 1].

    mu = positive attribution inside the mask / total positive attribution, negative
    attribution set to zero first (the paper's definition; Quantus issue #211). With
    ``weighted=False`` this *is* ``relevance_mass_accuracy`` (the same formula: R_in / R_tot
    over positive relevance; a map with no positive mass scores 0), which it returns.
    ``weighted=True`` multiplies by the mask's share of the image, |mask| / (H * W), as Quantus's
    ``weighted=True`` does (``inside_attribution_ratio *= ratio``, ratio = mask size / data size).

    Quantus's defaults differ: ``abs=True`` scores |attribution| (negative attribution counts
    as evidence), and its ``positive_attributions=True`` with ``abs=False`` is the paper's
    definition, which we follow; it adds 1e-9 to the denominator. Its weighting ratio divides
    by ``x_batch[2:].size``, which is (B - 2) * C * H * W, not H * W (a slice of the batch axis),
    so it equals the image area only for a batch of three single-channel images; we use H * W.
    """
    mass = relevance_mass_accuracy(maps, masks)
    if not weighted:
        return mass
    b, h, w = maps.shape
    share = masks.to(mass.device).flatten(1).sum(1).double() / (h * w)
    return mass * share


def default_top_k(height: int, width: int) -> int:
    """Quantus's k = 1000 pixels at 224 x 224, scaled with the image area (at least 1)."""
    return max(1, round(1000 * height * width / (224 * 224)))


def top_k_intersection(maps: Tensor, masks: Tensor, k: int | None = None, concept_influence: bool = False) -> Tensor:
    """Top-k intersection (Theiner et al., Interpretable Semantic Photo Geolocalization, WACV
    2022, arXiv 2021; Quantus ``TopKIntersection``,
    ``quantus/metrics/localisation/top_k_intersection.py``), (B,) in [0, 1].

    The share of the k highest-attribution pixels that lie inside the mask. Quantus's default
    k = 1000 is for 224 x 224 images; the default here scales it with the area,
    k = round(1000 * H * W / 224**2) (82 at 64 x 64), so the same fraction of the image is
    taken at every resolution. Signed attribution (Quantus's ``abs=False``; its max
    normalisation does not change the order). Ties keep the lower flat index first
    (``stable_descending_order``; Quantus's ``np.argsort(-a)`` is not stable).
    ``concept_influence=True`` multiplies by (H * W) / |mask| as Quantus's option does.
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    b, h, w = maps.shape
    k = default_top_k(h, w) if k is None else k
    if not isinstance(k, int) or not 1 <= k <= h * w:
        raise ValueError(f"k must be an int in [1, H * W = {h * w}], got {k!r}")
    top = stable_descending_order(maps.flatten(1))[:, :k]
    inside = torch.gather(masks.flatten(1), 1, top).sum(1).double() / k
    if concept_influence:
        inside = inside * (h * w) / masks.flatten(1).sum(1).double()
    return inside


def localisation_auc(maps: Tensor, masks: Tensor) -> Tensor:
    """ROC AUC of the map as a pixel classifier of the mask (Fawcett, An Introduction to ROC
    Analysis, Pattern Recognition Letters 2006; Quantus ``AUC``,
    ``quantus/metrics/localisation/auc.py``, which calls ``sklearn.metrics.roc_curve`` and
    ``auc`` per image), (B,) in [0, 1].

    Computed for the whole batch at once as the Mann–Whitney statistic: with average ranks
    r_i (0-based, ties share their mean rank: ``_ranking.average_ranks``),
    AUC = (sum_{i in mask} r_i - P (P - 1) / 2) / (P N), P = |mask|, N = H * W - P, which equals
    the trapezoidal area under the ROC curve with tied scores (the probability that a mask
    pixel outranks a background pixel, ties counting one half). Signed attribution (Quantus's
    ``abs=False``; its max normalisation does not change ranks). A mask covering the whole image
    has no negatives and scores NaN.
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps)
    n = maps.shape[1] * maps.shape[2]
    pos = masks.flatten(1)
    ranks = average_ranks(maps.flatten(1))
    p = pos.sum(1).double()
    negatives = n - p
    u = (ranks * pos).sum(1) - p * (p - 1) / 2
    return torch.where(negatives > 0, u / (p * negatives).clamp_min(1), torch.full_like(p, float("nan")))
