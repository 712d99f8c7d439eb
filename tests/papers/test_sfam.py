"""SFAM against a hand computation on a 1×1-conv embedding model (feature map written down in NumPy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from papers.sfam.method import SFAM, contribution_importance_scores
from shared.explain import ClassTarget, SimilarityTarget
from shared.explain.pair import PairTarget
from linear_embed import LinearEmbed, hand_feature_map, linear_embed_adapter, similarity
from shared.models.adapter import ModelAdapter


def adapter(metric: str, stem: bool = False) -> ModelAdapter:
    return linear_embed_adapter(metric, stem, seed=1, dim=5)


def hand_cis(f_q: np.ndarray, f_r: np.ndarray, metric: str) -> np.ndarray:
    """Channel by channel: what channel c adds to s when the query's value goes from 0 to f_q,c."""
    out = np.zeros_like(f_q)
    for c in range(len(f_q)):
        if metric == "cosine":
            out[c] = f_q[c] * f_r[c] / (np.linalg.norm(f_q) * np.linalg.norm(f_r))
        else:  # −(f_q,c − f_r,c)² minus its value at f_q,c = 0, −f_r,c²
            out[c] = -((f_q[c] - f_r[c]) ** 2) + f_r[c] ** 2
    return out


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_sfam_matches_hand_computation(metric: str) -> None:
    ad = adapter(metric)
    q, r = torch.randn(2, 3, 5, 4) * 2, torch.randn(2, 3, 5, 4) * 2  # signed pixels: both signs in the map
    maps = SFAM(ad)(q, PairTarget.from_images(ad, r)).double().numpy()
    relu_active = []
    for i in range(2):
        A_q, A_r = hand_feature_map(ad.model, q[i]), hand_feature_map(ad.model, r[i])
        cis = hand_cis(A_q.mean(axis=(1, 2)), A_r.mean(axis=(1, 2)), metric)
        expected = np.maximum(sum(cis[c] * A_q[c] for c in range(len(cis))), 0)
        np.testing.assert_allclose(maps[i], expected, rtol=1e-5, atol=1e-6)
        relu_active += [(expected > 0).any(), (expected == 0).any()]
    assert all(relu_active)  # positive evidence kept, negative clipped by the ReLU


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_cis_decomposes_the_similarity_gain_exactly(metric: str) -> None:
    f_q, f_r = torch.randn(6, 9, dtype=torch.float64), torch.randn(6, 9, dtype=torch.float64)
    cis = contribution_importance_scores(f_q, f_r, metric)
    for i in range(6):
        a, b = f_q[i].numpy(), f_r[i].numpy()
        baseline = 0.0 if metric == "cosine" else -float(b @ b)  # s at a zero query embedding
        assert cis[i].sum().item() == pytest.approx(similarity(a, b, metric) - baseline, rel=1e-12)
    # a channel on which query and reference agree scores positive, one where they disagree negative
    agree = contribution_importance_scores(torch.tensor([[2.0, 1.0]]), torch.tensor([[2.0, -1.0]]), metric)
    assert agree[0, 0] > 0 > agree[0, 1]


def test_batched_equals_per_image_and_plain_similarity_target() -> None:
    ad = adapter("euclidean", stem=True)
    q, r = torch.rand(4, 3, 12, 12), torch.rand(4, 3, 12, 12)
    batched = SFAM(ad)(q, PairTarget.from_images(ad, r))
    with torch.no_grad():
        plain = SFAM(ad)(q, SimilarityTarget(ad(r), "euclidean"))  # SFAM needs only the reference embedding
    torch.testing.assert_close(batched, plain)
    for i in range(4):
        one = SFAM(ad)(q[i : i + 1], PairTarget.from_images(ad, r[i : i + 1]))
        torch.testing.assert_close(batched[i : i + 1], one, rtol=1e-5, atol=1e-6)


def test_clear_errors_where_undefined() -> None:
    ad = adapter("cosine")
    with pytest.raises(TypeError, match="ClassTarget explains a classifier"):
        SFAM(ad)(torch.rand(1, 3, 4, 4), ClassTarget([0]))
    with pytest.raises(ValueError, match="metric must be"):
        contribution_importance_scores(torch.ones(1, 2), torch.ones(1, 2), "manhattan")
    vit_like = ModelAdapter(LinearEmbed(), "vit", "embedding", "embed", metric="cosine")
    with pytest.raises(ValueError, match="defined for cnn"):
        SFAM(vit_like)
