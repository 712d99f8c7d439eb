"""T-TAME (Ntrougkas, Gkalelis & Mezaris, IEEE Access 2024): a trained attention head over
several feature layers of a frozen classifier, and its training loss.

Not a registered per-image method: the head must be trained first on the classifier's training
split (a step, ``papers/ttame/figures.py``). The architecture, layers, loss and optimiser follow
the authors' code (github IDT-ITI/T-TAME, ``src/tame``): file/line references in README.md.

Notation. The frozen classifier f (images in [0, 1]; the adapter normalises), feature layers
l = 1..L with activations F_l ∈ R^{C_l × h_l × w_l} (a ViT's patch tokens laid out on their grid,
``ModelAdapter.to_grid``), K classes.

Head (the code's ``AttentionTAME``; ``AttentionTTAME`` is the same module)::

    B_l   = ReLU(BN_l(W_l * F_l) + F_l)              1×1 conv C_l → C_l, batch norm, skip, ReLU
    B'_l  = Up_{h_1 × w_1}(B_l)                      bilinear to the first (largest) layer's size
    C     = W_f * [B'_1; …; B'_L]                    1×1 fuser conv Σ C_l → K: class logit maps
    A     = σ(C)                                     attention maps in (0, 1), (K, h_1, w_1)

Loss (the code's ``Arrangement.classic_loss``), for a batch of B images x_i with the classifier's
own predicted class ŷ_i = argmax f(x_i) (not the label)::

    L = λ_ce · CE(f(x ⊙ Up(A_ŷ)), ŷ) + λ_a · L_area(A_ŷ) + λ_s · L_smooth(A_ŷ)
    λ_ce = 1.5, λ_a = 2, λ_s = 0.01

The explanation map of class k is the min–max normalised logit map C_k, upsampled to the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from shared.explain.capture import capture
from shared.explain.layers import block_layers, plain_features
from shared.models.adapter import ModelAdapter

CE_COEFF = 1.5
"""λ_ce: weight of the masked-image cross-entropy (code: ``Arrangement.ce_coeff``)."""
AREA_COEFF = 2.0
"""λ_a: weight of the area loss (``area_loss_coeff``)."""
SMOOTHNESS_COEFF = 0.01
"""λ_s: weight of the smoothness loss (``smoothness_loss_coeff``)."""
AREA_POWER = 0.3
"""p_a: the area loss's exponent (``area_loss_power``)."""
AREA_EPS = 0.0005
"""Added to the mask before the power (the derivative of m^0.3 at 0 is infinite)."""
SMOOTHNESS_POWER = 2
"""p_s: exponent of the neighbour differences (``smoothness_loss(power=2)``)."""
BORDER_PENALTY = 0.3
"""β: weight of the border term of the smoothness loss (``border_penalty=0.3``)."""
MAX_MAP_SIZE = 56
"""The code caps the head's map size at 56 (the first feature layer's size, if smaller)."""


def stage_outputs(adapter: ModelAdapter) -> list[str]:
    """The output of each stage of the model, bottom to top.

    A plain CNN (``shared.explain.layers.plain_features``): each max pool, and its last ReLU if
    the features do not end with a pool (VGG-16: ``features.4, 9, 16, 23, 30``; the benchmark's
    plain CNN: ``features.3, 7, 11, 17``). Any other model: its blocks (``block_layers``: ResNet
    stages, a ViT block's first norm).
    """
    plain = plain_features(adapter)
    if plain is None:
        return block_layers(adapter)
    prefix, features = plain
    ends = [f"{prefix}.{i}" for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    if not isinstance(features[-1], nn.MaxPool2d):
        relus = [i for i, m in enumerate(features) if isinstance(m, nn.ReLU)]
        if relus:
            ends.append(f"{prefix}.{relus[-1]}")
    return ends


def feature_layers(adapter: ModelAdapter, n_layers: int = 3) -> list[str]:
    """The outputs of the model's last ``n_layers`` stages (:func:`stage_outputs`).

    The code: ResNet-50 ``layer2, layer3, layer4`` (its last three stages), VGG-16
    ``features.16, .23, .30`` (the max pools ending its last three conv stages), ViT-B/16
    ``encoder_layer_{9,10,11}.ln`` (the first norm of its last three blocks): the same rule.
    """
    layers = stage_outputs(adapter)
    if not 1 <= n_layers <= len(layers):
        raise ValueError(f"model {adapter.name!r} has {len(layers)} stages ({', '.join(layers)}); cannot take the last {n_layers}")
    return layers[-n_layers:]


class TTAMEHead(nn.Module):
    """The attention head: per layer 1×1 conv → BN → + skip → ReLU → bilinear upsample; concat;
    1×1 fuser conv to one logit map per class; sigmoid. ``forward`` returns (A, C)."""

    def __init__(self, channels: Sequence[int], size: tuple[int, int], num_classes: int) -> None:
        super().__init__()
        self.size = (min(int(size[0]), MAX_MAP_SIZE), min(int(size[1]), MAX_MAP_SIZE))
        self.convs = nn.ModuleList(nn.Conv2d(c, c, kernel_size=1, bias=True) for c in channels)
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in channels)
        self.fuser = nn.Conv2d(sum(channels), num_classes, kernel_size=1, bias=True)

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        branches = [F.relu(bn(conv(f)) + f) for conv, bn, f in zip(self.convs, self.bns, features)]
        branches = [F.interpolate(b, size=self.size, mode="bilinear", align_corners=False) for b in branches]
        c = self.fuser(torch.cat(branches, dim=1))
        return torch.sigmoid(c), c


@torch.no_grad()
def classifier_features(adapter: ModelAdapter, images: Tensor, layers: Sequence[str]) -> tuple[Tensor, list[Tensor]]:
    """One forward pass of the frozen classifier: its logits and the grids (B, C, h, w) of ``layers``."""
    with capture({name: adapter.module(name) for name in layers}, track_gradients=False) as rec:
        logits = adapter(images)
    return logits, [adapter.to_grid(t) for t in rec.tensors()]


def masked_input(adapter: ModelAdapter, images: Tensor, masks: Tensor) -> Tensor:
    """x ⊙ m, as the code feeds it to the classifier (``Arrangement`` train policies).

    CNNs (``raw_normalize``): the [0, 1] image is masked, then normalised, so a masked pixel is
    black. ViT (``new``): the normalised image is masked, so a masked pixel is the normalisation
    mean; in [0, 1] terms that is m·x + (1 − m)·μ. ``masks``: (B, 1, H, W) or (B, H, W).
    """
    if masks.dim() == 3:
        masks = masks[:, None]
    if adapter.kind == "vit":
        mean = torch.tensor(adapter.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return masks * images + (1 - masks) * mean
    return masks * images


def masked_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """L_ce = −(1/B) Σ_i log softmax(f(x_i ⊙ m_i))_{ŷ_i}: the classifier's cross-entropy on the
    masked images against its own prediction ŷ on the unmasked images (``nn.CrossEntropyLoss``)."""
    return F.cross_entropy(logits, labels)


def area_loss(masks: Tensor, power: float = AREA_POWER, eps: float = AREA_EPS) -> Tensor:
    """L_area = mean over every mask element of (m + ε)^p, p = 0.3, ε = 5·10⁻⁴ (``Arrangement.area_loss``).

    p < 1 makes the loss concave: it rewards masks that are exactly 0 over most of the image
    more than masks that are uniformly small.
    """
    if power != 1:
        masks = (masks + eps) ** power
    return masks.mean()


def smoothness_loss(masks: Tensor, power: int = SMOOTHNESS_POWER, border_penalty: float = BORDER_PENALTY) -> Tensor:
    """L_smooth (``Arrangement.smoothness_loss``), for masks (B, M, h, w)::

        L_smooth = ( Σ |m[u+1, v] − m[u, v]|^p + Σ |m[u, v+1] − m[u, v]|^p
                     + β Σ (m[0, ·]^p + m[h−1, ·]^p + m[·, 0]^p + m[·, w−1]^p) ) / (p · B)

    summed over every mask of every image, p = 2, β = 0.3, divided by p times the batch size B
    (not by the number of masks: the code's "watch out, normalised by the batch size"). The
    border term adds the four edges element-wise, so the code needs square masks (h = w).
    """
    if masks.dim() != 4:
        raise ValueError(f"masks must be (B, M, h, w), got {tuple(masks.shape)}")
    b = masks.shape[0]
    dx = (masks[:, :, 1:, :] - masks[:, :, :-1, :]).abs().pow(power).sum()
    dy = (masks[:, :, :, 1:] - masks[:, :, :, :-1]).abs().pow(power).sum()
    border = masks.new_zeros(())
    if border_penalty > 0:
        edges = masks[:, :, -1, :] ** power + masks[:, :, 0, :] ** power + masks[:, :, :, -1] ** power + masks[:, :, :, 0] ** power
        border = float(border_penalty) * edges.sum()
    return (dx + dy + border) / float(power * b)


def ttame_loss(logits_masked: Tensor, labels: Tensor, masks: Tensor) -> dict[str, Tensor]:
    """L = λ_ce L_ce + λ_a L_area + λ_s L_smooth with the code's weights; every weighted term returned.

    ``masks``: the attention maps the regularisers see. The code (masking ``"random"``,
    ``Generic.get_a``) passes A[:, ŷ] — for every image the maps of *every* class predicted in the
    batch, (B, B, h, w) — while the cross-entropy masks image i with its own A_{ŷ_i} only.
    """
    ce = CE_COEFF * masked_cross_entropy(logits_masked, labels)
    area = AREA_COEFF * area_loss(masks)
    smooth = SMOOTHNESS_COEFF * smoothness_loss(masks)
    return {"loss": ce + area + smooth, "ce": ce, "area": area, "smoothness": smooth}


def regularised_masks(a: Tensor, labels: Tensor) -> Tensor:
    """A[:, ŷ] (B, B, h, w): the maps the code's area and smoothness losses read (``get_a``, masking ``random``)."""
    return a[:, labels]


def own_masks(a: Tensor, labels: Tensor) -> Tensor:
    """A_{ŷ_i} of each image i, (B, 1, h, w): the mask its own masked image is made with."""
    return a[torch.arange(a.shape[0], device=a.device), labels][:, None]


@dataclass
class TrainResult:
    head: TTAMEHead
    layers: list[str]
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: mean of each loss term


def _param_groups(head: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The code's ``get_optim``: biases without weight decay, every other parameter with it."""
    biases = [p for n, p in head.named_parameters() if n.rsplit(".", 1)[-1] == "bias"]
    others = [p for n, p in head.named_parameters() if n.rsplit(".", 1)[-1] != "bias"]
    return [{"params": biases, "weight_decay": 0.0}, {"params": others, "weight_decay": weight_decay}]


def build_head(adapter: ModelAdapter, feats: Sequence[Tensor], num_classes: int, seed: int) -> TTAMEHead:
    """A head for these features, its parameters drawn from torch's default initialisation under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = TTAMEHead([f.shape[1] for f in feats], tuple(feats[0].shape[-2:]), num_classes)
    return head.to(feats[0].device)


def train_head(
    adapter: ModelAdapter,
    images: Tensor,
    *,
    n_layers: int = 3,
    epochs: int = 8,
    batch_size: int = 32,
    lr: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    feature_batch: int = 128,
    cache_features: bool = True,
) -> TrainResult:
    """Train a T-TAME head on ``images`` (N, 3, H, W) in [0, 1] for the frozen ``adapter``.

    The code's optimiser: SGD with Nesterov momentum 0.9, weight decay 5·10⁻⁴ on weights (not
    biases), the one-cycle schedule to ``lr`` (``OneCycleLR`` defaults: 30 % warm-up, cosine,
    momentum cycled 0.85–0.95) over every step. Frozen: the classifier's parameters get no
    gradient and it stays in eval mode (its BN uses the running statistics). As the classifier
    is frozen and images are not augmented, its features and predictions are computed once.
    The image order of each epoch is a permutation drawn from a generator seeded with ``seed``.
    ``cache_features=False`` recomputes them every step instead (one more forward pass a step,
    no memory for Σ_l C_l h_l w_l floats per training image: at paper scale).
    """
    adapter.explain_mode()
    layers = feature_layers(adapter, n_layers)
    starts = range(0, images.shape[0], feature_batch) if cache_features else range(1)
    outs = [classifier_features(adapter, images[i : i + (feature_batch if cache_features else 1)], layers) for i in starts]
    num_classes = outs[0][0].shape[1]
    head = build_head(adapter, outs[0][1], num_classes, seed)
    if cache_features:
        predicted = torch.cat([o[0].argmax(1) for o in outs])
        feats = [torch.cat([o[1][k] for o in outs]) for k in range(len(layers))]
    del outs
    n = images.shape[0]
    steps = (n + batch_size - 1) // batch_size
    opt = torch.optim.SGD(_param_groups(head, weight_decay), lr=lr, momentum=momentum, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(epochs * steps, 1))
    g = torch.Generator().manual_seed(seed)
    result = TrainResult(head, layers)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=g).to(images.device)
        sums = {"loss": 0.0, "ce": 0.0, "area": 0.0, "smoothness": 0.0}
        for s in range(steps):
            idx = order[s * batch_size : (s + 1) * batch_size]
            x = images[idx]
            if cache_features:
                y, batch_feats = predicted[idx], [f[idx] for f in feats]
            else:
                logits, batch_feats = classifier_features(adapter, x, layers)
                y = logits.argmax(1)
            a, _ = head(batch_feats)
            up = F.interpolate(own_masks(a, y), size=x.shape[-2:], mode="bilinear", align_corners=False)
            terms = ttame_loss(adapter(masked_input(adapter, x, up)), y, regularised_masks(a, y))
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            sched.step()
            for k in sums:
                sums[k] += float(terms[k].detach()) / steps
        result.history.append(sums)
    head.eval()
    return result


@torch.no_grad()
def ttame_maps(adapter: ModelAdapter, head: TTAMEHead, layers: Sequence[str], images: Tensor, classes: Tensor) -> Tensor:
    """Explanation maps (B, H, W) in [0, 1] of ``classes`` in one forward pass: the head's logit map
    C_k (pre-sigmoid, as the code's ``get_c``), min–max normalised per image (``normalizeMinMax``,
    + 10⁻¹⁰ in the denominator), upsampled bilinearly to the image size. Head and classifier in
    eval mode, so each image's map depends on that image only."""
    head.eval()
    _, feats = classifier_features(adapter, images, layers)
    _, c = head(feats)
    maps = c[torch.arange(c.shape[0], device=c.device), classes.to(c.device)]
    lo = maps.flatten(1).amin(1).view(-1, 1, 1)
    hi = maps.flatten(1).amax(1).view(-1, 1, 1)
    maps = (maps - lo) / (hi - lo + 1e-10)
    return F.interpolate(maps[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
