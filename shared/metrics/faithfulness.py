"""Faithfulness metrics: deletion / insertion AUC (RISE) and Average Drop / Increase in
Confidence (Grad-CAM++), with the T-TAME top-k% variants.

The model is abstracted as a *score function* ``score_fn(images (M,3,H,W), index (M,)) -> (M,)``:
``index[m]`` is the original image (0..B-1) that row ``m`` was made from, so the caller can pick
that image's class (or reference embedding). Scores are computed under ``torch.no_grad``.

Images are in [0, 1] (the model's normalisation happens inside ``score_fn``). What deletion
deletes *to* and what insertion inserts *onto* is a named convention (:data:`PERTURBATIONS`,
:func:`perturbation_endpoints`); the default, ``"rise_code"``, is what RISE's released code
does, which differs from "black" by a factor of several in deletion AUC on the same maps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_images, check_maps, minmax_normalise, stable_descending_order
from ._filters import gaussian_blur, rise_blur_parameters, rise_kernel1d, separable_blur

ScoreFn = Callable[[Tensor, Tensor], Tensor]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RISE's utils.py normalisation (read_tensor / preprocess)

PERTURBATIONS = ("rise_code", "black")
"""Deletion / insertion conventions, see :func:`perturbation_endpoints`."""
DEFAULT_PERTURBATION = "rise_code"


@dataclass(frozen=True)
class CurveResult:
    """Per-image AUCs (B,) and, when asked, the curves (B, steps + 1) and their x positions."""

    auc: Tensor
    curves: Tensor | None = None
    fractions: Tensor | None = None


def _call_score(score_fn: ScoreFn, images: Tensor, index: Tensor) -> Tensor:
    scores = score_fn(images, index)
    if not isinstance(scores, Tensor) or scores.shape != (images.shape[0],):
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"score_fn must return one score per row, shape ({images.shape[0]},), got {got}")
    return scores.detach().to(torch.float64)


def score_rows(make_rows: Callable[[Tensor], Tensor], owners: Tensor, score_fn: ScoreFn, max_batch: int) -> Tensor:
    """Score rows built lazily by ``make_rows(row_ids)`` in chunks of at most ``max_batch``.

    Row ``r`` is a perturbed copy of image ``owners[r]``; only one chunk of rows exists at a time.
    The one chunked forward of every perturbation metric here and of the perturbation methods
    (Score-CAM, occlusion, RISE: :mod:`shared.explain.perturb`). Returns (rows,) float64 scores.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    total = owners.shape[0]
    out = torch.empty(total, dtype=torch.float64, device=owners.device)
    with torch.no_grad():
        for start in range(0, total, max_batch):
            rows = torch.arange(start, min(start + max_batch, total), device=owners.device)
            out[rows] = _call_score(score_fn, make_rows(rows), owners[rows]).to(owners.device)
    return out


def scores_in_chunks(images: Tensor, score_fn: ScoreFn, max_batch: int = 256) -> Tensor:
    """``score_fn`` on every image (row i explains image i), ``max_batch`` images per call (float64)."""
    index = torch.arange(images.shape[0], device=images.device)
    return score_rows(lambda rows: images[rows], index, score_fn, max_batch)


def changed_counts(num_pixels: int, steps: int) -> list[int]:
    """Pixels changed after step k = 0..steps: floor(k * N / steps), so 0 first and N last.

    RISE's code changes ceil(N / steps) pixels per step instead; both agree whenever ``steps``
    divides N (e.g. 224*224 with 224 steps). Ours keeps the x axis exactly k / steps.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [(k * num_pixels) // steps for k in range(steps + 1)]


def trapezoid_auc(curves: Tensor) -> Tensor:
    """Trapezoid rule over equally spaced points on [0, 1]: (sum - (first + last) / 2) / steps."""
    steps = curves.shape[-1] - 1
    return (curves.sum(-1) - 0.5 * (curves[..., 0] + curves[..., -1])) / steps


def _check_endpoint_scores(endpoint_scores: tuple[Tensor, Tensor] | None, b: int) -> tuple[Tensor, Tensor] | None:
    if endpoint_scores is None:
        return None
    first, last = endpoint_scores
    if tuple(first.shape) != (b,) or tuple(last.shape) != (b,):
        raise ValueError(f"endpoint_scores must be two ({b},) tensors (scores at step 0 and at the last step)")
    return first, last


def _perturbation_curves(
    maps: Tensor,
    start: Tensor,
    finish: Tensor,
    score_fn: ScoreFn,
    steps: int,
    max_batch: int,
    endpoint_scores: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """Scores of images that move from ``start`` to ``finish`` pixel by pixel in saliency order.

    Row r = b * (steps' + 1) + k is image b after k steps; a pixel is taken from ``finish`` when
    its position in the (stable, descending) saliency order is below the step's count. The
    perturbed images are built chunk by chunk, never all at once, to bound memory.

    Step 0 is ``start`` and the last step is ``finish`` whatever the map: when their scores are
    given (``endpoint_scores``, computed once for every method explained on the same images),
    only the steps in between are scored — 2 of the steps + 1 forward passes per image saved.
    """
    b, h, w = maps.shape
    n = h * w
    known = _check_endpoint_scores(endpoint_scores, b)
    order = stable_descending_order(maps.flatten(1))
    position = torch.empty_like(order)
    position.scatter_(1, order, torch.arange(n, device=maps.device).expand(b, n))
    counts = torch.tensor(changed_counts(n, steps), device=maps.device)
    scored_steps = torch.arange(1, steps, device=maps.device) if known else torch.arange(steps + 1, device=maps.device)
    per_image = scored_steps.shape[0]
    owners = torch.arange(b, device=maps.device).repeat_interleave(per_image)
    step_of_row = scored_steps.repeat(b)

    def make_rows(rows: Tensor) -> Tensor:
        img = owners[rows]
        changed = position[img] < counts[step_of_row[rows]].view(-1, 1)  # (m, N)
        changed = changed.view(-1, 1, h, w)
        return torch.where(changed, finish[img], start[img])

    scores = score_rows(make_rows, owners, score_fn, max_batch).view(b, per_image)
    if known is None:
        return scores
    first, last = (t.to(device=scores.device, dtype=torch.float64).view(b, 1) for t in known)
    return torch.cat([first, scores, last], dim=1)


def _as_image_batch(value: float | Tensor, images: Tensor, name: str) -> Tensor:
    if isinstance(value, Tensor):
        if value.shape != images.shape:
            raise ValueError(f"{name} must be a tensor of the images' shape {tuple(images.shape)}, got {tuple(value.shape)}")
        return value.to(images)
    return torch.full_like(images, float(value))


def _mean_colour(images: Tensor, mean: Sequence[float] | Tensor | None) -> Tensor:
    values = torch.as_tensor(IMAGENET_MEAN if mean is None else mean, dtype=images.dtype, device=images.device).flatten()
    if values.numel() != images.shape[1]:
        raise ValueError(f"mean must have one value per channel ({images.shape[1]}), got {values.numel()}")
    return values.view(1, -1, 1, 1)


def perturbation_endpoints(
    images: Tensor,
    mean: Sequence[float] | Tensor | None = None,
    convention: str = DEFAULT_PERTURBATION,
) -> tuple[Tensor, Tensor]:
    """(deletion baseline, insertion substrate) of [0, 1] images under a named convention.

    ``"rise_code"`` (default) — what RISE's released code does (eclique/RISE, commit d91ea00).
    Its images are ImageNet-normalised tensors (``utils.py`` lines 15-22 and 46-52,
    ``transforms.Normalize``) and both substrates are computed on them:

    * deletion: ``substrate_fn=torch.zeros_like`` (``Evaluation.ipynb`` lines 128 and 459 of
      the raw .ipynb JSON; applied in ``evaluation.py`` lines 66-70 and 136-143), i.e. zero
      *in normalised space*, which is the per-channel normalisation mean in [0, 1] space (the
      notebook says so, line 187: the deleted image "is gray instead of black ... equal to the
      ImageNet mean"). Here: the colour ``mean`` everywhere.
    * insertion: ``blur = lambda x: nn.functional.conv2d(x, kern, padding=klen//2)`` with
      ``kern = gkern(11, 5)`` (``Evaluation.ipynb`` lines 73-78, 127, 458; ``gkern`` in
      ``evaluation.py`` lines 10-23, one 2-D kernel per channel, no mixing): a zero-padded
      convolution of the normalised tensor with scipy's smoothed delta
      (:func:`~shared.metrics._filters.rise_kernel1d`, not a sampled Gaussian). Zero padding
      of ``(x - mean) / std`` is padding ``x`` with ``mean``, and normalisation is
      per-channel affine, so in [0, 1] space the substrate is
      ``mean + blur_zero_padded(x - mean)``: after normalisation it equals RISE's for any
      kernel (whether it sums to 1 does not matter; RISE's does, to float32 rounding) and any
      ``std``, which is therefore not needed.

    Steps and AUC: RISE changes ``step`` pixels per iteration, ``ceil(H*W / step)`` iterations
    (``evaluation.py`` lines 64, 108-110, 131, 158-159; 224 pixels at 224 x 224 in the
    notebook), scores ``n_steps + 1`` points and takes the trapezoid rule over them
    (``auc``, lines 25-27); see :func:`changed_counts` for ours.

    ``"black"`` — this code's earlier behaviour, kept so its numbers can be reproduced:
    deletion to 0 in [0, 1] space (black) and insertion onto the images blurred in [0, 1]
    space with a sampled Gaussian (:func:`~shared.metrics._filters.gaussian_kernel1d`) and
    reflect padding. ``mean`` is ignored.

    Both use RISE's kernel size and sigma (11 and 5 at 224 px) scaled with the image side
    (:func:`~shared.metrics._filters.rise_blur_parameters`), so at 224 x 224 ``"rise_code"``
    is RISE's blur exactly. ``mean``: the model's normalisation mean (``ModelAdapter.mean``);
    ``None`` means ImageNet's, as RISE's code hard-codes.
    """
    if convention not in PERTURBATIONS:
        raise ValueError(f"perturbation convention must be one of {PERTURBATIONS}, got {convention!r}")
    size, sigma = rise_blur_parameters(images.shape[2], images.shape[3])
    if convention == "black":
        return torch.zeros_like(images), gaussian_blur(images, size, sigma, "reflect")
    colour = _mean_colour(images, mean)
    kernel = rise_kernel1d(size, sigma, images.device, images.dtype)
    substrate = colour + separable_blur(images - colour, kernel, "zeros")
    return colour.expand_as(images).clone(), substrate


def normalised_minimum(images: Tensor, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Tensor:
    """Quantus's deletion baseline as a [0, 1] image: each image's minimum over all channels and
    pixels of the *normalised* input (Quantus 0.6 ``get_baseline_dict``: ``"black": arr.min()``,
    PixelFlipping's default ``perturb_baseline``), mapped back through the normalisation, so the
    model sees that one value everywhere. Shape of ``images``."""
    colour = _mean_colour(images, mean)
    scale = _mean_colour(images, std)
    lowest = ((images - colour) / scale).amin(dim=(1, 2, 3), keepdim=True)
    return (colour + lowest * scale).expand_as(images).clone()


def deletion(
    maps: Tensor,
    images: Tensor,
    score_fn: ScoreFn,
    steps: int = 32,
    baseline: float | Tensor | None = None,
    max_batch: int = 256,
    return_curves: bool = False,
    endpoint_scores: tuple[Tensor, Tensor] | None = None,
    *,
    perturbation: str = DEFAULT_PERTURBATION,
    mean: Sequence[float] | Tensor | None = None,
) -> CurveResult:
    """Deletion AUC per image (Petsiuk et al., RISE, BMVC 2018, Sec. 4.1). Lower is better.

    Pixels are ordered by descending saliency (stable sort: ties keep the lower flat index
    first; RISE's ``np.flip(np.argsort(...))`` orders ties differently) and set to ``baseline``
    in ``steps`` equal steps; the AUC is the trapezoid rule of the score over steps + 1 points
    at fractions k / steps, k = 0..steps (see :func:`changed_counts`). ``baseline`` defaults to
    the ``perturbation`` convention's (:func:`perturbation_endpoints`): for ``"rise_code"`` the
    normalisation ``mean`` colour, i.e. zero in the model's normalised space as in RISE's code;
    for ``"black"``, 0 in [0, 1] space. An explicit ``baseline`` overrides the convention. All
    B * (steps + 1) perturbed images are scored in chunks of ``max_batch``; with
    ``endpoint_scores`` = (scores of the images, scores of the baseline), which no map
    changes, B * (steps - 1).
    """
    maps = check_maps(maps)
    images = check_images(images, maps)
    if baseline is None:
        baseline = perturbation_endpoints(images, mean, perturbation)[0]
    finish = _as_image_batch(baseline, images, "baseline")
    curves = _perturbation_curves(maps.to(images.device), images, finish, score_fn, steps, max_batch, endpoint_scores)
    return _result(curves, return_curves)


def insertion(
    maps: Tensor,
    images: Tensor,
    score_fn: ScoreFn,
    steps: int = 32,
    substrate: Tensor | None = None,
    max_batch: int = 256,
    return_curves: bool = False,
    endpoint_scores: tuple[Tensor, Tensor] | None = None,
    *,
    perturbation: str = DEFAULT_PERTURBATION,
    mean: Sequence[float] | Tensor | None = None,
) -> CurveResult:
    """Insertion AUC per image (Petsiuk et al., RISE, BMVC 2018, Sec. 4.1). Higher is better.

    Starting from ``substrate``, the image's pixels are inserted in descending saliency order
    in ``steps`` equal steps; AUC as in :func:`deletion`. ``substrate`` defaults to the
    ``perturbation`` convention's blurred images (:func:`perturbation_endpoints`): for
    ``"rise_code"`` RISE's blur of the normalised image with zero padding (padding with the
    ``mean`` colour in [0, 1] space), for ``"black"`` a sampled Gaussian with reflect padding
    in [0, 1] space. ``endpoint_scores`` = (scores of the substrate, scores of the images)
    skips those two steps.
    """
    maps = check_maps(maps)
    images = check_images(images, maps)
    if substrate is None:
        substrate = perturbation_endpoints(images, mean, perturbation)[1]
    start = _as_image_batch(substrate, images, "substrate")
    curves = _perturbation_curves(maps.to(images.device), start, images, score_fn, steps, max_batch, endpoint_scores)
    return _result(curves, return_curves)


def rise_substrate(
    images: Tensor, perturbation: str = DEFAULT_PERTURBATION, mean: Sequence[float] | Tensor | None = None
) -> Tensor:
    """Insertion's default start: the images blurred as the ``perturbation`` convention says."""
    return perturbation_endpoints(images, mean, perturbation)[1]


def _result(curves: Tensor, return_curves: bool) -> CurveResult:
    auc = trapezoid_auc(curves)
    if not return_curves:
        return CurveResult(auc=auc)
    steps = curves.shape[1] - 1
    fractions = torch.arange(steps + 1, dtype=torch.float64, device=curves.device) / steps
    return CurveResult(auc=auc, curves=curves, fractions=fractions)


def perturbation_curve_reference(
    maps: Tensor, images: Tensor, score_fn: ScoreFn, steps: int, finish: Tensor, start: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The straightforward definition, one image and one step at a time (tests and benchmark only).

    Moves image b from ``start`` (default: the image itself) towards ``finish`` pixel by pixel
    in descending-saliency order (ties: lower flat index first, via Python's ``sorted``), scoring
    each step with a batch of one. Returns (AUC (B,), curves (B, steps + 1)) in float64.
    Deletion: ``finish`` = baseline, ``start`` = None. Insertion: ``start`` = blurred images,
    ``finish`` = images.
    """
    b, _, h, w = images.shape
    n = h * w
    curves = torch.zeros(b, steps + 1, dtype=torch.float64)
    with torch.no_grad():
        for i in range(b):
            values = maps[i].flatten().tolist()
            order = sorted(range(n), key=lambda p: (-values[p], p))
            current = (images if start is None else start)[i].clone().reshape(-1, n)
            target = finish[i].reshape(-1, n)
            done = 0
            for k in range(steps + 1):
                count = (k * n) // steps
                idx = torch.tensor(order[done:count], dtype=torch.long, device=images.device)
                current[:, idx] = target[:, idx]
                done = count
                index = torch.tensor([i], device=images.device)
                curves[i, k] = float(score_fn(current.reshape(1, -1, h, w), index)[0])
    return trapezoid_auc(curves), curves


@dataclass(frozen=True)
class DropIncrease:
    """Per-image Average Drop (``drop``), Increase in Confidence (``increase``) and Average Gain
    (``gain``), in per cent.

    The dataset values of Chattopadhyay et al. are the means over images: ``drop.mean()`` and
    ``increase.mean()``; Average Gain's (Opti-CAM) is ``gain.mean()``. ``base`` is Y (score on
    the image), ``masked`` is O.
    """

    drop: Tensor
    increase: Tensor
    base: Tensor
    masked: Tensor
    gain: Tensor


def _drop_increase(base: Tensor, masked: Tensor) -> DropIncrease:
    if (base <= 0).any():
        bad = torch.nonzero(base <= 0).flatten().tolist()
        raise ValueError(
            f"Average Drop divides by the score on the full image Y, which must be > 0 (images {bad[:10]}); "
            "pass a positive score such as the softmax probability of the class"
        )
    drop = 100.0 * (base - masked).clamp_min(0) / base
    increase = 100.0 * (masked > base).to(torch.float64)
    return DropIncrease(drop=drop, increase=increase, base=base, masked=masked, gain=average_gain(base, masked))


def average_gain(base: Tensor, masked: Tensor) -> Tensor:
    """Average Gain per image, in per cent (Zhang, Rao, Avrithis & Kijak, Opti-CAM, CVIU 2024,
    Sec. 5.1: "AG = 100/N Σ max(0, o − p)/(1 − p)", the counterpart of Average Drop that credits
    a masked image scoring *higher*): AG_i = 100 · max(0, O_i − Y_i) / (1 − Y_i).

    Y (``base``) must be a probability: AG_i is 0 where Y_i = 1 (nothing left to gain; the
    formula's 0/0), so a saturated image counts as no gain rather than NaN.
    """
    if (base > 1).any() or (base < 0).any():
        raise ValueError("Average Gain divides by 1 - Y: the scores must be probabilities in [0, 1]")
    room = 1.0 - base
    gain = (masked - base).clamp_min(0) / room.clamp_min(torch.finfo(room.dtype).tiny)
    return 100.0 * torch.where(room > 0, gain, torch.zeros_like(gain))


MASKINGS = ("image", "normalised")
"""How a map masks an image for Average Drop / Increase in Confidence / Average Gain:
``image`` — the [0, 1] image times the map (black where the map is 0; Grad-CAM++'s X ∘ E);
``normalised`` — the model's normalised input times the map (torch-cam's ``cam * input_tensor``,
pytorch-grad-cam's ``multiply_tensor_with_cam``): in [0, 1] space mean + map · (x − mean), the
normalisation mean colour where the map is 0."""


def masked_images(images: Tensor, masks: Tensor, masking: str = "image", mean: Sequence[float] | Tensor | None = None) -> Tensor:
    """``images`` (M,3,H,W) in [0, 1] masked by ``masks`` (M,H,W) as ``masking`` says (:data:`MASKINGS`)."""
    if masking == "image":
        return images * masks.unsqueeze(1)
    if masking == "normalised":
        colour = _mean_colour(images, mean)
        # (x - m) / s * map, un-normalised: m + map * (x - m); the std cancels
        return colour + masks.unsqueeze(1) * (images - colour)
    raise ValueError(f"masking must be one of {MASKINGS}, got {masking!r}")


def keep_top_fraction(normalised: Tensor, keep: float) -> Tensor:
    """T-TAME's masking: zero the map below its (1 - keep) quantile, keep the values above.

    As in T-TAME's evaluation code (Ntrougkas et al., 2024, IDT-ITI/T-TAME ``get_masked_inputs``):
    ``mask = m * 1[m >= quantile(m, 1 - keep)]`` with torch's linear-interpolation quantile, so
    ties at the threshold are all kept. ``keep = 1`` returns the map itself.
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep fractions must lie in (0, 1], got {keep}")
    if keep == 1:
        return normalised
    flat = normalised.flatten(1)
    threshold = torch.quantile(flat, 1.0 - keep, dim=1, keepdim=True)
    return torch.where(flat >= threshold, flat, torch.zeros_like(flat)).view_as(normalised)


def average_drop_increase(
    maps: Tensor,
    images: Tensor,
    score_fn: ScoreFn,
    keep: tuple[float, ...] = (1.0,),
    max_batch: int = 256,
    base_scores: Tensor | None = None,
    masking: str = "image",
    mean: Sequence[float] | Tensor | None = None,
) -> dict[float, DropIncrease]:
    """Average Drop and Increase in Confidence (Chattopadhyay et al., Grad-CAM++, WACV 2018, Sec. 5.1).

    Per image i: AD_i = 100 * max(0, Y_i - O_i) / Y_i and IC_i = 100 * 1[O_i > Y_i], with Y_i the
    score on the image and O_i the score on image * map, the map min-max normalised per image
    to [0, 1]. The dataset values are the means over images (AD = 100/N sum max(0, Y-O)/Y). We
    divide by Y, as the paper does; some libraries omit that division (then the drop is in
    score units, not relative) - numbers from such code are not comparable with these.

    ``keep`` gives the T-TAME variants (Ntrougkas, Gkalelis & Mezaris, T-TAME, J. Imaging 2024):
    the mask is the normalised map with everything below the top ``keep`` fraction of pixels
    set to zero (:func:`keep_top_fraction`); T-TAME reports keep = 1.0, 0.5 and 0.15
    (AD/IC 100%, 50%, 15%). ``keep = 1.0`` is the original Grad-CAM++ metric. Returns one
    :class:`DropIncrease` per keep fraction. ``score_fn`` must return positive scores (use
    probabilities, as both papers do). ``base_scores``: Y, when already computed.

    ``masking`` (:data:`MASKINGS`): ``"image"`` (default) multiplies the [0, 1] image by the map,
    as the paper's X ∘ E; ``"normalised"`` multiplies the model's normalised input, as torch-cam
    and pytorch-grad-cam do (``mean``: the model's normalisation mean, ``ModelAdapter.mean``).
    The definition variants that differ only in what they divide by are in
    :mod:`shared.metrics.definitions`.
    """
    if masking not in MASKINGS:
        raise ValueError(f"masking must be one of {MASKINGS}, got {masking!r}")
    maps = check_maps(maps)
    images = check_images(images, maps)
    maps = maps.to(images.device)
    b = maps.shape[0]
    normalised = minmax_normalise(maps)
    masks = torch.stack([keep_top_fraction(normalised, float(k)) for k in keep])  # (F, B, H, W)
    index = torch.arange(b, device=images.device)
    if base_scores is not None:
        if tuple(base_scores.shape) != (b,):
            raise ValueError(f"base_scores must have shape ({b},), got {tuple(base_scores.shape)}")
        base = base_scores.to(device=images.device, dtype=torch.float64)
    else:
        base = scores_in_chunks(images, score_fn, max_batch)
    owners = index.repeat(len(keep))

    def make_rows(rows: Tensor) -> Tensor:
        img = owners[rows]
        return masked_images(images[img], masks.flatten(0, 1)[rows], masking, mean)

    masked = score_rows(make_rows, owners, score_fn, max_batch).view(len(keep), b)
    return {float(k): _drop_increase(base, masked[i]) for i, k in enumerate(keep)}
