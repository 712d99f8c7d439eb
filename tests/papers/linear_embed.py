"""The toy embedding model the metric-learning papers' tests share: a 1×1 conv whose feature
map can be written down by hand, so every decomposition has an independent reference."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from shared.models.adapter import ModelAdapter


class LinearEmbed(nn.Module):
    """f = mean_u(W x(u) + b); optional stride-2 conv + ReLU stem to shrink the grid."""

    def __init__(self, dim: int = 4, stem: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 3, 3, stride=2, padding=1), nn.ReLU()) if stem else nn.Identity()
        self.embed = nn.Conv2d(3, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.stem(x)).mean(dim=(2, 3))


def linear_embed_adapter(metric: str, stem: bool = False, seed: int = 0, dim: int = 4) -> ModelAdapter:
    """A seeded LinearEmbed behind an identity-normalising adapter; `embed` is the explained layer."""
    torch.manual_seed(seed)
    return ModelAdapter(LinearEmbed(dim=dim, stem=stem), "cnn", "embedding", "embed", mean=(0,) * 3, std=(1,) * 3, metric=metric)


def hand_feature_map(model: LinearEmbed, image: torch.Tensor) -> np.ndarray:
    """W x + b at every position, in float64 NumPy (no stem)."""
    W = model.embed.weight.detach().double().numpy()[:, :, 0, 0]
    b = model.embed.bias.detach().double().numpy()
    return np.einsum("ck,kyx->cyx", W, image.double().numpy()) + b[:, None, None]


def similarity(f_q: np.ndarray, f_r: np.ndarray, metric: str) -> float:
    """Cosine similarity, or −‖f_q − f_r‖² (the SimilarityTarget definitions)."""
    if metric == "cosine":
        return float(f_q @ f_r / np.linalg.norm(f_q) / np.linalg.norm(f_r))
    return float(-np.sum((f_q - f_r) ** 2))
