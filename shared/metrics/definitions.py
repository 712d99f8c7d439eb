"""Definition variants: one metric as each library or paper defines it, by name, as data.

Libraries that implement "the same" metric disagree on what it computes: Average Drop divides by
the score on the image in torch-cam (and the Grad-CAM++ paper), not in pytorch-grad-cam; deletion
deletes to black, to the normalisation mean colour (RISE's code: zero in normalised space) or to
the image's minimum (Quantus's ``perturb_baseline="black"``); insertion starts from a blur (RISE)
or from the baseline (torch-cam); the pointing game has a 15-px tolerance in TorchRay and none in
Quantus; MaxBoxAcc has a v1 and a v2. Each variant here is a :class:`Definition` named
``<metric>@<variant>``: which library and line it follows, what it does differently, and under
which key of a scores file (``shared.pipeline.score``) its per-image values are. The scores step
computes them; ``repro diff --definitions`` (``shared.pipeline.definitions``) ranks the same maps
under each and shows where the order of two methods flips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Definition:
    """One definition of a metric.

    ``name`` — ``<metric>@<variant>``; ``metric`` — the family; ``key`` — the per-image key in a
    scores file (the suite's own default keeps its plain name, e.g. ``average_drop``); ``follows``
    — the library or paper, file and line; ``differs`` — what this definition computes, in one
    line; ``scope`` — ``"every pair"`` (scored for every method × model) or ``"definition models"``
    (only on the models of ``eval.definitions.models``: the variants that cost forward passes).
    """

    name: str
    metric: str
    key: str
    follows: str
    differs: str
    lower_is_better: bool
    scope: str = "every pair"

    @property
    def variant(self) -> str:
        return self.name.split("@", 1)[1]


DEFINITIONS: tuple[Definition, ...] = (
    Definition(
        "average_drop@grad_campp", "average_drop", "average_drop",
        "Chattopadhyay et al., Grad-CAM++, WACV 2018, Sec. 5.1 (this suite's shared.metrics.average_drop_increase)",
        "100·max(0, Y − O)/Y; O on the [0, 1] image × the min-max map (black where the map is 0)",
        lower_is_better=True,
    ),
    Definition(
        "average_drop@torchcam", "average_drop", "average_drop@torchcam",
        "torch-cam 0.5.0, torchcam/metrics.py, ClassificationMetric.update (`torch.relu(selected_scores - masked_scores)"
        ".div(selected_scores + 1e-7)`, `cam.unsqueeze(1) * valid_input`)",
        "100·max(0, Y − O)/(Y + 1e-7); O on the model's normalised input × the min-max map (the mean colour where the map is 0)",
        lower_is_better=True,
    ),
    Definition(
        "average_drop@pytorch_grad_cam", "average_drop", "average_drop@pytorch_grad_cam",
        "pytorch-grad-cam 1.5.7, pytorch_grad_cam/metrics/cam_mult_image.py, DropInConfidence (`np.maximum(-scores, 0)` "
        "of `multiply_tensor_with_cam`; perturbation_confidence.py: scores_after − scores)",
        "100·max(0, Y − O), not divided by Y (probability points); O on the normalised input × the map",
        lower_is_better=True,
    ),
    Definition(
        "increase_in_confidence@grad_campp", "increase_in_confidence", "increase_in_confidence",
        "Chattopadhyay et al., Grad-CAM++, WACV 2018, Sec. 5.1",
        "100·1[O > Y]; O on the [0, 1] image × the min-max map",
        lower_is_better=False,
    ),
    Definition(
        "increase_in_confidence@torchcam", "increase_in_confidence", "increase_in_confidence@torchcam",
        "torch-cam 0.5.0, torchcam/metrics.py, ClassificationMetric.update (`selected_scores < masked_scores`); the same as "
        "pytorch-grad-cam 1.5.7 IncreaseInConfidence (`np.float32(scores > 0)`)",
        "100·1[O > Y]; O on the normalised input × the min-max map",
        lower_is_better=False,
    ),
    Definition(
        "deletion@rise_code", "deletion", "deletion@rise_code",
        "RISE's released code (eclique/RISE, evaluation.py CausalMetric, Evaluation.ipynb `substrate_fn=torch.zeros_like` "
        "on normalised tensors)",
        "pixels set to zero in normalised space, i.e. the normalisation mean colour",
        lower_is_better=True, scope="definition models",
    ),
    Definition(
        "deletion@black", "deletion", "deletion@black",
        "Petsiuk et al., RISE, BMVC 2018, Sec. 4.1 read literally (\"removing\" pixels to black); this suite's earlier "
        "default (`eval.perturbation: black`)",
        "pixels set to 0 in [0, 1] space (black)",
        lower_is_better=True, scope="definition models",
    ),
    Definition(
        "deletion@quantus", "deletion", "deletion@quantus",
        "Quantus 0.6, quantus/helpers/utils.py get_baseline_dict (`\"black\": arr.min(...)`), the default "
        "`perturb_baseline` of PixelFlipping",
        "pixels set to the image's minimum over all channels and pixels of the normalised input",
        lower_is_better=True, scope="definition models",
    ),
    Definition(
        "insertion@rise_code", "insertion", "insertion@rise_code",
        "RISE's released code (Evaluation.ipynb `blur = lambda x: conv2d(x, gkern(11, 5), padding=5)` on normalised tensors)",
        "pixels inserted onto RISE's blur of the normalised image",
        lower_is_better=False, scope="definition models",
    ),
    Definition(
        "insertion@torchcam", "insertion", "insertion@torchcam",
        "torch-cam 0.5.0, torchcam/metrics.py, DeletionInsertionMetric (baseline `torch.zeros_like(input_tensor)`; "
        "insertion \"restores them from the original input\")",
        "pixels inserted onto the deletion baseline: zero normalised input, i.e. the mean colour",
        lower_is_better=False, scope="definition models",
    ),
    Definition(
        "pointing_game@tol15", "pointing_game", "pointing_game",
        "TorchRay 1.0, torchray/benchmark/pointing_game.py (tolerance 15 px at 224 px; Zhang et al., EBP, IJCV 2018)",
        "a hit when the map's maximum lies within 15 px (scaled with the image side) of the object's mask",
        lower_is_better=False,
    ),
    Definition(
        "pointing_game@tol0", "pointing_game", "pointing_game@tol0",
        "Quantus 0.6, quantus/metrics/localisation/pointing_game.py (`hit = bool(s[np.argmax(a)])`)",
        "a hit only when the map's maximum lies on the mask (no tolerance)",
        lower_is_better=False,
    ),
    Definition(
        "maxboxacc@v1", "maxboxacc", "maxboxacc",
        "Choe et al., Evaluating WSOL Right, CVPR 2020, Sec. 3 (MaxBoxAcc; wsolevaluation, multi_contour_eval=False)",
        "the box around the largest component of the thresholded map, IoU ≥ 0.5; best threshold over the dataset",
        lower_is_better=False,
    ),
    Definition(
        "maxboxacc@v2", "maxboxacc", "maxboxacc_v2",
        "Choe et al., TPAMI 2022 (arXiv:2007.04178), clovaai/wsolevaluation evaluation.py (MaxBoxAccV2: multi_contour_eval=True, IoU 0.3/0.5/0.7)",
        "a box around every component, the best match counts; the mean over IoU 0.3, 0.5, 0.7 of each one's best-threshold accuracy",
        lower_is_better=False, scope="definition models",
    ),
)
"""Every definition variant, grouped by metric in this order."""

BY_NAME = {d.name: d for d in DEFINITIONS}


def definition(name: str) -> Definition:
    """The :class:`Definition` called ``name`` (``<metric>@<variant>``), with the known names on error."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown metric definition {name!r}; known: {', '.join(BY_NAME)}") from None


def families() -> dict[str, list[Definition]]:
    """metric -> its definitions, in :data:`DEFINITIONS`' order."""
    out: dict[str, list[Definition]] = {}
    for d in DEFINITIONS:
        out.setdefault(d.metric, []).append(d)
    return out


def per_image_values(scores: dict[str, Any], d: Definition) -> list[float] | None:
    """A scores file's per-image values under definition ``d``, or None where it was not scored.

    MaxBoxAcc is a dataset-level value (the best threshold over all images): its per-image values
    are each image's hits at the method's best threshold (v2: at each IoU's best threshold,
    averaged over the IoUs), whose mean is the metric; paired tests on them hold the thresholds
    fixed.
    """
    if d.metric != "maxboxacc":
        values = scores["per_image"].get(d.key)
        return None if values is None else [float(v) for v in values]
    block = scores.get(d.key)
    if not block:
        return None
    hits = torch.tensor(block["hits"], dtype=torch.float64)  # v1: (B, T); v2: (B, T, D)
    if hits.dim() == 2:
        hits = hits.unsqueeze(-1)
    best = hits.mean(0).argmax(0)  # (D,) the best threshold of each IoU
    chosen = hits.gather(1, best.view(1, 1, -1).expand(hits.shape[0], 1, -1)).squeeze(1)  # (B, D)
    return [float(v) for v in chosen.mean(1)]
