"""Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014 (arXiv 1311.2901).

Two methods of the paper, as input-resolution maps for one target:

``occlusion`` (Sec. 4.2, "Occlusion Sensitivity", Fig. 7): slide a grey square over the image
and record the score of the target for each position. The paper plots the probability of the
correct class as a function of the square's position (Fig. 7 (d)); we turn that into a map at
pixel resolution the way captum's ``Occlusion`` does, so the map can be compared with it exactly:

    A(x)_p = mean over windows w covering p of ( f(x) − f(x ⊙ (1 − 1_w) + g · 1_w) ),

f the class probability (softmax) of a classifier — the quantity of Fig. 7 — or the similarity
to the reference of an embedding model; g the grey fill, the mean colour of the model's
normalisation (what a grey square is in the mean-subtracted input the paper's network sees:
Sec. 3, "subtracting the per-pixel mean"). Window starts 0, s, 2s, … up to ⌈(H − w)/s⌉·s, the
last window cut off at the border (captum's rule). Every occluded copy and the clean image go
through :func:`shared.explain.perturb.perturbed_scores`, the chunked forward of the
deletion / insertion metrics.

``deconvnet`` (Sec. 2.1): project the target back to the input through the network, with the
deconvnet's rectification: unpooling with the forward pass's switches is max pooling's
gradient, the transposed filters are convolution's gradient, and at each ReLU the signal coming
down is rectified (max(g, 0)) instead of gated by the forward activation — the ReLU rule of
:func:`shared.explain.gradients.relu_backward` (``rule="deconvnet"``). The (B, 3, H, W)
projection is reduced to a map by the maximum magnitude over colour channels (Simonyan et al.'s
reduction, the one the contract's other gradient maps use). Defined for ReLU CNNs only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from shared.explain import Explainer, Target, register_method
from shared.explain.gradients import REDUCTIONS, Reduction, input_gradients, reduce_channels, relu_modules
from shared.explain.perturb import perturbed_scores
from shared.models.adapter import ModelAdapter


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start of each window along one side: 0, s, …, ⌈(size − w)/s⌉·s (captum's Occlusion).

    The last window may run past the border; it is cut off there (``window_cover`` clips it)."""
    if not 1 <= window <= size:
        raise ValueError(f"the occlusion window ({window} px) must be between 1 px and the image side ({size} px)")
    if not 1 <= stride <= window:
        raise ValueError(
            f"the occlusion stride ({stride} px) must be between 1 px and the window ({window} px), "
            f"else some pixels are never occluded and have no score"
        )
    count = math.ceil((size - window) / stride) + 1
    return [k * stride for k in range(count)]


def window_cover(size: int, window: int, stride: int, device: torch.device | None = None) -> torch.Tensor:
    """(windows, size) float64: row k is the indicator of the pixels window k covers on one side."""
    starts = torch.tensor(window_starts(size, window, stride), device=device)
    pixels = torch.arange(size, device=device)
    return ((pixels[None, :] >= starts[:, None]) & (pixels[None, :] < starts[:, None] + window)).double()


def occlusion_maps(differences: torch.Tensor, cover_h: torch.Tensor, cover_w: torch.Tensor) -> torch.Tensor:
    """(B, H, W): each pixel's mean of ``differences`` (B, nh, nw) over the windows covering it.

    A window is the outer product of one row of ``cover_h`` (nh, H) and one of ``cover_w``
    (nw, W), so Σ_w D_w 1_w = cover_hᵀ D cover_w and the count of windows is the outer product of
    the column sums: the same sum captum accumulates window by window, in two matrix products.
    """
    total = torch.einsum("bij,iy,jx->byx", differences.to(cover_h.dtype), cover_h, cover_w)
    counts = cover_h.sum(0)[:, None] * cover_w.sum(0)[None, :]
    return total / counts


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{name} is one int or an (h, w) pair, got {value!r}")
    return pair  # type: ignore[return-value]


@register_method("occlusion", label="Occlusion")
class Occlusion(Explainer):
    """Occlusion sensitivity (Sec. 4.2): mean drop of the target's score when a grey square covers each pixel."""

    def __init__(
        self,
        adapter: ModelAdapter,
        window: int | Sequence[int] | None = None,
        stride: int | Sequence[int] | None = None,
        fill: str | float | Sequence[float] = "mean",
        probability: bool = True,
        max_batch: int = 256,
    ) -> None:
        """``window`` / ``stride`` in pixels (an int or (h, w)); None: 1/8 and 1/16 of the image
        side (28 and 14 px at the paper's 224 px; README.md says why). ``fill``: ``"mean"`` (the
        grey square: the normalisation's mean colour), a grey level or an RGB triple in [0, 1].
        ``probability``: score the class probability (Fig. 7); False scores the logit.
        ``max_batch``: occluded images per forward pass."""
        super().__init__(adapter)
        self.window = None if window is None else _pair(window, "window")
        self.stride = None if stride is None else _pair(stride, "stride")
        if fill == "mean":
            colour = adapter.mean
        elif isinstance(fill, (int, float)):
            colour = (float(fill),) * 3
        elif isinstance(fill, str):
            raise ValueError(f"fill is 'mean', a grey level or an RGB triple, got {fill!r}")
        else:
            colour = tuple(float(c) for c in fill)
            if len(colour) != 3:
                raise ValueError(f"fill as a colour has 3 values (RGB), got {fill!r}")
        self.fill = torch.tensor(colour, dtype=torch.float32).view(1, 3, 1, 1)
        self.probability = bool(probability)
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = int(max_batch)

    def geometry(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(window, stride), each (h, w) in pixels, for an image of this size."""
        window = self.window or (max(1, round(height / 8)), max(1, round(width / 8)))
        stride = self.stride or (max(1, round(height / 16)), max(1, round(width / 16)))
        return window, stride

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        b, _, height, width = images.shape
        (wh, ww), (sh, sw) = self.geometry(height, width)
        cover_h = window_cover(height, wh, sh, images.device)
        cover_w = window_cover(width, ww, sw, images.device)
        nh, nw = cover_h.shape[0], cover_w.shape[0]
        fill = self.fill.to(images.device, images.dtype)
        rows_h = cover_h.to(images.dtype)
        rows_w = cover_w.to(images.dtype)

        # rows r = k * B + i: image i under window k - 1 (k = 0: the image itself)
        def make_rows(rows: torch.Tensor) -> torch.Tensor:
            owner, k = rows % b, rows // b
            window = (k - 1).clamp_min(0)
            mask = rows_h[window // nw][:, :, None] * rows_w[window % nw][:, None, :]  # (n, H, W)
            mask = mask * (k > 0).to(images.dtype)[:, None, None]
            x = images[owner]
            return x + mask[:, None] * (fill - x)

        owners = torch.arange(b * (1 + nh * nw), device=images.device) % b
        scores = perturbed_scores(self.adapter, target, make_rows, owners, self.probability, self.max_batch)
        scores = scores.view(1 + nh * nw, b)
        differences = (scores[:1] - scores[1:]).T.reshape(b, nh, nw)  # f(x) − f(occluded)
        return occlusion_maps(differences, cover_h, cover_w)


@register_method("deconvnet", kinds=["cnn"], label="Deconvnet")
class Deconvnet(Explainer):
    """The deconvnet projection of the target to the input (Sec. 2.1), max |·| over colour channels."""

    def __init__(self, adapter: ModelAdapter, reduction: Reduction = "abs_max") -> None:
        """``reduction``: how the (3, H, W) projection becomes a map (see
        :func:`shared.explain.gradients.reduce_channels`); the default is the channels' maximum magnitude."""
        super().__init__(adapter)
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown channel reduction {reduction!r}; one of {', '.join(REDUCTIONS)}")
        # a clear error now, not at the first call, on a model whose non-linearity is not a ReLU
        relu_modules(adapter.model, adapter.name, "the deconvnet")
        self.reduction = reduction

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        return reduce_channels(input_gradients(self.adapter, images, target, rule="deconvnet"), self.reduction)
