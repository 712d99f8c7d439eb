"""Metric-learning embedding network: embedding = global average pool of a feature map.

SFAM and the similarity-decomposition papers assume the embedding is the spatial mean of the
last feature map, so that a similarity splits exactly over positions and channels. The optional
projection to ``embedding_dim`` is therefore a 1×1 convolution *before* the pooling (``embed``):
the embedding is still the GAP of a feature map — of ``embed``'s output, which is the layer
the adapter explains. Nothing (no normalisation, no linear layer) follows the pooling; the
cosine metric normalises in the target, not in the model.
"""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingNet(nn.Module):
    """``backbone.forward_features`` → 1×1 conv ``embed`` (optional) → spatial mean → (B, embedding_dim)."""

    def __init__(self, backbone: nn.Module, embedding_dim: int | None = None) -> None:
        super().__init__()
        if not hasattr(backbone, "forward_features"):
            raise TypeError(f"the embedding backbone {type(backbone).__name__} has no forward_features()")
        in_channels = int(getattr(backbone, "num_features"))
        self.backbone = backbone
        # Without embedding_dim the embedding is the GAP of the backbone's last map itself;
        # `embed` is then an identity, so the explained layer keeps one name either way.
        self.embed: nn.Module = (
            nn.Conv2d(in_channels, embedding_dim, kernel_size=1) if embedding_dim else nn.Identity()
        )
        self.embedding_dim = int(embedding_dim) if embedding_dim else in_channels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding map (B, D, h, w) whose spatial mean is the embedding."""
        features = self.backbone.forward_features(x)
        if features.dim() != 4:
            raise ValueError(f"an embedding backbone must give a (B, C, h, w) map, got {tuple(features.shape)}")
        return self.embed(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # mean over (h, w) rather than adaptive pooling: exact GAP and deterministic on CUDA
        return self.forward_features(x).mean(dim=(2, 3))
