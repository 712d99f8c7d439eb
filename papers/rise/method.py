"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das, Saenko, BMVC 2018; arXiv 1806.07421).

The importance of pixel λ is the expected score of the masked image given that λ is kept
(Eq. 1–4), estimated by Monte Carlo over N random masks M_i (Eq. 5–6):

    S_{I,f}(λ) ≈ 1 / (E[M] · N) · Σ_i f(I ⊙ M_i) · M_i(λ),     E[M] = p1,

f the class probability (softmax) of a classifier — the authors' code wraps the model in
``nn.Softmax`` — or the similarity to the reference of an embedding model, and the sum divided
by N·p1 as the code does (``sal = sal / N / self.p1``, explanations.py).

Masks (Sec. 3.2, ``generate_masks`` in explanations.py): N binary s×s grids, each cell 1 with
probability p1; each upsampled bilinearly to (s + 1)·C pixels, C = ⌈H / s⌉ the cell size
(skimage ``resize(order=1, mode='reflect', anti_aliasing=False)``), then cropped H×W at a random
shift (x, y) ∈ [0, C)². Bilinear resizing is linear, so a mask is R_x G R_yᵀ with R the (H, s)
rows x..x+H−1 of the (s+1)C × s interpolation matrix (:func:`interpolation_matrix`, equal to
skimage's resize); masks are built from it chunk by chunk, so memory does not grow with N·H·W.

The grids and shifts are drawn once per (N, s, p1, H, W) from a ``torch.Generator`` seeded by
``seed``, and every image gets the same masks (a map does not depend on the batch).

Masking as the code: ``torch.mul(self.masks, x.data)`` multiplies the *normalised* input
(``utils.preprocess``: ``Normalize(mean, std)``), so a masked pixel becomes 0 there, i.e. the
normalisation's mean colour in [0, 1] images: I ⊙ M means mean + M · (I − mean) here (the
paper's text says "dimming them … down to zero", README.md).
"""

from __future__ import annotations

import math

import torch

from shared.explain import Explainer, Target, register_method
from shared.explain.perturb import perturbed_scores
from shared.models.adapter import ModelAdapter


def interpolation_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in) float64 R: R @ v is ``v`` resized linearly to ``size_out`` samples,
    half-pixel centres and mirror boundary — skimage ``resize(order=1, mode='reflect')``
    (scipy ``zoom(grid_mode=True, mode='mirror')``), which the authors' ``generate_masks`` calls."""
    out = torch.arange(size_out, dtype=torch.float64)
    coord = (out + 0.5) * (size_in / size_out) - 0.5
    left = torch.floor(coord)
    frac = coord - left
    left = left.long()

    def mirror(i: torch.Tensor) -> torch.Tensor:
        if size_in == 1:
            return torch.zeros_like(i)
        period = 2 * (size_in - 1)
        i = i.remainder(period)
        return torch.where(i >= size_in, period - i, i)

    matrix = torch.zeros(size_out, size_in, dtype=torch.float64)
    rows = torch.arange(size_out)
    matrix.index_put_((rows, mirror(left)), 1 - frac, accumulate=True)
    matrix.index_put_((rows, mirror(left + 1)), frac, accumulate=True)
    return matrix


class RiseMasks:
    """N masks of an H×W image, drawn as the authors' ``generate_masks`` draws them."""

    def __init__(self, n_masks: int, s: int, p1: float, height: int, width: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        cell_h, cell_w = math.ceil(height / s), math.ceil(width / s)
        self.n_masks, self.p1 = n_masks, p1
        self.grid = (torch.rand(n_masks, s, s, generator=generator) < p1).double()  # grid < p1
        self.shift_h = torch.randint(0, cell_h, (n_masks,), generator=generator)  # x ∈ [0, C)
        self.shift_w = torch.randint(0, cell_w, (n_masks,), generator=generator)  # y ∈ [0, C)
        # resize to (s + 1)·C, crop [x : x + H]: the rows x..x+H−1 of the interpolation matrix
        self.up_h = interpolation_matrix(s, (s + 1) * cell_h)
        self.up_w = interpolation_matrix(s, (s + 1) * cell_w)
        self.offsets_h = torch.arange(height)
        self.offsets_w = torch.arange(width)

    def __call__(self, index: torch.Tensor) -> torch.Tensor:
        """(len(index), H, W) float64 masks M_index in [0, 1] (on index's device)."""
        index = index.cpu()
        rows_h = self.up_h[self.shift_h[index, None] + self.offsets_h]  # (n, H, s)
        rows_w = self.up_w[self.shift_w[index, None] + self.offsets_w]  # (n, W, s)
        return torch.einsum("nhi,nij,nwj->nhw", rows_h, self.grid[index], rows_w)


@register_method("rise", label="RISE")
class RISE(Explainer):
    """RISE: S = 1 / (N · p1) · Σ_i f(I ⊙ M_i) M_i over N random smooth masks (Eq. 6)."""

    def __init__(
        self,
        adapter: ModelAdapter,
        n_masks: int = 4000,
        s: int = 7,
        p1: float = 0.5,
        max_batch: int = 256,
        seed: int = 0,
        probability: bool = True,
    ) -> None:
        """``n_masks`` N (the paper: 4000 for ResNet-50, 8000 for VGG-16); ``s`` grid cells per side
        (the paper: 7 at 224 px; a cell is 1/s of the image at any size, so no rescaling);
        ``p1`` the probability of keeping a cell (0.5); ``max_batch`` masked images per forward
        pass; ``seed`` of the masks' generator; ``probability``: score the class probability
        (the authors' code), False the logit."""
        super().__init__(adapter)
        if n_masks < 1:
            raise ValueError(f"n_masks must be >= 1, got {n_masks}")
        if s < 1:
            raise ValueError(f"s (grid cells per side) must be >= 1, got {s}")
        if not 0 < p1 <= 1:
            raise ValueError(f"p1 (the probability of keeping a cell) must be in (0, 1], got {p1}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.n_masks, self.s, self.p1 = int(n_masks), int(s), float(p1)
        self.max_batch, self.seed, self.probability = int(max_batch), int(seed), bool(probability)
        self._masks: dict[tuple[int, int], RiseMasks] = {}

    def masks(self, height: int, width: int) -> RiseMasks:
        """The masks for H×W images, drawn once per size (N, s, p1 and the seed are fixed)."""
        if (height, width) not in self._masks:
            if self.s > min(height, width):
                raise ValueError(f"s = {self.s} grid cells do not fit a {height}×{width} image; use s <= {min(height, width)}")
            self._masks[height, width] = RiseMasks(self.n_masks, self.s, self.p1, height, width, self.seed)
        return self._masks[height, width]

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        b, _, height, width = images.shape
        masks = self.masks(height, width)
        mean = torch.tensor(self.adapter.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)

        # rows r = i * B + j: image j under mask i
        def make_rows(rows: torch.Tensor) -> torch.Tensor:
            m = masks(rows // b).to(images.device, images.dtype)[:, None]
            x = images[rows % b]
            return mean + m * (x - mean)  # the normalised image times M (explanations.py)

        owners = torch.arange(self.n_masks * b, device=images.device) % b
        scores = perturbed_scores(self.adapter, target, make_rows, owners, self.probability, self.max_batch)
        scores = scores.view(self.n_masks, b)
        saliency = torch.zeros(b, height, width, dtype=torch.float64, device=images.device)
        for start in range(0, self.n_masks, self.max_batch):  # Σ_i f_i M_i, a chunk of masks at a time
            index = torch.arange(start, min(start + self.max_batch, self.n_masks))
            saliency += torch.einsum("nb,nhw->bhw", scores[index.to(scores.device)], masks(index).to(images.device))
        return saliency / self.n_masks / self.p1  # sal / N / p1
