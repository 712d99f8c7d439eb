"""DFF (papers/dff): concept scores, the cross-fitted choice, chance, and the whole computation on
activations whose concepts are known."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from papers.dff.method import concept_scores, cross_fit_choice, dff_model, pointing_chance
from shared.models.adapter import ModelAdapter


def test_concept_scores_on_hand_made_maps():
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :2, :2] = True
    maps = torch.zeros(1, 2, 4, 4)
    maps[0, 0, 0, 0] = 2.0  # all of concept 0 on the mask, its maximum there
    maps[0, 1, 0, 1] = 1.0  # concept 1: half on the mask ...
    maps[0, 1, 3, 3] = 3.0  # ... by value 1 of 4, its maximum far from the mask
    s = concept_scores(maps, mask)
    assert torch.allclose(s["relevance_mass"], torch.tensor([[1.0, 0.25]], dtype=torch.float64))
    assert torch.equal(s["pointing_game"], torch.tensor([[1.0, 0.0]], dtype=torch.float64))


def test_cross_fit_choice_uses_the_other_half():
    # even images prefer concept 1, odd images concept 0: each is scored with the other half's choice
    scores = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.2, 0.7], [0.9, 0.3]])
    chosen, (first, second) = cross_fit_choice(scores)
    assert (first, second) == (1, 0)
    assert chosen.tolist() == [0, 1, 0, 1]


def test_pointing_chance_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(2, 12, 12, generator=g) > 0.93
    tol = 2.5
    ys, xs = torch.meshgrid(torch.arange(12), torch.arange(12), indexing="ij")
    expected = []
    for m in masks:
        pts = torch.nonzero(m).double()
        d2 = (ys.flatten()[:, None] - pts[:, 0]) ** 2 + (xs.flatten()[:, None] - pts[:, 1]) ** 2
        expected.append(float((d2.min(dim=1).values <= tol * tol).double().mean()))
    assert torch.allclose(pointing_chance(masks, tol), torch.tensor(expected, dtype=torch.float64))


class _Passthrough(nn.Module):
    """Its `act` layer outputs the image itself (non-negative): the activations are hand-made."""

    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        return self.head(self.act(x).mean(dim=(2, 3)))


def _known_batch(n=6, size=8):
    """Images whose channel 0 is 1 exactly on a square (the mask) and channel 1 is 0.5 elsewhere:
    two separable concepts, 'part' and 'background'."""
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        r, c = i % 4, (2 * i) % 5
        masks[i, r : r + 3, c : c + 3] = True
    images = torch.stack([masks.float(), 0.5 * (~masks).float(), torch.zeros(n, size, size)], dim=1)
    torch.manual_seed(0)
    adapter = ModelAdapter(_Passthrough(), kind="cnn", task="classifier", target_layer="act", layers=["act"],
                           mean=(0, 0, 0), std=(1, 1, 1)).explain_mode()
    return SimpleNamespace(adapter=adapter, images=images, split=SimpleNamespace(masks=masks))


def test_dff_finds_the_part_concept_on_known_activations():
    batch = _known_batch()
    run = dff_model(batch, k=2, block=None, seed=0, max_iter=500, batch_size=4)
    assert run["layer"] == "act"
    # the part concept is chosen on both halves, and on every image all its mass is on the mask
    assert run["choice"][0] == run["choice"][1]
    assert torch.allclose(run["scores"][("dff", "relevance_mass")], torch.ones(6, dtype=torch.float64), atol=1e-5)
    assert torch.equal(run["scores"][("dff", "pointing_game")], torch.ones(6, dtype=torch.float64))
    assert torch.allclose(run["scores"][("chance", "relevance_mass")], torch.full((6,), 9 / 64, dtype=torch.float64))


def test_dff_is_deterministic():
    batch = _known_batch()
    a = dff_model(batch, k=3, block=None, seed=1, max_iter=50, batch_size=4)
    b = dff_model(batch, k=3, block=None, seed=1, max_iter=50, batch_size=4)
    assert torch.equal(a["maps"], b["maps"])
    assert all(torch.equal(a["scores"][key], b["scores"][key]) for key in a["scores"])
