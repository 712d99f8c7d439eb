"""SimNet maps (Stylianou et al.) against a hand computation on a 1×1-conv embedding model.

The model embeds by f = mean_u (W x(u) + b): its feature map A(u) = W x(u) + b is written down
directly from the pixels in NumPy (float64), independent of hooks and of the method's einsums.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from papers.simnet.method import SimilarityMap
from shared.explain import ClassTarget, SimilarityTarget
from shared.explain.pair import PairTarget, explain_both_sides
from linear_embed import LinearEmbed, hand_feature_map, linear_embed_adapter
from shared.models.adapter import ModelAdapter


def adapter(metric: str, stem: bool = False, seed: int = 0) -> ModelAdapter:
    return linear_embed_adapter(metric, stem, seed=seed)


def hand_simnet(A_q: np.ndarray, A_r: np.ndarray, metric: str) -> np.ndarray:
    """Position by position, the paper's sum over channels (and our Euclidean analogue)."""
    C, h, w = A_q.shape
    n = h * w
    f_q, f_r = A_q.mean(axis=(1, 2)), A_r.mean(axis=(1, 2))
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            if metric == "cosine":
                out[y, x] = sum(A_q[c, y, x] * f_r[c] for c in range(C)) / (n * np.linalg.norm(f_q) * np.linalg.norm(f_r))
            else:
                out[y, x] = sum(A_q[c, y, x] * (2 * f_r[c] - f_q[c]) for c in range(C)) / n - f_r @ f_r / n
    return out


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_simnet_matches_hand_computation_and_sums_to_similarity(metric: str) -> None:
    ad = adapter(metric)
    q, r = torch.rand(2, 3, 5, 6), torch.rand(2, 3, 5, 6)
    maps = SimilarityMap(ad)(q, PairTarget.from_images(ad, r)).double()
    for i in range(2):
        A_q, A_r = hand_feature_map(ad.model, q[i]), hand_feature_map(ad.model, r[i])
        np.testing.assert_allclose(maps[i].numpy(), hand_simnet(A_q, A_r, metric), rtol=1e-5, atol=1e-6)
        f_q, f_r = A_q.mean(axis=(1, 2)), A_r.mean(axis=(1, 2))
        s = f_q @ f_r / np.linalg.norm(f_q) / np.linalg.norm(f_r) if metric == "cosine" else -np.sum((f_q - f_r) ** 2)
        assert maps[i].sum().item() == pytest.approx(s, rel=1e-5, abs=1e-6)  # exact decomposition


def test_plain_similarity_target_is_enough_and_both_sides_swap_roles() -> None:
    ad = adapter("cosine")
    q, r = torch.rand(3, 3, 4, 4), torch.rand(3, 3, 4, 4)
    with torch.no_grad():
        f_r = ad(r)
    plain = SimilarityMap(ad)(q, SimilarityTarget(f_r, "cosine"))
    q_maps, r_maps = explain_both_sides(SimilarityMap(ad), ad, q, r)
    torch.testing.assert_close(plain, q_maps)
    for i in range(3):
        A_q, A_r = hand_feature_map(ad.model, q[i]), hand_feature_map(ad.model, r[i])
        np.testing.assert_allclose(r_maps[i].double().numpy(), hand_simnet(A_r, A_q, "cosine"), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_batched_equals_per_image(metric: str) -> None:
    ad = adapter(metric, stem=True)
    q, r = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    target = PairTarget.from_images(ad, r)
    batched = SimilarityMap(ad)(q, target)
    assert batched.shape == (4, 16, 16)
    for i in range(4):
        one = SimilarityMap(ad)(q[i : i + 1], PairTarget.from_images(ad, r[i : i + 1]))
        torch.testing.assert_close(batched[i : i + 1], one, rtol=1e-5, atol=1e-6)


def test_clear_errors_where_undefined() -> None:
    ad = adapter("cosine")
    with pytest.raises(TypeError, match="SimilarityTarget"):
        SimilarityMap(ad)(torch.rand(1, 3, 4, 4), ClassTarget([0]))
    classifier = ModelAdapter(nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()), "cnn", "classifier", "0")
    with pytest.raises(ValueError, match="does not apply to classifier"):
        SimilarityMap(classifier)

    class MaxPooled(LinearEmbed):  # not a GAP embedding: no exact decomposition
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.embed(x).amax(dim=(2, 3))

    gmp = ModelAdapter(MaxPooled(), "cnn", "embedding", "embed", metric="cosine")
    with pytest.raises(ValueError, match="global average pool"):
        SimilarityMap(gmp)(torch.rand(1, 3, 4, 4), PairTarget.from_images(gmp, torch.rand(1, 3, 4, 4)))
