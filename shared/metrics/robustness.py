"""Robustness of explanations to small input perturbations: Max- and Avg-Sensitivity (Yeh,
Hsieh, Suggala, Inouye & Ravikumar, On the (In)fidelity and Sensitivity of Explanations,
NeurIPS 2019, the max-sensitivity SENS_MAX) and the local Lipschitz estimate (Alvarez-Melis &
Jaakkola, On the Robustness of Interpretability Methods, ICML Workshop on Human
Interpretability 2018, arXiv 1806.08049).

These metrics re-explain perturbed copies of the images, so they take an *explain function*
``explain_fn(images (M,C,H,W) in [0,1], index (M,)) -> maps (M,H,W)`` (:data:`ExplainFn`):
row ``m`` is a perturbed copy of image ``index[m]`` (0..B-1) and must be explained for that
image's fixed target (the caller looks it up by ``index``; the model's input normalisation
happens inside ``explain_fn``). Rows go through ``explain_fn`` in chunks of at most
``max_batch``, image-major (all samples of image 0, then image 1, ...).

Noise: one ``(samples, C, H, W)`` tensor drawn on the CPU from ``torch.Generator().manual_seed(seed)``
(float64, cast to the images' dtype) and added to *every* image, so image b's score does not
depend on which other images are in the batch (batch-invariance) and a seed gives the same
bytes on every device. Quantus draws fresh noise per image and per call; in distribution
the two are the same. Perturbed images are not clipped to [0, 1] (neither Quantus nor the
papers clip). Noise sizes are in [0, 1] image units, *before* the model's normalisation.

Reference implementation: Quantus 0.6 (``quantus/metrics/robustness/max_sensitivity.py``,
``avg_sensitivity.py``, ``local_lipschitz_estimate.py``); the differences are listed in each
docstring.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._checks import check_images, check_maps

ExplainFn = Callable[[Tensor, Tensor], Tensor]
"""``explain_fn(images (M,C,H,W) in [0,1], index (M,)) -> maps (M,H,W)``; row m explains a copy
of image ``index[m]`` for that image's fixed target."""

LIPSCHITZ_EPS = 1e-10  # Quantus similarity_func.lipschitz_constant adds it to the denominator


def _check_positive(value: float, name: str) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def _check_count(value: int, name: str) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")


def _call_explain(explain_fn: ExplainFn, images: Tensor, index: Tensor, what: str) -> Tensor:
    maps = explain_fn(images, index)
    m, _, h, w = images.shape
    if not isinstance(maps, Tensor) or tuple(maps.shape) != (m, h, w):
        got = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"explain_fn must return one (H, W) map per row, shape {(m, h, w)}, got {got} ({what})")
    check_maps(maps, f"explain_fn output ({what})")  # finite floats; float64 maps keep their precision
    return maps.detach().to(torch.float64)


def _check_inputs(images: Tensor, maps: Tensor | None, explain_fn: ExplainFn, max_batch: int) -> tuple[Tensor, Tensor]:
    """Validated images and float64 original maps (explained here, in chunks, when not given)."""
    _check_count(max_batch, "max_batch")
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (B, C, H, W) tensor in [0, 1], got {images.shape if isinstance(images, Tensor) else type(images).__name__}")
    if maps is None:
        index = torch.arange(images.shape[0], device=images.device)
        maps = torch.cat(
            [_call_explain(explain_fn, images[i : i + max_batch], index[i : i + max_batch], "original images") for i in range(0, images.shape[0], max_batch)]
        )
    else:
        check_maps(maps)
        maps = maps.detach().to(torch.float64)
    check_images(images, maps)
    return images, maps.to(images.device)


def _normalise_by_max(maps: Tensor) -> Tensor:
    """Each map divided by its own max |value| (all-zero maps unchanged): Quantus's
    ``normalise_by_max`` applied one image at a time (Quantus takes the max over the whole
    evaluation batch, which makes a score depend on the other images)."""
    peak = maps.flatten(1).abs().amax(1).view(-1, 1, 1)
    return torch.where(peak > 0, maps / torch.where(peak > 0, peak, torch.ones_like(peak)), maps)


def _noise(kind: str, samples: int, shape: tuple[int, int, int], scale: float, seed: int, like: Tensor) -> Tensor:
    """(samples, C, H, W) noise: ``"uniform"`` in [-scale, scale) or ``"gaussian"`` N(0, scale^2),
    drawn in float64 on the CPU from ``torch.Generator().manual_seed(seed)``, then cast to the
    images' dtype and device (the tests re-derive these draws to hand Quantus the same noise)."""
    gen = torch.Generator().manual_seed(int(seed))
    if kind == "uniform":
        noise = (torch.rand((samples, *shape), generator=gen, dtype=torch.float64) * 2 - 1) * scale
    elif kind == "gaussian":
        noise = torch.randn((samples, *shape), generator=gen, dtype=torch.float64) * scale
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return noise.to(dtype=like.dtype, device=like.device)


def _perturbed_scores(
    explain_fn: ExplainFn,
    images: Tensor,
    noise: Tensor,
    max_batch: int,
    score: Callable[[Tensor, Tensor, Tensor], Tensor],
) -> Tensor:
    """(B, S) scores of every image x sample: row r = b * S + s explains ``images[b] + noise[s]``;
    ``score(perturbed_maps (m,H,W) float64, perturbed_images (m,C,H,W), owners (m,)) -> (m,)``.
    Only one chunk of perturbed images and maps exists at a time."""
    b, s = images.shape[0], noise.shape[0]
    owners = torch.arange(b, device=images.device).repeat_interleave(s)
    sample_of = torch.arange(s, device=images.device).repeat(b)
    out = torch.empty(b * s, dtype=torch.float64, device=images.device)
    for start in range(0, b * s, max_batch):
        rows = torch.arange(start, min(start + max_batch, b * s), device=images.device)
        owner = owners[rows]
        perturbed = images[owner] + noise[sample_of[rows]]
        maps = _call_explain(explain_fn, perturbed, owner, "perturbed images")
        out[rows] = score(maps, perturbed, owner).to(torch.float64)
    return out.view(b, s)


def _sensitivities(
    explain_fn: ExplainFn,
    images: Tensor,
    maps: Tensor | None,
    radius: float,
    samples: int,
    seed: int,
    max_batch: int,
    normalise: bool,
) -> Tensor:
    _check_positive(radius, "radius")
    _check_count(samples, "samples")
    images, original = _check_inputs(images, maps, explain_fn, max_batch)
    if normalise:
        original = _normalise_by_max(original)
    flat = original.flatten(1)
    denominator = flat.norm(dim=1)
    noise = _noise("uniform", samples, tuple(images.shape[1:]), radius, seed, images)

    def score(perturbed_maps: Tensor, _perturbed: Tensor, owner: Tensor) -> Tensor:
        if normalise:
            perturbed_maps = _normalise_by_max(perturbed_maps)
        return (perturbed_maps.flatten(1) - flat[owner]).norm(dim=1)

    numerator = _perturbed_scores(explain_fn, images, noise, max_batch, score)
    # An all-zero explanation has no relative change: undefined (NaN), whatever the numerator.
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator)).view(-1, 1)
    return torch.where(denominator.view(-1, 1) > 0, numerator / safe, torch.full_like(numerator, float("nan")))


def max_sensitivity(
    explain_fn: ExplainFn,
    images: Tensor,
    maps: Tensor | None = None,
    radius: float = 0.02,
    samples: int = 10,
    seed: int = 0,
    max_batch: int = 256,
    normalise: bool = False,
) -> Tensor:
    """Max-Sensitivity per image (B,), float64: ``max_j ||Phi(x + d_j) - Phi(x)||_F / ||Phi(x)||_F``.

    Yeh et al. (NeurIPS 2019), SENS_MAX(Phi, f, x, r) = max_{||d|| <= r} ||Phi(x + d) -
    Phi(x)||, estimated by Monte Carlo over ``samples`` draws ``d_j`` uniform in the L-inf
    ball of ``radius`` (every pixel and channel independently uniform in [-r, r), in [0, 1]
    image units), and divided by ||Phi(x)|| as Quantus does (``MaxSensitivity``:
    ``similarity_func=difference``, ``norm_numerator = norm_denominator = fro_norm``, i.e. the
    Frobenius norm of the flattened map; ``perturb_func=batch_uniform_noise``; ``np.nanmax``
    over samples). Lower is better.

    ``maps``: the explanations of the unperturbed images (``explain_fn(images, arange(B))``
    when ``None``). ``normalise``: divide every map (original and perturbed) by its own max
    |value| first; Quantus 0.6's default is ``normalise=False`` (its docstring says True; the
    code says False) and its normalisation takes the max over the whole evaluation batch.
    No absolute value is taken (Quantus ``abs=False``); pass |maps| from ``explain_fn`` if wanted.
    An all-zero original map gives NaN.

    Defaults differ from Quantus's: ``radius`` 0.02 in [0, 1] units (Quantus ``lower_bound=0.2``
    in the units of whatever the model is fed, commonly ImageNet-standardised inputs, where
    0.2 is about 0.045 in [0, 1] units) and ``samples`` 10 (Quantus 200). Cost:
    ``B * samples`` rows through ``explain_fn``.
    """
    return _sensitivities(explain_fn, images, maps, radius, samples, seed, max_batch, normalise).amax(1)


def avg_sensitivity(
    explain_fn: ExplainFn,
    images: Tensor,
    maps: Tensor | None = None,
    radius: float = 0.02,
    samples: int = 10,
    seed: int = 0,
    max_batch: int = 256,
    normalise: bool = False,
) -> Tensor:
    """Avg-Sensitivity per image (B,), float64: the mean over samples of
    ``||Phi(x + d_j) - Phi(x)||_F / ||Phi(x)||_F``.

    Yeh et al. (NeurIPS 2019) (their AVG-sensitivity, the expectation over the ball; Bhatt et
    al., IJCAI 2020, use the same), the expectation of the sensitivity over the L-inf ball
    (Monte Carlo, uniform noise); Quantus ``AvgSensitivity`` (``np.nanmean`` over samples,
    otherwise as :func:`max_sensitivity`, whose docstring lists conventions and defaults).
    With the same ``seed`` the draws are those of :func:`max_sensitivity`.
    """
    return _sensitivities(explain_fn, images, maps, radius, samples, seed, max_batch, normalise).mean(1)


def local_lipschitz_estimate(
    explain_fn: ExplainFn,
    images: Tensor,
    maps: Tensor | None = None,
    sigma: float = 0.1,
    samples: int = 10,
    seed: int = 0,
    max_batch: int = 256,
    normalise: bool = True,
) -> Tensor:
    """Local Lipschitz estimate per image (B,), float64:
    ``max_j ||Phi(x) - Phi(x'_j)||_2 / (||x - x'_j||_2 + 1e-10)``, ``x'_j = x + N(0, sigma^2)``.

    Alvarez-Melis & Jaakkola (2018), L(x) = max_{x' in B_eps(x)} ||f(x) - f(x')||_2 /
    ||x - x'||_2, estimated as Quantus ``LocalLipschitzEstimate`` does: ``samples`` Gaussian
    perturbations of every pixel and channel (``batch_gaussian_noise``, std ``sigma``, here in
    [0, 1] image units; Quantus ``perturb_std=0.1`` in the model's input units), L2 norms of the
    flattened map and image difference (``distance_euclidean``), 1e-10 added to the
    denominator (``lipschitz_constant``), max over samples. ||x - x'|| is measured on the
    perturbed images actually fed to ``explain_fn`` (in their dtype), as Quantus does.
    Lower is better.

    ``normalise`` (default True, as Quantus): every map, original and perturbed, divided by its
    own max |value| (Quantus's ``normalise_by_max`` takes that max over the whole evaluation
    batch; equal to ours with ``batch_size=1``). The estimate scales with the maps, so without
    normalisation methods with different output scales are not comparable. No absolute value
    (Quantus ``abs=False``). ``samples`` defaults to 10 (Quantus 200). Cost: ``B * samples``
    rows through ``explain_fn``.
    """
    _check_positive(sigma, "sigma")
    _check_count(samples, "samples")
    images, original = _check_inputs(images, maps, explain_fn, max_batch)
    if normalise:
        original = _normalise_by_max(original)
    flat = original.flatten(1)
    noise = _noise("gaussian", samples, tuple(images.shape[1:]), sigma, seed, images)

    def score(perturbed_maps: Tensor, perturbed: Tensor, owner: Tensor) -> Tensor:
        if normalise:
            perturbed_maps = _normalise_by_max(perturbed_maps)
        numerator = (flat[owner] - perturbed_maps.flatten(1)).norm(dim=1)
        step = (images[owner].double() - perturbed.double()).flatten(1).norm(dim=1)
        return numerator / (step + LIPSCHITZ_EPS)

    return _perturbed_scores(explain_fn, images, noise, max_batch, score).amax(1)
