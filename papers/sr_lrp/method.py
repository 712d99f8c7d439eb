"""Salient Relevance (SR) maps (Li, Tian, Mueller & Chen, "Beyond saliency: understanding
convolutional neural networks from saliency prediction on layer-wise relevance propagation",
Image and Vision Computing 2019; arXiv 1712.08268).

Two steps (abstract): an LRP relevance map of the input, then "a context-aware saliency map,
SR map, from the LRP-generated map which predicts areas close to the foci of attention instead
of isolated pixels that LRP reveals".

**Step 1, LRP as the authors' code computes it** (Hey1Li/Salient-Relevance-Propagation @ 65c2835,
"Imagenet_Alex vs VGG16.ipynb"): convolutions ``Z = Y + 1e-9; R = X · gradprop(R / Z)`` (LRP-0,
bias in Z), dense layers ``V = clamp(W, 0); Z = X Vᵀ + 1e-9`` (z⁺ without bias), max pools
winner-take-all, ReLUs pass; output relevance ``output × onehot(class)``. The heat map saved
for step 2 is ``|R|`` per colour channel, min–max normalised over the image, as an RGB image.
Here: zennit's ``Epsilon(1e-9)`` in convolutions and ``ZPlus(zero_params=["bias"])`` in dense
layers (papers/lrp/method.py's canonizers, input relevance at the normalised input).

**Step 2, context-aware saliency** (Goferman, Zelnik-Manor & Tal, CVPR 2010 / TPAMI 2012; the
authors ran Goferman's released code on the heat-map image). With patches p_i of the map,

    d(p_i, q) = d_colour(p_i, q) / (1 + c · d_position(p_i, q))                (dissimilarity)
    S_i^r = 1 − exp(−(1/K) Σ_{k=1..K} d(p_i^r, q_k))   q_k: the K most similar patches,
            searched at scales r·{1, 1/2, 1/4}                                (single scale r)
    S̄_i = (1/M) Σ_{r ∈ R} S_i^r (1 − d_foci^r(i))                             (immediate context)

d_colour the RMS difference of the patch vectors (in [0, 1]: the map is in [0, 1]),
d_position the distance of the patch centres over the larger image side, d_foci^r(i) the
distance from i to the nearest focus (S^r normalised to [0, 1] above ``foci_threshold``),
normalised to [0, 1]. Defaults are Goferman's: 7×7 patches, c = 3, K = 64, R = {100, 80, 50,
30} %, threshold 0.8. Batched: patches by ``unfold``, distances by ``cdist``, the K smallest by
``topk``, all on a ``work_size`` grid (README.md lists every simplification).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from zennit.composites import LayerMapComposite, layer_map_base
from zennit.core import Composite
from zennit.rules import Epsilon, ZPlus
from zennit.types import Convolution

from papers.lrp.method import COMPOSITES, canonizers, check_lrp_model, lrp_attribution, make_composite
from shared.explain import Explainer, register_method
from shared.explain.targets import Target
from shared.explain.upsample import upsample
from shared.models.adapter import ModelAdapter


def authors_composite() -> Composite:
    """The authors' rules: LRP-0 (stabiliser 1e-9) in convolutions, z⁺ without bias in dense layers."""
    layer_map = layer_map_base(1e-9) + [
        (Convolution, Epsilon(epsilon=1e-9)),
        (nn.Linear, ZPlus(stabilizer=1e-9, zero_params=["bias"])),
    ]
    return LayerMapComposite(layer_map=layer_map, canonizers=canonizers())


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def _patches(x: torch.Tensor, patch: int, stride: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Patch vectors (B, N, C·p·p) (the order of F.unfold's columns), centres (N, 2) over the larger side, and the patch grid."""
    b, _, h, w = x.shape
    # a strided view, then one copy (F.unfold's im2col is several times slower on CPU here)
    windows = x.unfold(2, patch, stride).unfold(3, patch, stride)  # (B, C, gh, gw, p, p)
    gh, gw = windows.shape[2], windows.shape[3]
    vecs = windows.permute(0, 2, 3, 1, 4, 5).reshape(b, gh * gw, -1)
    ys = torch.arange(gh, device=x.device, dtype=x.dtype) * stride + (patch - 1) / 2
    xs = torch.arange(gw, device=x.device, dtype=x.dtype) * stride + (patch - 1) / 2
    centres = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2) / max(h, w)
    return vecs, centres, (gh, gw)


def single_scale_saliency(x: torch.Tensor, r: float, neighbour_scales: Sequence[float], patch: int, stride: int,
                          k: int, c: float) -> tuple[torch.Tensor, tuple[int, int]]:
    """S^r (B, gh, gw) of the map ``x`` (B, C, H, W) resized by ``r``."""
    h, w = x.shape[-2:]
    size = (max(patch, round(h * r)), max(patch, round(w * r)))
    P, pos, grid = _patches(_resize(x, size), patch, stride)
    Qs, qpos = [P], [pos]
    for q in neighbour_scales:
        if q == 1.0:
            continue
        qsize = (round(size[0] * q), round(size[1] * q))
        if min(qsize) < patch:
            continue  # too small for one patch
        Qv, Qp, _ = _patches(_resize(x, qsize), patch, stride)
        Qs.append(Qv)
        qpos.append(Qp)
    Q, Qpos = torch.cat(Qs, dim=1), torch.cat(qpos, dim=0)
    n, m = P.shape[1], Q.shape[1]
    # RMS difference (in [0, 1] for maps in [0, 1]); computed directly, not as ‖p‖² + ‖q‖² − 2p·q,
    # whose cancellation leaves ~1e-3 between identical patches
    d_colour = torch.cdist(P, Q, compute_mode="donot_use_mm_for_euclid_dist") / P.shape[-1] ** 0.5
    d_position = torch.cdist(pos, Qpos)
    d = d_colour / (1 + c * d_position)
    # a patch is not its own neighbour: the first n candidates are the patches themselves
    self_mask = torch.zeros(n, m, dtype=torch.bool, device=x.device)
    self_mask[torch.arange(n), torch.arange(n)] = True
    d = d.masked_fill(self_mask, float("inf"))
    kk = max(1, min(k, m - 1))
    nearest = d.topk(kk, dim=-1, largest=False).values
    S = 1 - torch.exp(-nearest.mean(dim=-1))
    return S.reshape(x.shape[0], *grid), grid


def _minmax(t: torch.Tensor) -> torch.Tensor:
    """Per image min–max to [0, 1]; a constant image becomes 0."""
    flat = t.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(t.dtype).tiny), torch.zeros_like(flat))
    return out.reshape(t.shape)


def context_aware_saliency(x: torch.Tensor, patch: int = 7, stride: int = 3, scales: Sequence[float] = (1.0, 0.8, 0.5, 0.3),
                           neighbour_scales: Sequence[float] = (1.0, 0.5, 0.25), k: int = 64, c: float = 3.0,
                           foci_threshold: float = 0.8, context: bool = True) -> torch.Tensor:
    """Goferman et al.'s saliency S̄ (B, gh, gw) of maps ``x`` (B, C, H, W) in [0, 1], on the
    patch grid of scale 1 (see the module docstring). ``context=False`` skips the immediate-context
    step: S̄ = mean_r S^r."""
    if x.dim() != 4:
        raise ValueError(f"context_aware_saliency takes (B, C, H, W) maps, got shape {tuple(x.shape)}")
    if min(x.shape[-2:]) < patch:
        raise ValueError(f"maps of {tuple(x.shape[-2:])} px are smaller than one {patch}×{patch} patch")
    if not scales or k < 1 or c < 0 or patch < 1 or stride < 1:
        raise ValueError("need scales, k >= 1, c >= 0, patch >= 1 and stride >= 1")
    base_grid: tuple[int, int] | None = None
    maps = []
    for r in scales:
        S, grid = single_scale_saliency(x, float(r), neighbour_scales, patch, stride, k, c)
        if base_grid is None:
            base_grid = grid  # the first scale's patch grid (scale 1 by default) holds the result
        maps.append(_resize(S[:, None], base_grid)[:, 0])
    S = torch.stack(maps, dim=1)  # (B, M, gh, gw)
    if not context:
        return S.mean(dim=1)
    b, m, gh, gw = S.shape
    ys = torch.arange(gh, device=x.device, dtype=x.dtype)
    xs = torch.arange(gw, device=x.device, dtype=x.dtype)
    grid_pos = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2) / max(gh, gw)
    dist = torch.cdist(grid_pos, grid_pos)  # (N, N)
    foci = _minmax(S.reshape(b * m, -1)) > foci_threshold  # (B·M, N)
    d_foci = torch.where(foci[:, None, :], dist[None], torch.full_like(dist[None], float("inf"))).amin(dim=-1)
    d_foci = torch.where(torch.isfinite(d_foci), d_foci, torch.zeros_like(d_foci))  # no focus: no attenuation
    d_max = d_foci.amax(dim=1, keepdim=True)
    d_foci = torch.where(d_max > 0, d_foci / d_max.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(d_foci))
    return (S * (1 - d_foci.reshape(b, m, gh, gw))).mean(dim=1)


def relevance_image(relevance: torch.Tensor) -> torch.Tensor:
    """The authors' heat-map image: |R| per colour channel, min–max normalised over the image."""
    return _minmax(relevance.abs())


@register_method("sr_lrp", kinds=("cnn",), label="SR map (LRP)")
class SalientRelevance(Explainer):
    """SR map: context-aware saliency of the LRP heat map (see the module docstring)."""

    def __init__(self, adapter: ModelAdapter, lrp: str = "authors", work_size: int = 64, patch: int = 7, stride: int = 3,
                 scales: Sequence[float] = (1.0, 0.8, 0.5, 0.3), neighbour_scales: Sequence[float] = (1.0, 0.5, 0.25),
                 k: int = 64, c: float = 3.0, foci_threshold: float = 0.8, context: bool = True) -> None:
        """``lrp``: "authors" (their rules) or one of papers.lrp's composites; ``work_size``: the
        side the heat map is resized to before step 2 (Goferman: 250 px; the cost is O(work_size⁴))."""
        super().__init__(adapter)
        check_lrp_model(adapter)
        if lrp != "authors" and lrp not in COMPOSITES:
            raise ValueError(f"unknown LRP {lrp!r}; 'authors' or one of {', '.join(COMPOSITES)}")
        if work_size < patch:
            raise ValueError(f"work_size {work_size} is smaller than one {patch}×{patch} patch")
        self.lrp = lrp
        self.work_size = int(work_size)
        self.kw = dict(patch=int(patch), stride=int(stride), scales=tuple(scales), neighbour_scales=tuple(neighbour_scales),
                       k=int(k), c=float(c), foci_threshold=float(foci_threshold), context=bool(context))

    def composite(self) -> Composite:
        return authors_composite() if self.lrp == "authors" else make_composite(self.lrp, self.adapter)

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        relevance = lrp_attribution(self.adapter, images, target, self.composite())[0].float()
        heat = relevance_image(relevance)
        h, w = images.shape[-2:]
        side = min(self.work_size, max(h, w))
        work = _resize(heat, (max(self.kw["patch"], round(h * side / max(h, w))), max(self.kw["patch"], round(w * side / max(h, w)))))
        saliency = context_aware_saliency(work, **self.kw)
        return upsample(saliency, (h, w))


@register_method("lrp_authors", kinds=("cnn",), leaderboard=False, label="LRP (SR authors' rules, |R|)")
class LRPAuthors(Explainer):
    """Step 1 alone: the authors' LRP heat map, Σ_c |R_c| (what SR is computed from)."""

    def __init__(self, adapter: ModelAdapter) -> None:
        super().__init__(adapter)
        check_lrp_model(adapter)

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        return lrp_attribution(self.adapter, images, target, authors_composite())[0].abs().sum(1)
