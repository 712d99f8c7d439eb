"""Localisation metrics: pointing game, energy-based pointing game, weakly-supervised
localisation (CAM fixed threshold and MaxBoxAcc), relevance mass and rank accuracy.

Maps are (B, H, W) raw saliency at image resolution; masks (B, H, W) bool; boxes (B, 4) int64
x0, y0, x1, y1 inclusive-exclusive. Every function returns per-image values (B,) unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import box_masks, check_boxes, check_maps, check_masks, minmax_normalise, stable_descending_order
from .components import box_iou, largest_component_boxes


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

    Maps are min-max normalised; for each threshold t (default 0.00, 0.01, ..., 0.99 as in the
    authors' code) the box around the largest component of ``map > t`` is a hit when its IoU
    with the ground-truth box is >= ``iou_threshold`` (0.5: the original MaxBoxAcc; the later
    MaxBoxAccV2, averaging IoU 0.3/0.5/0.7 and matching all components, is not implemented).
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
