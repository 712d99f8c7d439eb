"""ROAD: Remove And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and
Efficient Evaluation Strategy for Attribution Methods", ICML 2022).

The most (MoRF) or least (LeRF) relevant pixels are removed and filled in by *noisy linear
imputation*, which leaks less information about the removal mask than a constant baseline; the
model's score on the imputed images is recorded at each removal percentage (no retraining).

Reference implementation: github.com/tleemann/road_evaluation (commit e6b9987),
``road/imputations.py`` (``NoisyLinearImputer``: ``setup_sparse_system`` + ``spsolve``),
``road/imputed_dataset.py`` (``ImputedDataset.__getitem__``: which pixels are removed) and
``road/road.py`` (``run_road``). Quantus 0.6 ports both (``quantus.ROAD``,
``quantus.functions.perturb_func.noisy_linear_imputation``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_images, check_maps, stable_descending_order
from .faithfulness import ScoreFn, score_rows

ORDERS = ("morf", "lerf")
DEFAULT_PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Fractions of pixels removed. The paper's plots and pytorch-grad-cam's ``ROAD*Average`` use
10 %, 20 %, ..., 90 %; the authors' demo notebook and runtime benchmark use
(0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9); Quantus' default is 1 %, 3 %, ..., 99 % (MoRF only)."""

# The authors' ``neighbors_weights``: 1/6 for the 4 direct neighbours, 1/12 for the diagonals
# (they sum to 1 for an interior pixel).
_DIRECT, _DIAGONAL = 1.0 / 6.0, 1.0 / 12.0

_MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class ROADResult:
    """ROAD per image.

    ``curves`` (B, P) float64: ``score_fn`` on the image with the fraction ``percentages[k]`` of
    its pixels removed (in the given order) and imputed. ``percentages`` (P,) float64.
    ``area`` (B,): the unweighted mean of each curve over the percentages (see :func:`road`).
    """

    curves: Tensor
    percentages: Tensor
    area: Tensor


def _neighbour_sum(x: Tensor) -> Tensor:
    """Weighted sum of the in-image 8-neighbours of every pixel (the last two dims are H, W).

    The 3x3 depthwise convolution with the authors' stencil (1/6 direct, 1/12 diagonal, 0 at the
    centre) and zero padding, computed as ``(1/12) [1 2 1] x [1 2 1]`` (two 1-D passes of
    shifted in-place adds, cheaper than ``conv2d`` with groups in float64) minus the centre's 4/12.
    """
    rows = 2.0 * x
    rows[..., 1:] += x[..., :-1]
    rows[..., :-1] += x[..., 1:]
    box = 2.0 * rows
    box[..., 1:, :] += rows[..., :-1, :]
    box[..., :-1, :] += rows[..., 1:, :]
    return box.mul_(_DIAGONAL).sub_(x, alpha=4.0 * _DIAGONAL)


def _check_removed(removed: Tensor, images: Tensor) -> Tensor:
    b, _, h, w = images.shape
    if not isinstance(removed, Tensor) or removed.shape != (b, h, w):
        got = f"shape {tuple(removed.shape)}" if isinstance(removed, Tensor) else type(removed).__name__
        raise ValueError(f"removed must be a (B, H, W) bool tensor with (B, H, W) = {(b, h, w)} as the images, got {got}")
    if removed.dtype != torch.bool:
        raise ValueError(f"removed must be a bool tensor (True = pixel removed and imputed), got {removed.dtype}")
    removed = removed.to(images.device)
    everything = removed.flatten(1).all(1)
    if everything.any():
        bad = torch.nonzero(everything).flatten().tolist()
        raise ValueError(
            f"removed covers every pixel of images {bad[:10]}: linear imputation needs at least one known pixel "
            "(the system is singular); keep at least one pixel, e.g. use percentages < 1"
        )
    return removed


def _linear_imputation(images: Tensor, removed: Tensor, tol: float, max_iter: int | None) -> Tensor:
    """Noise-free imputed values (B, C, H, W) float64, equal to ``images`` on the known pixels.

    Solves, for every image and channel at once, the authors' system: for each removed pixel i,
    ``s_i x_i - sum_{j removed} w_ij x_j = sum_{j known} w_ij v_j`` with ``w`` the stencil weight
    of in-image neighbour j and ``s_i`` the sum of i's in-image neighbour weights (their
    ``sum_neighbors``, which starts at 1 and loses the weight of every neighbour outside the
    image). The matrix ``D_s - W_UU`` is symmetric and, when every connected group of removed
    pixels touches a known one (always, unless every pixel is removed), positive definite and
    diagonally dominant, so preconditioned conjugate gradients (Jacobi, ``1 / s_i``) converges.
    Each (image, channel) system stops updating at the iteration where its relative residual
    falls below ``tol`` (and converged systems are dropped from the working set every 16
    iterations), so its result does not depend on the other systems in the batch.
    """
    b, c, h, w = images.shape
    m = b * c
    f64 = torch.float64
    v = images.to(f64)
    unknown = removed.to(f64).unsqueeze(1)  # (B, 1, H, W)
    rhs = (unknown * _neighbour_sum((1.0 - unknown) * v)).reshape(m, h, w)
    weight_sum = _neighbour_sum(torch.ones(h, w, dtype=f64, device=images.device))
    unk = unknown.expand(b, c, h, w).reshape(m, h, w)
    diag = unk * weight_sum  # s_i on the unknowns, 0 elsewhere
    inv_diag = unk / weight_sum  # Jacobi preconditioner
    if max_iter is None:
        max_iter = 50 * (h + w) + 100
    solution = torch.zeros(m, h, w, dtype=f64, device=images.device)
    ids = torch.arange(m, device=images.device)
    threshold = (tol * rhs.flatten(1).norm(dim=1)) ** 2
    x = torch.zeros_like(rhs)
    r = rhs
    z = inv_diag * r
    p = z.clone()
    rz = (r * z).flatten(1).sum(1)
    active = (r * r).flatten(1).sum(1) > threshold
    iterations = 0
    while iterations < max_iter:
        if iterations % 16 == 0:
            n_active = int(active.sum())
            if n_active == 0:
                break
            if n_active < 0.75 * active.shape[0]:  # drop the converged systems from the working set
                done = ~active
                solution[ids[done]] = x[done]
                keep = torch.nonzero(active).flatten()
                ids, x, r, p, rz, active = ids[keep], x[keep], r[keep], p[keep], rz[keep], active[keep]
                unk, diag, inv_diag, threshold = unk[keep], diag[keep], inv_diag[keep], threshold[keep]
        iterations += 1
        ap = diag * p - unk * _neighbour_sum(p)  # p vanishes off the unknowns
        pap = (p * ap).flatten(1).sum(1)
        ok = active & (pap > 0)
        alpha = torch.where(ok, rz / torch.where(ok, pap, 1.0), 0.0).view(-1, 1, 1)
        x.add_(alpha * p)
        r = r - alpha * ap
        z = inv_diag * r
        rz_new = (r * z).flatten(1).sum(1)
        ok = active & (rz > 0)
        beta = torch.where(ok, rz_new / torch.where(ok, rz, 1.0), 0.0).view(-1, 1, 1)
        p = p.mul_(beta).add_(z)
        rz = rz_new
        active = active & ((r * r).flatten(1).sum(1) > threshold)
    if bool(active.any()):
        rel = ((r * r).flatten(1).sum(1) / threshold.clamp_min(1e-300)).sqrt() * tol
        bad = sorted({int(i) // c for i in ids[active].tolist()})
        raise ValueError(
            f"linear imputation did not converge in {max_iter} conjugate-gradient iterations for images {bad[:10]} "
            f"(worst relative residual {float(rel[active].max()):.3g} > tol = {tol:g}); raise max_iter or tol"
        )
    solution[ids] = x
    return torch.where(removed.unsqueeze(1), solution.view(b, c, h, w), v)


def noisy_linear_imputation(
    images: Tensor,
    removed: Tensor,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
    *,
    normals: Tensor | None = None,
    tol: float = 1e-10,
    max_iter: int | None = None,
) -> Tensor:
    """ROAD's noisy linear imputation (Rong et al., ICML 2022: "Noisy Linear Imputation"), batched.

    Follows ``NoisyLinearImputer`` in tleemann/road_evaluation ``road/imputations.py``: every
    removed pixel (``removed[b, y, x]`` True) becomes the weighted mean of its in-image
    8-neighbours, weight 1/6 for the 4 direct and 1/12 for the 4 diagonal neighbours, normalised
    by the sum of the weights of the neighbours that lie inside the image (the authors'
    ``sum_neighbors``): neighbours that are removed themselves enter as unknowns, so all removed
    pixels are solved jointly (a discrete harmonic fill-in of the holes; known pixels stay
    fixed). Then Gaussian noise of standard deviation ``noise`` is added to the imputed pixels
    only (the authors' ``res + noise * randn``), in the units of ``images``.

    The authors build one scipy sparse system per image and call ``spsolve``; here all images
    and channels are solved at once on their device by Jacobi-preconditioned conjugate
    gradients in float64 with the 3x3 stencil as a depthwise convolution (:func:`_neighbour_sum`;
    the system is symmetric positive definite unless every pixel is removed), to a relative residual of
    ``tol`` per (image, channel) within ``max_iter`` iterations (default 50 * (H + W) + 100);
    a ValueError says so if it does not converge. It agrees with the authors' ``spsolve`` to
    1e-10 (max abs) on small random images and masks (tests/metrics/test_road.py).

    ``images`` (B, C, H, W) float; ``removed`` (B, H, W) bool, not all True for any image
    (ValueError: the system is singular). Returns a (B, C, H, W) tensor of ``images``' dtype.

    Noise: ``normals`` (B, C, H, W) standard-normal draws, when given, are used as they are
    (:func:`road` passes batch-invariant ones); otherwise ``torch.randn`` of the images' shape
    from ``generator`` (on the images' device; ``None`` = torch's global generator). Those draws
    are deterministic for a given seed, batch shape and device, but not batch-invariant (image b
    does not get the same noise in a batch of another size). ``noise = 0`` draws nothing.

    Affine equivariance: each equation is a weighted mean with weights summing to 1, so the fill
    commutes with any per-channel affine map (e.g. the model's normalisation ``(x - m_c) / s_c``);
    only the noise scales: std ``noise`` here is std ``noise / s_c`` after normalisation.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        got = f"a {images.dtype} tensor of shape {tuple(images.shape)}" if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a floating-point (B, C, H, W) tensor, got {got}")
    if not torch.isfinite(images).all():
        raise ValueError("images contains NaN or infinite values")
    if noise < 0 or not math.isfinite(noise):
        raise ValueError(f"noise must be a finite standard deviation >= 0, got {noise}")
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    removed = _check_removed(removed, images)
    filled = _linear_imputation(images, removed, tol, max_iter)
    if noise > 0:
        if normals is None:
            normals = torch.randn(images.shape, generator=generator, dtype=torch.float64, device=images.device)
        elif normals.shape != images.shape:
            raise ValueError(f"normals must have the images' shape {tuple(images.shape)}, got {tuple(normals.shape)}")
        filled = torch.where(removed.unsqueeze(1), filled + noise * normals.to(device=images.device, dtype=torch.float64), filled)
    return filled.to(images.dtype)


# --- Batch-invariant standard normals ------------------------------------------------------


def _mul32(x: Tensor, m: int) -> Tensor:
    """(x * m) mod 2**32 for 32-bit values held in int64, without int64 overflow."""
    lo, hi = m & 0xFFFF, m >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: Tensor) -> Tensor:
    """Wellons' ``lowbias32`` integer hash (a bijection of 32-bit values), on int64 tensors."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def counter_normals(seed: int, image_ids: Tensor, shape: tuple[int, int, int], dtype: torch.dtype = torch.float64) -> Tensor:
    """Standard normals (M, C, H, W) that depend only on (seed, image id, channel, pixel).

    Counter-based: element e of image i is Box-Muller of two 32-bit hashes of (seed, i, 2e) and
    (seed, i, 2e + 1), computed with integer tensor ops on ``image_ids``' device. So image i gets
    the same draws whatever the batch size, the chunk it is computed in and the device (up to
    the last bits of log / cos), unlike ``torch.randn`` with a generator.
    """
    c, h, w = shape
    device = image_ids.device
    seed = int(seed) % (1 << 64)
    key = _hash32(_hash32(torch.tensor(seed & _MASK32, device=device)) ^ (seed >> 32))
    per_image = _hash32(key ^ _hash32(image_ids.to(torch.int64).view(-1, 1)))  # (M, 1)
    elements = torch.arange(c * h * w, dtype=torch.int64, device=device).view(1, -1)
    h1 = _hash32(per_image ^ _hash32(2 * elements))
    h2 = _hash32(per_image ^ _hash32(2 * elements + 1))
    u1 = (h1.to(torch.float64) + 0.5) / 4294967296.0  # (0, 1)
    u2 = h2.to(torch.float64) / 4294967296.0
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
    return z.view(-1, c, h, w).to(dtype)


# --- ROAD ------------------------------------------------------------------------------------


def _removal_counts(num_pixels: int, percentages: Sequence[float]) -> list[int]:
    counts = []
    for p in percentages:
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(
                f"percentages are fractions of pixels removed in [0, 1), got {p} (ROAD cannot remove every pixel: "
                "the imputation needs a known pixel)"
            )
        counts.append(int(num_pixels * p))  # the authors' int(width * height * th_p)
    return counts


def road(
    maps: Tensor,
    images: Tensor,
    score_fn: ScoreFn,
    percentages: Sequence[float] = DEFAULT_PERCENTAGES,
    order: str = "morf",
    noise: float = 0.01,
    seed: int = 0,
    max_batch: int = 256,
) -> ROADResult:
    """ROAD curves per image (Rong et al., ICML 2022), the variant without retraining.

    For each fraction ``p`` in ``percentages`` the ``k = int(H * W * p)`` pixels (the authors'
    ``int(width * height * th_p)``) are removed and filled by :func:`noisy_linear_imputation`,
    and ``score_fn`` (see :mod:`shared.metrics.faithfulness`: ``score_fn(images, index)``) scores
    the result. ``order="morf"``: the k most relevant pixels are removed (the first k of
    :func:`~shared.metrics._checks.stable_descending_order`, ties: lower flat index first);
    lower curves are better. ``order="lerf"``: the k least relevant (the last k of that order);
    higher curves are better. Maps are used as given (no abs, no normalisation: only the order
    matters).

    Conventions and differences from the references:

    * Removed set. The authors (``ImputedDataset.__getitem__``) break ties with a fixed random
      1e-4 jitter of the min-max-scaled map, Quantus with ``np.argsort(-a)`` (unstable); we use
      the stable order. The authors' LeRF at ``th_p`` removes all but the top ``int(N th_p)``
      pixels, i.e. ``th_p`` is the fraction *kept*; ours removes ``int(N p)`` pixels in both
      orders, so their LeRF at ``th_p`` is ours at ``1 - th_p`` (the same set when
      ``int(N (1 - th_p)) = N - int(N th_p)``). Quantus implements MoRF only.
    * Score. The authors report accuracy (argmax == label) and the mean softmax probability of
      the predicted class over the test set at each percentage; Quantus the accuracy (mean
      over images of ``y == argmax``). Pass the matching ``score_fn`` (e.g. a correctness
      indicator); the per-percentage dataset values are ``curves.mean(0)``.
    * Space. Imputation is done on the [0, 1] images, as the authors do (``run_road`` applies
      ``transform_test``, the normalisation, after imputing; their notebook: "the Dataset
      objects should return non-normalized Tensors"), with noise std ``noise`` in [0, 1] units.
      Quantus and pytorch-grad-cam impute the tensor given to the model, usually normalised:
      the linear fill commutes with per-channel affine normalisation, but their noise std
      ``noise`` corresponds to ``noise * s_c`` here (``s_c`` the channel's normalisation std).
    * Summary. The paper and Quantus report the per-percentage values (curves) and no area;
      ``area`` here is the unweighted mean of each curve over ``percentages``, the summary of
      pytorch-grad-cam's ``ROADMostRelevantFirstAverage`` / ``ROADLeastRelevantFirstAverage``
      (over 10 %, ..., 90 %; they average the score *change* from the unperturbed image, i.e.
      our area minus the image's score).
    * Noise. The authors draw fresh ``torch.randn`` noise per imputation. Here the standard
      normals are :func:`counter_normals` of (``seed``, image index in the batch, channel,
      pixel): one noise field per image, shared by every percentage and both orders (common
      random numbers: each point has the authors' distribution; points are correlated), and
      the same whatever ``max_batch`` and the batch size (batch-invariant).

    Cost: P * B imputations and forward passes, built and scored in chunks of ``max_batch``
    rows (:func:`~shared.metrics.faithfulness.score_rows`); the conjugate-gradient iterations
    grow with the size of the largest hole (about twice its diameter: ~230 at 64 x 64 with
    smooth maps), each one a 3x3 stencil pass over the chunk. On this project's 2-core CPU,
    B = 96 maps of 64 x 64, 9 percentages, both orders (1728 imputations): 20-60 s (shared
    machine), about what the authors' per-image ``spsolve`` takes (5-80 ms per imputation);
    the batching pays off on a GPU. Returns :class:`ROADResult`.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    maps = check_maps(maps)
    images = check_images(images, maps)
    maps = maps.to(images.device)
    if len(percentages) == 0:
        raise ValueError("percentages must not be empty")
    b, h, w = maps.shape
    c = images.shape[1]
    n = h * w
    counts = torch.tensor(_removal_counts(n, percentages), device=images.device)
    num_p = counts.shape[0]
    ranking = stable_descending_order(maps.flatten(1))
    position = torch.empty_like(ranking)
    position.scatter_(1, ranking, torch.arange(n, device=images.device).expand(b, n))
    owners = torch.arange(b, device=images.device).repeat_interleave(num_p)
    count_of_row = counts.repeat(b)

    def make_rows(rows: Tensor) -> Tensor:
        img = owners[rows]
        k = count_of_row[rows].view(-1, 1)
        removed = position[img] < k if order == "morf" else position[img] >= n - k
        normals = counter_normals(seed, img, (c, h, w)) if noise > 0 else None
        return noisy_linear_imputation(images[img], removed.view(-1, h, w), noise, normals=normals)

    curves = score_rows(make_rows, owners, score_fn, max_batch).view(b, num_p)
    fractions = torch.tensor([float(p) for p in percentages], dtype=torch.float64, device=curves.device)
    return ROADResult(curves=curves, percentages=fractions, area=curves.mean(1))
