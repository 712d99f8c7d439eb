"""Model-randomisation variants of the sanity check (:mod:`shared.metrics.sanity` has the
cascading one): independent layer randomisation (Adebayo, Gilmer, Muelly, Goodfellow, Hardt &
Kim, Sanity Checks for Saliency Maps, NeurIPS 2018, Sec. 3.1), and the smooth and efficient
MPRT of Hedström, Weber, Lapuschkin & Höhne, Sanity Checks Revisited: An Exploration to Repair
the Model Parameter Randomisation Test, XAI in Action workshop, NeurIPS 2023 (arXiv 2401.06465).

Layers are re-initialised with :func:`shared.metrics.sanity.reinitialise` (PyTorch's default
initialisation, seeded). Reference implementation: Quantus 0.6
(``quantus/metrics/randomisation/mprt.py``, ``smooth_mprt.py``, ``efficient_mprt.py``; layer
randomisation in ``quantus/helpers/model/pytorch_model.py``, ``get_random_layer_generator``).
Quantus re-seeds ``torch.manual_seed(seed + 1)`` before *every* layer (so all layers draw the
same stream); here layer i of ``layers`` gets ``seed + i``, as in
:func:`~shared.metrics.sanity.cascading_randomisation`. Quantus's layer list is every module
with ``reset_parameters`` (input to output for ``"bottom_up"``); here the caller names them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import check_maps
from .agreement import spearman
from .sanity import RandomisationStep, _resolve, cascading_randomisation, reinitialise
from .ssim import ssim

ModelExplain = Callable[[nn.Module], Tensor]
"""``explain(model) -> (B, H, W)``: the same images and fixed targets every call (as in
:func:`~shared.metrics.sanity.cascading_randomisation`)."""

ModelExplainFn = Callable[[nn.Module, Tensor, Tensor], Tensor]
"""``explain(model, images (M,C,H,W) in [0,1], index (M,)) -> maps (M,H,W)``; row m explains a
(noisy) copy of image ``index[m]`` for that image's fixed target."""


def _step(name: str, layers: tuple[str, ...], original: Tensor, maps: Tensor, keep_maps: bool) -> RandomisationStep:
    if maps.shape != original.shape:
        raise ValueError(f"explain returned maps of shape {tuple(maps.shape)} after randomising {name!r}, expected {tuple(original.shape)}")
    return RandomisationStep(
        layer=name,
        layers=layers,
        spearman=spearman(original, maps),
        spearman_abs=spearman(original.abs(), maps.abs()),
        ssim=ssim(original, maps),
        maps=maps if keep_maps else None,
    )


def _fresh_copy(model: nn.Module) -> nn.Module:
    working = copy.deepcopy(model)
    working.eval()
    return working


def independent_randomisation(
    model: nn.Module,
    layers: Sequence[str],
    explain: ModelExplain,
    seed: int = 0,
    keep_maps: bool = False,
) -> tuple[Tensor, list[RandomisationStep]]:
    """Independent randomisation: each of ``layers`` alone re-initialised in a fresh copy of the
    model, the rest keeping their trained weights (Adebayo et al. 2018, Sec. 3.1, "independent
    randomization"; Quantus ``MPRT(layer_order="independent")``).

    Layer i uses seed ``seed + i``. The caller's model is never modified; every copy is in eval
    mode. Per layer and image: Spearman rank correlation of the raw maps and of |maps| (Quantus
    MPRT's default score: ``abs=True``, ``correlation_spearman``; its normalisation is a
    positive per-batch scale, which ranks ignore) and SSIM of the min-max normalised maps, as
    :class:`~shared.metrics.sanity.RandomisationStep` (``layers`` holds the one layer).
    Returns the original maps and one step per layer. Cost: ``len(layers) + 1`` calls of
    ``explain`` and as many model copies (one alive at a time).
    """
    if not layers:
        raise ValueError("layers must name at least one module")
    for name in layers:
        _resolve(model, name)
    original = check_maps(explain(_fresh_copy(model)), "explain(model)").detach()
    steps = []
    for i, name in enumerate(layers):
        working = _fresh_copy(model)
        reinitialise(_resolve(working, name), seed + i)
        maps = check_maps(explain(working), f"explain(model) after randomising {name!r}").detach()
        steps.append(_step(name, (name,), original, maps, keep_maps))
    return original, steps


def smoothed_explain(
    explain: ModelExplainFn,
    images: Tensor,
    samples: int = 50,
    noise_magnitude: float = 0.1,
    seed: int = 0,
    max_batch: int = 64,
) -> ModelExplain:
    """``explain(model) -> (B, H, W)``: the mean of ``explain`` over ``samples`` copies of each
    image, ``samples - 1`` with Gaussian noise and the last one clean (Quantus
    ``SmoothMPRT.explain_smooth_batch_numpy``: "the last epsilon is defined as zero", so one
    sample is the plain explanation). Noise std per image = ``noise_magnitude * (max(x) - min(x))``
    over all its channels and pixels (Quantus: ``noise_magnitude=0.1``, ``nr_samples=50``).

    The noise is one standard-normal ``(samples - 1, C, H, W)`` tensor drawn in float64 on the
    CPU from ``torch.Generator().manual_seed(seed)``, scaled by each image's std, and is the
    same for every image (batch-invariance) and for every model the returned function is
    called with (common random numbers: the comparison sees the change in the model, not in
    the noise; Quantus draws fresh ``np.random.randn`` noise per call). Noisy images are
    computed in float64 and cast to the images' dtype; not clipped. The average is taken in
    float64, before any absolute value. ``samples * B`` rows per call, ``max_batch`` at a time.
    """
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples}")
    if not noise_magnitude >= 0:
        raise ValueError(f"noise_magnitude must be >= 0, got {noise_magnitude}")
    if int(max_batch) != max_batch or max_batch < 1:
        raise ValueError(f"max_batch must be an integer >= 1, got {max_batch}")
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[0] == 0 or not images.is_floating_point():
        raise ValueError(f"images must be a non-empty floating-point (B, C, H, W) tensor in [0, 1], got {images.shape if isinstance(images, Tensor) else type(images).__name__}")
    b, c, h, w = images.shape
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.cat(
        [torch.randn((samples - 1, c, h, w), generator=gen, dtype=torch.float64), torch.zeros((1, c, h, w), dtype=torch.float64)]
    ).to(images.device)
    flat = images.flatten(1)
    std = (noise_magnitude * (flat.amax(1) - flat.amin(1))).view(b, 1, 1, 1).to(torch.float64)
    owners = torch.arange(b, device=images.device).repeat_interleave(samples)
    sample_of = torch.arange(samples, device=images.device).repeat(b)

    def explain_smooth(model: nn.Module) -> Tensor:
        total = torch.zeros((b, h, w), dtype=torch.float64, device=images.device)
        for start in range(0, b * samples, max_batch):
            rows = torch.arange(start, min(start + max_batch, b * samples), device=images.device)
            owner = owners[rows]
            noisy = (images[owner].double() + noise[sample_of[rows]] * std[owner]).to(images.dtype)
            maps = explain(model, noisy, owner)
            if not isinstance(maps, Tensor) or tuple(maps.shape) != (rows.shape[0], h, w):
                got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
                raise ValueError(f"explain must return one (H, W) map per row, shape {(rows.shape[0], h, w)}, got {got}")
            check_maps(maps, "explain output")
            total.index_add_(0, owner, maps.detach().double())
        return total / samples

    return explain_smooth


def smooth_mprt(
    model: nn.Module,
    layers: Sequence[str],
    explain: ModelExplainFn,
    images: Tensor,
    samples: int = 50,
    noise_magnitude: float = 0.1,
    seed: int = 0,
    max_batch: int = 64,
    keep_maps: bool = False,
) -> tuple[Tensor, list[RandomisationStep]]:
    """Smooth MPRT (Hedström et al. 2023, sMPRT; Quantus ``SmoothMPRT``): cascading model
    parameter randomisation where every explanation, of the original and of each randomised
    model, is first denoised by averaging it over noisy copies of the input
    (:func:`smoothed_explain`: ``samples`` copies, the last clean, noise std
    ``noise_magnitude * (max - min)`` of each image).

    ``seed`` seeds the noise, and layer i gets ``seed + i``. ``layers`` are randomised
    cumulatively in the given order (:func:`~shared.metrics.sanity.cascading_randomisation`,
    which also gives the raw Spearman and the SSIM); Hedström et al. and Quantus
    (``layer_order="bottom_up"``) go from the input to the output, so list them that way.
    ``explain(model, images, index)`` explains rows for the fixed targets of ``images[index]``.
    Returns the smoothed original maps (float32) and one
    :class:`~shared.metrics.sanity.RandomisationStep` per layer: Quantus's score is
    ``spearman_abs`` (its defaults ``abs=True``, ``correlation_spearman``; its
    ``normalise_by_average_second_moment_estimate`` is a positive per-batch scale that ranks
    ignore). Quantus also reports an ``"original"`` entry (the original model's smoothed maps
    against a second draw of them); with common noise here it would be exactly 1, so it is
    omitted; and its ``return_average_correlation`` averages that entry in with the layers
    (it skips a key ``"orig"`` that does not exist), which this function does not do.
    Cost: ``(len(layers) + 1) * samples * B`` rows through ``explain``.
    """
    smooth = smoothed_explain(explain, images, samples, noise_magnitude, seed, max_batch)
    return cascading_randomisation(model, layers, smooth, seed=seed, keep_maps=keep_maps)


def discrete_entropy(maps: Tensor, n_bins: int = 100) -> Tensor:
    """Entropy (nats) of the histogram of each map's values (B,), float64.

    Quantus ``complexity_func.discrete_entropy``: ``scipy.stats.entropy(np.histogram(a,
    bins=n_bins)[0])``, i.e. ``n_bins`` equal-width bins over [min, max] of the map (a constant
    map: one bin of [v - 0.5, v + 0.5], entropy 0), bin i = [e_i, e_{i+1}) with the last bin
    closed, edges as ``np.linspace`` computes them (``e_i = min + i * (max - min) / n_bins``,
    the last edge exactly max), probabilities = counts / pixels, 0 log 0 = 0. Computed in
    float64 on the maps' values (float32 maps convert exactly).
    """
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins}")
    check_maps(maps)  # shape and finiteness
    flat = maps.detach().flatten(1).to(torch.float64)
    b, n = flat.shape
    lo = flat.amin(1, keepdim=True)
    hi = flat.amax(1, keepdim=True)
    constant = lo == hi
    lo = torch.where(constant, lo - 0.5, lo)
    hi = torch.where(constant, hi + 0.5, hi)
    step = (hi - lo) / n_bins
    edges = torch.arange(n_bins + 1, dtype=torch.float64, device=flat.device).view(1, -1) * step + lo
    edges[:, -1:] = hi
    # Bin of v: the last edge <= v (numpy's index, corrected against the edges, comes to this).
    index = (torch.searchsorted(edges.contiguous(), flat.contiguous(), right=True) - 1).clamp(0, n_bins - 1)
    counts = torch.zeros((b, n_bins), dtype=torch.float64, device=flat.device).scatter_add_(1, index, torch.ones_like(flat))
    p = counts / n
    return -torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p)).sum(1)


@dataclass(frozen=True)
class EfficientMPRT:
    """Discrete entropy of the maps before and after randomising the model, and their ratio."""

    before: Tensor  # (B,) entropy of the original model's maps (nats)
    after: Tensor  # (B,) entropy of the randomised model's maps
    ratio: Tensor  # (B,) after / before (Quantus returns ratio - 1)
    maps_before: Tensor | None = None
    maps_after: Tensor | None = None


def efficient_mprt(
    model: nn.Module,
    explain: ModelExplain,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    n_bins: int = 100,
    keep_maps: bool = False,
) -> EfficientMPRT:
    """Efficient MPRT (Hedström et al. 2023, eMPRT; Quantus ``EfficientMPRT``): the
    complexity of the explanation after the model is fully randomised relative to before,
    ``ratio = H(after) / H(before)`` with H the discrete entropy of the map's value histogram
    (:func:`discrete_entropy`, ``n_bins=100``: Quantus's default, ``complexity_func=
    discrete_entropy`` with no ``rule`` given so ``find_n_bins`` sets 100). Higher is better: a
    model-sensitive explanation of a random model looks like noise, with a flatter histogram.

    Quantus returns ``(after - before) / before`` = ``ratio - 1``. Randomisation: ``layers=None``
    re-initialises the whole model at once (:func:`~shared.metrics.sanity.reinitialise` on the
    root, one seeded stream through every module); a list re-initialises each named module,
    module i with ``seed + i`` (what cascading over them and keeping the last model gives;
    Quantus's default ``skip_layers=True`` cascades bottom-up over every module with
    ``reset_parameters`` and keeps only the last). Maps as ``explain`` returns them: Quantus's
    defaults ``abs=False``, ``normalise=False`` (the entropy ignores shifts and positive
    scales anyway). ``before == 0`` (a map with one value) gives ratio inf or NaN. Quantus's
    optional extra scores (entropy of the model's predictions) are not computed.
    """
    original = explain(_fresh_copy(model))
    check_maps(original, "explain(model)")
    original = original.detach()
    working = _fresh_copy(model)
    if layers is None:
        reinitialise(working, seed)
    else:
        if not layers:
            raise ValueError("layers must name at least one module, or be None to randomise the whole model")
        modules = [_resolve(working, name) for name in layers]
        for i, module in enumerate(modules):
            reinitialise(module, seed + i)
    randomised = explain(working)
    check_maps(randomised, "explain(model) after randomisation")
    randomised = randomised.detach()
    if randomised.shape != original.shape:
        raise ValueError(f"explain returned maps of shape {tuple(randomised.shape)} after randomisation, expected {tuple(original.shape)}")
    before = discrete_entropy(original, n_bins)
    after = discrete_entropy(randomised, n_bins)
    return EfficientMPRT(
        before=before,
        after=after,
        ratio=after / before,
        maps_before=original if keep_maps else None,
        maps_after=randomised if keep_maps else None,
    )
