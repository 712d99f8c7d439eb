"""Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel, Hu; CVPR Workshops 2020; arXiv 1910.01279).

Notation of the paper (Sec. 3): A^k_l the k-th feature map of layer l, X the input image,
s(·) min-max normalisation, Up(·) bilinear upsampling to the input size, Y = f(X) the class
score.

    H^k_l = s(Up(A^k_l))                                   (the mask of channel k, in [0, 1])
    C(A^k_l) = f(X ∘ H^k_l) − f(X_b)                       (Def. 2, Channel-wise Increase of Confidence)
    α^c_k = C(A^k_l)                                       (Eq. 5)
    L^c_Score-CAM = ReLU(Σ_k α^c_k A^k_l)                  (Eq. 4)

What we compute (README.md has the details and the evidence):

* **score** (``weighting="probability"``, the default): f is the softmax probability of the
  class, as the authors' code scores the masked copies (haofanwang/Score-CAM, cam/scorecam.py:
  ``output = F.softmax(output); score = output[0][predicted_class]``); an embedding model's score
  is the similarity to the reference (``Target.probability``). ``weighting="softmax_logits"``:
  α = softmax over the channels of the masked copies' logits (scores), what pytorch-grad-cam's
  ``ScoreCAM`` computes (score_cam.py, ``torch.nn.Softmax(dim=-1)(scores)``).
* **baseline** X_b: the authors' code drops f(X_b) (equivalently f(X_b) = 0); so do we by
  default. ``subtract_baseline=True`` subtracts the score of the fully masked image (H = 0):
  one more forward per image, and not a positive rescaling (it moves the map by
  −f(X_b) Σ_k A^k), so it is a knob, not a detail.
* **masking** (``masking="image"``, the default): X ∘ H in [0, 1] image space (masked pixels go
  to black, as Average Drop's E = L ∘ I does). The authors' code (and pytorch-grad-cam)
  multiply the *normalised* input (``input * norm_saliency_map`` after ImageNet
  normalisation), i.e. masked pixels go to the dataset's mean colour: ``masking="normalised"``
  (the row fed to the adapter is mean + H (X − mean), which it normalises to H · (X − mean)/std).
* channels whose upsampled map is constant get α = 0 (the authors' code skips them, ``continue``);
  with ``softmax_logits`` their mask is 0 and they enter the softmax, as in pytorch-grad-cam.
* the map: Σ_k α_k Up(A^k) then ReLU, at input resolution, as the authors' code sums
  ``score * saliency_map`` of the upsampled maps (upsampling is linear, so this is
  ReLU(Up(Σ_k α_k A^k))).

Cost: B·C forward passes (C the channels of the layer), run through
:func:`shared.explain.perturb.perturbed_scores`, ``max_batch`` rows at a time, each chunk of
masked copies built only when it is scored.
"""

from __future__ import annotations

from typing import Literal

import torch

from shared.explain import Explainer, Target, layer_signals, register_method
from shared.explain.perturb import perturbed_scores
from shared.explain.upsample import upsample
from shared.models.adapter import ModelAdapter

WEIGHTINGS = ("probability", "softmax_logits")
MASKINGS = ("image", "normalised")


def channel_masks(A: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """H^k = s(Up(A^k)) for (n, h, w) channel maps: (n, H, W) masks in [0, 1], and (n,) True
    where the upsampled map is constant (its mask is 0 there)."""
    up = upsample(A, size)
    flat = up.flatten(1)
    lo = flat.amin(dim=1).reshape(-1, 1, 1)
    span = flat.amax(dim=1).reshape(-1, 1, 1) - lo
    constant = span <= 0
    masks = torch.where(constant, torch.zeros_like(up), (up - lo) / torch.where(constant, torch.ones_like(span), span))
    return masks, constant.reshape(-1)


@register_method("scorecam")
class ScoreCAM(Explainer):
    """Score-CAM: each channel weighted by the score of the image masked by that channel."""

    def __init__(
        self,
        adapter: ModelAdapter,
        layer: str | None = None,
        max_batch: int = 256,
        weighting: Literal["probability", "softmax_logits"] = "probability",
        masking: Literal["image", "normalised"] = "image",
        subtract_baseline: bool = False,
    ) -> None:
        """``max_batch``: masked copies per forward pass (memory, not results); ``weighting``,
        ``masking``, ``subtract_baseline``: the conventions of the module docstring."""
        super().__init__(adapter, layer)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if masking not in MASKINGS:
            raise ValueError(f"masking must be one of {MASKINGS}, got {masking!r}")
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = int(max_batch)
        self.weighting = weighting
        self.masking = masking
        self.subtract_baseline = bool(subtract_baseline)

    def masked(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """X ∘ H as images in [0, 1]: (n, 3, H, W) from (n, 3, H, W) images and (n, H, W) masks."""
        if self.masking == "image":
            return images * masks[:, None]
        mean = self.adapter._mean.to(images.dtype)
        return mean + masks[:, None] * (images - mean)  # normalised: H · (X − mean) / std

    def weights(self, images: torch.Tensor, A: torch.Tensor, target: Target) -> torch.Tensor:
        """α (B, C): the scores of the B·C masked copies (module docstring)."""
        b, c = A.shape[:2]
        size = tuple(images.shape[-2:])
        flat = A.reshape(b * c, *A.shape[2:])
        owners = torch.arange(b, device=A.device).repeat_interleave(c)

        def make_rows(rows: torch.Tensor) -> torch.Tensor:
            masks, _ = channel_masks(flat[rows], size)
            return self.masked(images[owners[rows]], masks).to(images.dtype)

        probability = self.weighting == "probability"
        scores = perturbed_scores(self.adapter, target, make_rows, owners, probability=probability, max_batch=self.max_batch)
        scores = scores.reshape(b, c)
        if self.subtract_baseline:
            index = torch.arange(b, device=A.device)
            empty = lambda rows: self.masked(images[rows], torch.zeros_like(images[rows, 0]))  # noqa: E731
            scores = scores - perturbed_scores(self.adapter, target, empty, index, probability=probability, max_batch=self.max_batch)[:, None]
        if self.weighting == "softmax_logits":
            return scores.softmax(dim=1)
        constant = (A.flatten(2).amax(dim=2) - A.flatten(2).amin(dim=2)) <= 0
        return torch.where(constant, torch.zeros_like(scores), scores)  # the authors skip constant channels

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        if target is None:
            raise ValueError("Score-CAM needs a target (ClassTarget or SimilarityTarget)")
        signals = layer_signals(self.adapter, images, target, [self.layer], gradients=False)
        A = self.adapter.to_grid(signals.activations[0]).float()
        alpha = self.weights(images, A, target).to(A.dtype)
        cam = torch.einsum("bc,bchw->bhw", alpha, A)
        return upsample(cam, tuple(images.shape[-2:])).clamp_min(0)  # ReLU after the upsampling (the authors' order)
