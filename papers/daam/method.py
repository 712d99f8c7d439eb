"""Dynamic Accumulated Attention Map (DAAM) — Liao, Gao, Zhang, Pattern Recognition 2025.

For every ViT block l, the decomposition module "unlocks" the class token of the attention
output: with A the attention probabilities (heads h) and V the values,

    z_cls[(h, i)] = Σ_j A[h, 0, j] · V[h, j, i]                         (class-token output)
    S_l[j, (h, i)] = A[h, 0, j] · V[h, j, i]                             (spatial features)

so Σ_j S_l[j, c] = z_cls[c] exactly. Channel importance coefficients come from decomposing the
score y_c through the projection that follows:

    w_l = ReLU(∂y_c / ∂z_cls)                                            (supervised ViT)
    M_l[j] = ReLU(Σ_c w_l[c] · S_l[j, c]),  j over patch tokens          (block attention map)
    M_l ← (M_l − min M_l) / (max(M_l − min M_l) + 1e-10)                 (per block, optional)
    D_L = Σ_{l ≤ L} M_l                                                   (dynamic accumulated map)

Self-supervised ViT (no classifier): the weights are dimension-wise importance weights of the
embedding f from a k-NN memory bank (:class:`MemoryBank`), and the backward pass starts from
Σ_d w_d f_d; no ReLU on the gradients there (as in the authors' code).

Facts taken from the authors' code (ly9802/DynamicAccumulatedAttentionMap, ``utils/DAAM.py``,
``utils/SelfSupervisedViT_DAAM.py``, ``DINO_DAAM_Visualization_oneSample.py``); deviations are
listed in the README. Baselines for ViTs: Grad-CAM at the last block is ``gradcam`` of
papers/gradcam on the ViT adapter; attention rollout (``attention_rollout``) is registered here
and computed in ``shared.explain.rollout``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from shared.explain import Explainer, frozen, register_method, upsample
from shared.explain.rollout import attention_rollout, capture_attention, vit_blocks
from shared.explain.targets import Target
from shared.models.adapter import ModelAdapter

@dataclass
class DAAMFlow:
    """The block-by-block flow of one batch: per-block maps and their running sums, (B, L, h, w)."""

    block_maps: torch.Tensor  # M_l, after ReLU (and per-block min–max if enabled)
    accumulated: torch.Tensor  # D_l = Σ_{l' ≤ l} M_l'
    weights: list[torch.Tensor]  # w_l (B, C) per block


def block_map(attention: torch.Tensor, values: torch.Tensor, weights: torch.Tensor, prefix: int) -> torch.Tensor:
    """M_l before normalisation: ReLU(Σ_c w_c S[j, c]) over patch tokens, (B, N − P).

    Σ_c w_c S[j, c] = Σ_h A[h, 0, j] Σ_i w[(h, i)] V[h, j, i]; S itself is never materialised.
    """
    b, heads, n, d = values.shape
    w = weights.reshape(b, heads, d)  # channel c = h·d + i, as timm lays out the heads
    m = torch.einsum("bhj,bhji,bhi->bj", attention[:, :, 0, :], values, w)
    return m[:, prefix:].clamp_min(0)


def min_max(m: torch.Tensor) -> torch.Tensor:
    """Per-row min–max normalisation of (B, N) as the authors write it (eps 1e-10 on the span)."""
    m = m - m.min(dim=1, keepdim=True).values
    return m / (m.max(dim=1, keepdim=True).values + 1e-10)


def display_mapping(accumulated: torch.Tensor) -> torch.Tensor:
    """The authors' display mapping of a flow (B, L, ...): x / max(D_L), sigmoid(5x) − 0.5, min–max per map.

    For figures only; the explainer returns the raw D_l.
    """
    flat = accumulated.flatten(2)
    top = flat[:, -1:].amax(dim=2, keepdim=True).clamp_min(1e-12)  # the final map's maximum, per image
    y = torch.sigmoid(5.0 * flat / top) - 0.5
    lo, hi = y.amin(dim=2, keepdim=True), y.amax(dim=2, keepdim=True)
    return ((y - lo) / (hi - lo).clamp_min(1e-12)).reshape(accumulated.shape)


# Per-block variants (the zoo ViT has 4 blocks): the map accumulated up to block l.
@register_method("daam", kinds=["vit"], blocks=True)
class DAAM(Explainer):
    """Supervised DAAM: ``explainer(images, target)`` → D_block (all blocks by default), (B, H, W)."""

    #: ReLU on ∂y/∂z_cls (the supervised variant does, the self-supervised one does not)
    relu_weights = True

    def __init__(self, adapter: ModelAdapter, layer: str | None = None, block: int | None = None, block_norm: bool = True) -> None:
        super().__init__(adapter, layer)
        depth = len(vit_blocks(adapter))
        if adapter.num_prefix_tokens < 1:
            raise ValueError(f"DAAM reads the class token; model {adapter.name!r} has no prefix (class) token")
        if block is not None and not 1 <= block <= depth:
            raise ValueError(f"block must be in 1..{depth} for model {adapter.name!r} ({depth} blocks), got {block}")
        self.block = block or depth
        self.block_norm = block_norm

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        flow = self.flow(images, target)
        return upsample(flow.accumulated[:, self.block - 1], tuple(images.shape[-2:]))

    def flow(self, images: torch.Tensor, target: Target | None) -> DAAMFlow:
        """One forward and one backward pass for all blocks; the whole flow at patch resolution."""
        with frozen(self.adapter), capture_attention(self.adapter, values=True, track_gradients=True) as rec:
            with torch.enable_grad():
                seed = self.seed_score(images, target)
                grads = torch.autograd.grad(seed, rec.outputs)
        weights = [g[:, 0, :].detach() for g in grads]  # ∂(score)/∂z at the class token
        if self.relu_weights:
            weights = [w.clamp_min(0) for w in weights]
        prefix = self.adapter.num_prefix_tokens
        maps = []
        for a, v, w in zip(rec.attentions, rec.values, weights):
            m = block_map(a, v, w, prefix)
            maps.append(min_max(m) if self.block_norm else m)
        block_maps = torch.stack(maps, dim=1)
        b, n_blocks, n = block_maps.shape
        h, w_ = self.adapter.grid_size(n)
        block_maps = block_maps.reshape(b, n_blocks, h, w_)
        return DAAMFlow(block_maps=block_maps, accumulated=block_maps.cumsum(dim=1), weights=weights)

    def seed_score(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        """The scalar whose gradient gives the weights: Σ_b y_c(b) (images are independent)."""
        if target is None:
            raise ValueError("supervised DAAM needs a target (ClassTarget or SimilarityTarget); daam_ssl needs none")
        return target(self.adapter(images)).sum()


# ---------------------------------------------------------------------------------------------
# Self-supervised variant: dimension-wise importance weights from a k-NN memory bank


@dataclass
class MemoryBank:
    """L2-normalised training embeddings (N, D) and their labels (N,), for k-NN voting."""

    features: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.features.dim() != 2 or self.labels.dim() != 1 or self.features.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"a memory bank needs features (N, D) and labels (N,), got {tuple(self.features.shape)} "
                f"and {tuple(self.labels.shape)}"
            )
        self.features = F.normalize(self.features.float(), dim=1, eps=1e-12)
        self.labels = self.labels.long()

    @classmethod
    def build(cls, adapter: ModelAdapter, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64) -> "MemoryBank":
        """Embed ``images`` (training split) with the model's embedding (see :func:`embedding`)."""
        with torch.no_grad():
            feats = [embedding(adapter, images[i : i + batch_size].to(adapter.device)) for i in range(0, len(images), batch_size)]
        return cls(torch.cat(feats), labels.to(adapter.device))


def embedding(adapter: ModelAdapter, images: torch.Tensor) -> torch.Tensor:
    """The image embedding f: the model output of an embedding model, else the pre-logits
    (class token after the final norm) of a classifier ViT, as a self-supervised DINO gives it."""
    if adapter.task == "embedding":
        return adapter(images)
    head = getattr(adapter.model, "head", None)
    if head is None:
        raise TypeError(f"model {adapter.name!r} has no `head`; cannot take its pre-logits as the embedding")
    store: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda m, inp: store.append(inp[0]))
    try:
        adapter(images)
    finally:
        handle.remove()
    return store[0]


def dimension_weights(f: torch.Tensor, bank: MemoryBank, k: int = 20, temperature: float = 0.07) -> tuple[torch.Tensor, torch.Tensor]:
    """Dimension-wise importance weights (B, D) in [0, 1] and the k-NN predicted class (B,).

    Weighted k-NN vote (DINO's): class score Σ_{n ∈ top-k, y_n = c} exp(cos(f, m_n)/T); then
    w_d = f̂_d · mean_{n ∈ top-k, y_n = ĉ} m_{n,d} (the mean per-dimension cosine contribution of
    the predicted-class neighbours), divided by |Σ_d w_d| and min–max normalised over d. (The
    division by a positive number does not change the min–max result; kept to follow the code.)
    """
    k = min(k, bank.features.shape[0])
    f_hat = F.normalize(f, dim=1, eps=1e-12)
    sims, idx = (f_hat @ bank.features.T).topk(k, dim=1, largest=True, sorted=True)
    neighbour_labels = bank.labels[idx]  # (B, k)
    n_classes = int(bank.labels.max()) + 1
    votes = f.new_zeros(f.shape[0], n_classes).scatter_add_(1, neighbour_labels, (sims / temperature).exp())
    predicted = votes.argmax(dim=1)
    same = (neighbour_labels == predicted[:, None]).to(f.dtype)  # (B, k); the winner has ≥ 1 neighbour
    mean_neighbour = (same[..., None] * bank.features[idx]).sum(dim=1) / same.sum(dim=1, keepdim=True)
    product = f_hat * mean_neighbour
    total = product.sum(dim=1, keepdim=True).abs()
    product = torch.where(total > 0, product / total.clamp_min(1e-30), product)
    lo, hi = product.min(dim=1, keepdim=True).values, product.max(dim=1, keepdim=True).values
    weights = torch.where(hi > lo, (product - lo) / (hi - lo).clamp_min(1e-30), torch.ones_like(product))
    return weights, predicted


@register_method("daam_ssl", kinds=["vit"])
class DAAMSelfSupervised(DAAM):
    """DAAM for a ViT without a classifier: the score is Σ_d w_d f_d with k-NN dimension weights.

    Needs a memory bank of training embeddings: ``memory_bank=MemoryBank.build(...)``, or
    ``dataset=<dataset directory>`` to build it from that dataset's ``train`` split.
    The target, if given, is ignored (the class is the k-NN prediction, as in the authors' code).
    """

    relu_weights = False

    def __init__(
        self,
        adapter: ModelAdapter,
        layer: str | None = None,
        block: int | None = None,
        block_norm: bool = True,
        memory_bank: MemoryBank | None = None,
        dataset: str | os.PathLike[str] | None = None,
        k: int = 20,
        temperature: float = 0.07,
    ) -> None:
        super().__init__(adapter, layer, block, block_norm)
        if memory_bank is None and dataset is None:
            raise ValueError(
                "daam_ssl needs a k-NN memory bank of training embeddings: pass "
                "memory_bank=MemoryBank.build(adapter, train_images, train_labels) or dataset=<dataset dir>"
            )
        if memory_bank is None:
            memory_bank = self._bank_from_dataset(adapter, dataset)
        self.memory_bank = memory_bank
        self.k = k
        self.temperature = temperature
        self.predicted: torch.Tensor | None = None  # k-NN class of the last batch, for figures

    @staticmethod
    def _bank_from_dataset(adapter: ModelAdapter, dataset: str | os.PathLike[str]) -> MemoryBank:
        try:
            from shared.data import load_split
        except ImportError as err:  # the data layer is written concurrently
            raise RuntimeError("shared.data.load_split is not available; pass memory_bank= instead") from err
        split = load_split(dataset, "train")
        return MemoryBank.build(adapter, split.images, split.labels)

    def seed_score(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        f = embedding(self.adapter, images)
        weights, self.predicted = dimension_weights(f.detach(), self.memory_bank, self.k, self.temperature)
        return (weights * f).sum()


# ---------------------------------------------------------------------------------------------
# Baselines that apply to a ViT


@register_method("attention_rollout", kinds=["vit"])
class AttentionRollout(Explainer):
    """Attention rollout (Abnar & Zuidema 2020) over all blocks; gradient-free, ignores the target."""


    def __init__(self, adapter: ModelAdapter, layer: str | None = None, residual: float = 0.5) -> None:
        super().__init__(adapter, layer)
        if adapter.num_prefix_tokens < 1:
            raise ValueError(f"attention rollout reads the class token; model {adapter.name!r} has none")
        self.residual = residual

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        with frozen(self.adapter), capture_attention(self.adapter) as rec, torch.no_grad():
            self.adapter(images)
        r = attention_rollout(rec.attentions, self.adapter.num_prefix_tokens, self.residual)
        h, w = self.adapter.grid_size(r.shape[1])
        return upsample(r.reshape(-1, h, w), tuple(images.shape[-2:]))
