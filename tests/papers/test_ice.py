"""ICE (papers/ice): the fidelity measures by hand, the approximated model against a hand-computed
forward, and determinism."""

from __future__ import annotations

import torch
from torch import nn

from papers.ice.method import EPSILON, fidelity_scores, ice_fidelity
from shared.concepts import encode, layer_activations
from shared.models.adapter import ModelAdapter


def test_fidelity_scores_by_hand():
    original = torch.tensor([[2.0, 0.0], [4.0, 1.0], [0.0, 3.0]])
    approx = torch.tensor([[1.0, 0.5], [4.0, 5.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0, 1])
    s = fidelity_scores(original, approx, labels)
    assert s["agreement"].tolist() == [1.0, 0.0, 1.0]
    assert s["accuracy"].tolist() == [1.0, 0.0, 1.0]
    # class 0: mean logit (2 + 4) / 2 = 3; class 1: 3. |y - y_hat| = 1, 0, 1
    expected = torch.tensor([1 / (3 + EPSILON), 0.0, 1 / (3 + EPSILON)], dtype=torch.float64)
    assert torch.allclose(s["fidelity_error"], expected)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(self.act(self.conv(x)).mean(dim=(2, 3)))


def _setup():
    torch.manual_seed(0)
    adapter = ModelAdapter(_Tiny(), kind="cnn", task="classifier", target_layer="act", layers=["act"]).explain_mode()
    g = torch.Generator().manual_seed(1)
    fit = torch.rand(6, 3, 6, 6, generator=g)
    images = torch.rand(5, 3, 6, 6, generator=g)
    labels = torch.tensor([0, 1, 2, 0, 1])
    return adapter, fit, images, labels


def test_approximated_model_against_a_hand_computed_one():
    adapter, fit, images, labels = _setup()
    run = ice_fidelity(adapter, fit, images, labels, "act", ks=[2, 4], seed=0, max_iter=300, batch_size=2)
    m = adapter.model
    original = adapter(images)
    acts = layer_activations(adapter, images, "act")
    for k in (2, 4):
        con = run["concepts"][("nmf", k)]
        # by hand: the layer's output replaced by encode(A)·H, then GAP and the linear head
        rec = torch.einsum("nkhw,kc->nchw", encode(acts, con, max_iter=300), con.H)
        hand = m.head(rec.mean(dim=(2, 3)))
        rows = torch.arange(5)
        y, y_hat = original[rows, labels].double(), hand[rows, labels].double()
        means = torch.stack([original[labels == c, c].mean() for c in range(3)]).double()
        err = (y - y_hat).abs() / (means[labels].abs() + EPSILON)
        assert torch.allclose(run["scores"][("nmf", k)]["fidelity_error"], err, atol=1e-5)
        assert torch.equal(run["scores"][("nmf", k)]["agreement"], (hand.argmax(1) == original.argmax(1)).double())
    # PCA with k = C keeps everything: the approximated model is the model
    assert torch.allclose(run["scores"][("pca", 4)]["fidelity_error"], torch.zeros(5, dtype=torch.float64), atol=1e-4)
    assert run["scores"][("pca", 4)]["agreement"].eq(1).all()
    assert not adapter.module("act")._forward_hooks


def test_ice_is_deterministic():
    adapter, fit, images, labels = _setup()
    a = ice_fidelity(adapter, fit, images, labels, "act", ks=[2, 3], seed=0, max_iter=50, batch_size=4)
    b = ice_fidelity(adapter, fit, images, labels, "act", ks=[2, 3], seed=0, max_iter=50, batch_size=4)
    for key in a["scores"]:
        assert all(torch.equal(a["scores"][key][m], b["scores"][key][m]) for m in a["scores"][key])
