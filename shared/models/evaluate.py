"""Test metrics of trained models: classification accuracy and retrieval Recall@1."""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN
from torch import nn

__all__ = ["PRIMARY_METRIC", "accuracy", "distance_for", "embed", "predict", "recall_at_1"]

PRIMARY_METRIC = {"classifier": "test_accuracy", "embedding": "recall_at_1"}
"""The metric a model's quality gate checks, by task."""


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Model outputs for ``images`` (N, 3, H, W) in [0, 1], in eval mode, batched; on the CPU."""
    was_training = model.training
    model.eval()
    try:
        outs = [model(images[i : i + batch_size].to(device)).float().cpu() for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


embed = predict
"""Embeddings of a metric-learning model (same computation as :func:`predict`)."""


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``logits`` (N, K) against ``labels`` (N,)."""
    if len(labels) == 0:
        raise ValueError("accuracy of an empty test set")
    return float((logits.argmax(dim=1) == labels.cpu()).double().mean())


def distance_for(metric: str) -> CosineSimilarity | LpDistance:
    """The pytorch-metric-learning distance of an embedding metric (Euclidean = unnormalised L2)."""
    if metric == "cosine":
        return CosineSimilarity()
    if metric == "euclidean":
        return LpDistance(normalize_embeddings=False, p=2, power=1)
    raise ValueError(f"embedding metric must be 'cosine' or 'euclidean', got {metric!r}")


def recall_at_1(embeddings: torch.Tensor, labels: torch.Tensor, metric: str) -> float:
    """Recall@1 on a test set: each image queries all the others (itself excluded).

    Recall@1 (did the nearest neighbour share the class) is pytorch-metric-learning's
    ``precision_at_1`` with k = 1, computed with the model's own metric.
    """
    calc = AccuracyCalculator(include=("precision_at_1",), k=1, knn_func=CustomKNN(distance_for(metric)), device=torch.device("cpu"))
    # Without a reference set the queries are their own references and each query's own
    # match is excluded (pytorch-metric-learning's ref_includes_query).
    result = calc.get_accuracy(embeddings.float().cpu(), labels.cpu())
    return float(result["precision_at_1"])
