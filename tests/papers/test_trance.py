"""TraNCE (papers/trance): the VAE's loss terms against hand-computed values, training determinism,
the Faith score's components (fidelity, coherence) on toy concepts where they are known, the
approximated model on a tiny CNN, and the Bessel transfer against SciPy's J₀."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import j0 as scipy_j0
from scipy.special import jn_zeros

from papers.trance.method import (
    BESSEL_J1_FIRST_ZERO,
    bessel_transfer,
    coherence,
    concept_prototypes,
    explained_layer,
    faith,
    fidelity,
    fidelity_prob,
    fit_vae,
    logits_with_layer,
    reconstruction_fit,
    reparameterise,
    top_features,
    vae_concept_maps,
    vae_loss,
    vae_reconstruct,
)
from shared.concepts import position_grid as unpositions
from shared.concepts import position_rows as positions
from tests.tiny_zoo import role

# --------------------------------------------------------------------------- VAE loss terms


def test_vae_loss_terms_by_hand():
    # row 1: x - x̂ = (1, 0) -> 1; μ = (1, 0), σ² = (1, 4): KL = ½[(1 + 1 - 0 - 1) + (0 + 4 - ln 4 - 1)] = 2 - ln 2
    # row 2: x - x̂ = (0, -3) -> 9; μ = (0, 0), σ² = (1, 1): KL = 0
    x = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    x_hat = torch.tensor([[0.0, 2.0], [0.0, 3.0]], dtype=torch.float64)
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]], dtype=torch.float64)
    total, recon, kl = vae_loss(x, x_hat, mu, logvar, beta=0.5)
    assert float(recon) == pytest.approx((1 + 9) / 2)
    assert float(kl) == pytest.approx((2 - math.log(2)) / 2)
    assert float(total) == pytest.approx(5 + 0.5 * (2 - math.log(2)) / 2)


def test_kl_is_zero_only_at_the_prior():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    assert float(vae_loss(torch.zeros(3, 2), torch.zeros(3, 2), mu, logvar, 1.0)[2]) == 0.0
    assert float(vae_loss(torch.zeros(3, 2), torch.zeros(3, 2), mu + 0.1, logvar, 1.0)[2]) > 0


def test_reparameterise_by_hand():
    mu = torch.tensor([[1.0, -2.0]])
    logvar = torch.tensor([[math.log(9.0), 0.0]])
    eps = torch.tensor([[0.5, -1.0]])
    assert torch.allclose(reparameterise(mu, logvar, eps), torch.tensor([[1.0 + 3 * 0.5, -2.0 - 1.0]]))


def test_positions_round_trip_and_order():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    rows = positions(a)
    assert rows.shape == (8, 3)
    assert torch.equal(rows[5], a[1, :, 0, 1])  # image 1, position (0, 1): row 4 + 1
    assert torch.equal(unpositions(rows, 2, 2, 2), a)


# --------------------------------------------------------------------------- training


def _toy_acts(seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(6, 5, 3, 3, generator=g).relu()


def test_training_is_deterministic_and_seeded():
    acts = _toy_acts()
    kw = dict(hidden=8, epochs=3, batch_size=16, lr=1e-2, beta=1.0)
    a, b, c = fit_vae(acts, 2, seed=0, **kw), fit_vae(acts, 2, seed=0, **kw), fit_vae(acts, 2, seed=1, **kw)
    assert a.losses == b.losses
    for (name, p), (_, q) in zip(a.vae.state_dict().items(), b.vae.state_dict().items()):
        assert torch.equal(p, q), name
    assert a.losses != c.losses
    before = torch.get_rng_state()
    fit_vae(acts, 2, seed=0, **kw)
    assert torch.equal(before, torch.get_rng_state())  # the caller's global RNG is untouched


def test_training_lowers_the_loss_and_outputs_have_the_layer_shape():
    acts = _toy_acts()
    model = fit_vae(acts, 3, hidden=16, epochs=10, batch_size=54, lr=3e-2, beta=1.0, seed=0)
    assert model.losses[-1] < model.losses[0]
    assert vae_concept_maps(model, acts).shape == (6, 3, 3, 3)
    rec = vae_reconstruct(model, acts)
    assert rec.shape == acts.shape and bool((rec >= 0).all())  # a post-ReLU layer stays non-negative
    assert model.nonnegative and not fit_vae(acts - 0.5, 2, hidden=4, epochs=1, batch_size=64, lr=1e-3, beta=1.0, seed=0).nonnegative


def test_concept_maps_are_the_encoder_mean():
    acts = _toy_acts()
    model = fit_vae(acts, 2, hidden=4, epochs=1, batch_size=64, lr=1e-3, beta=1.0, seed=0)
    mu, _ = model.vae.encode(positions(acts) / model.scale)
    assert torch.allclose(vae_concept_maps(model, acts), unpositions(mu, 6, 3, 3))
    assert torch.allclose(vae_reconstruct(model, acts), unpositions(model.vae.decode(mu) * model.scale, 6, 3, 3).clamp_min(0))


# --------------------------------------------------------------------------- Fidelity


def test_fidelity_of_a_perfect_and_of_a_wrong_approximation():
    logits = torch.tensor([[0.0, 0.0 + 1e-3], [2.0, 0.0]])
    assert torch.equal(fidelity(logits, logits), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(fidelity_prob(logits, logits), torch.ones(2, dtype=torch.float64))
    approx = torch.tensor([[math.log(3.0), 0.0], [2.0, 0.0]])
    assert fidelity(logits, approx).tolist() == [0.0, 1.0]
    # p = softmax(0, 0) = (½, ½), q = (¾, ¼): total variation ¼
    assert float(fidelity_prob(torch.zeros(1, 2), approx[:1])) == pytest.approx(0.75)


def test_approximated_model_with_the_layers_own_output_is_the_model():
    adapter, images, _ = role("resnet")
    layer = explained_layer(adapter, -2)
    assert layer == "layer3"
    from shared.concepts import layer_activations

    acts = layer_activations(adapter, images, layer)
    with torch.no_grad():
        logits = adapter(images)
    same = logits_with_layer(adapter, images, layer, acts)
    assert torch.allclose(same, logits, atol=1e-5)
    assert torch.equal(fidelity(logits, same), torch.ones(3, dtype=torch.float64))
    zeroed = logits_with_layer(adapter, images, layer, torch.zeros_like(acts))
    assert not torch.allclose(zeroed, logits)
    with torch.no_grad():
        assert torch.allclose(adapter(images), logits)  # the hook is gone


def test_approximated_model_on_vit_tokens_keeps_the_class_token():
    adapter, images, _ = role("vit")
    from shared.concepts import layer_activations

    layer = explained_layer(adapter, -1)
    acts = layer_activations(adapter, images, layer)
    with torch.no_grad():
        logits = adapter(images)
    assert torch.allclose(logits_with_layer(adapter, images, layer, acts), logits, atol=1e-5)


def test_reconstruction_fit():
    a = _toy_acts()
    assert torch.allclose(reconstruction_fit(a, a), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(reconstruction_fit(a, torch.zeros_like(a)), torch.zeros(6, dtype=torch.float64))
    assert torch.allclose(reconstruction_fit(a, 0.5 * a), torch.full((6,), 0.75, dtype=torch.float64))


# --------------------------------------------------------------------------- Coherence and Faith


def test_top_features_pick_the_concept_maps_argmax():
    acts = torch.zeros(1, 2, 2, 2)
    acts[0, :, 0, 1] = torch.tensor([3.0, 4.0])
    acts[0, :, 1, 0] = torch.tensor([5.0, 0.0])
    maps = torch.zeros(1, 2, 2, 2)
    maps[0, 0, 0, 1] = 1.0  # concept 1 strongest at (0, 1)
    maps[0, 1, 1, 0] = 2.0  # concept 2 at (1, 0)
    assert torch.equal(top_features(acts, maps), torch.tensor([[[3.0, 4.0], [5.0, 0.0]]]))


def test_identical_concept_activations_are_perfectly_coherent():
    # every image the same: each concept's top position holds the same feature in every image
    one = _toy_acts()[:1]
    acts = one.expand(4, -1, -1, -1).clone()
    maps = torch.rand(1, 3, 3, 3, generator=torch.Generator().manual_seed(0)).expand(4, -1, -1, -1).clone()
    protos = concept_prototypes(acts, maps)
    assert torch.allclose(coherence(acts, maps, protos), torch.ones(4, dtype=torch.float64))


def test_coherence_of_two_orthogonal_prototypical_parts():
    # one concept; its top position holds e1 in image 0 and e2 in image 1: prototype (e1 + e2) / 2,
    # so each image's cosine with it is 1/√2
    acts = torch.zeros(2, 2, 1, 2)
    acts[0, :, 0, 0] = torch.tensor([2.0, 0.0])
    acts[1, :, 0, 1] = torch.tensor([0.0, 7.0])
    maps = torch.zeros(2, 1, 1, 2)
    maps[0, 0, 0, 0] = 1.0
    maps[1, 0, 0, 1] = 1.0
    protos = concept_prototypes(acts, maps)
    assert torch.allclose(protos, torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    assert torch.allclose(coherence(acts, maps, protos), torch.full((2,), 1 / math.sqrt(2), dtype=torch.float64))
    # scale-free: a concept's strength does not change its coherence
    assert torch.allclose(coherence(acts * 5, maps * 3, protos), coherence(acts, maps, protos))


def test_faith_is_coherence_plus_fidelity():
    # a perfect, perfectly coherent explainer: Faith 2
    coh = torch.ones(3, dtype=torch.float64)
    fid = fidelity(torch.eye(3), torch.eye(3))
    assert torch.equal(faith(coh, fid), torch.full((3,), 2.0, dtype=torch.float64))
    assert torch.allclose(faith(torch.tensor([0.25, 0.5]), torch.tensor([1.0, 0.0])), torch.tensor([1.25, 0.5], dtype=torch.float64))


# --------------------------------------------------------------------------- the Bessel visualisation


def test_bessel_transfer_against_scipy():
    assert BESSEL_J1_FIRST_ZERO == pytest.approx(float(jn_zeros(1, 1)[0]), abs=1e-12)
    maps = torch.tensor([[0.0, 1.0], [2.0, 4.0]], dtype=torch.float64)  # ŝ = 0, ¼, ½, 1
    s = np.array([[0.0, 0.25], [0.5, 1.0]])
    expected = scipy_j0(float(jn_zeros(1, 1)[0]) * (1 - s))
    assert np.allclose(bessel_transfer(maps).numpy(), expected, atol=1e-10)
    out = bessel_transfer(maps)
    assert float(out[1, 1]) == pytest.approx(1.0) and float(out[0, 0]) == pytest.approx(-0.40275939, abs=1e-7)


def test_bessel_zero_crossing_monotone_and_constant_maps():
    j01 = float(jn_zeros(0, 1)[0])
    cross = torch.tensor([0.0, 1 - j01 / BESSEL_J1_FIRST_ZERO, 1.0], dtype=torch.float64)
    assert float(bessel_transfer(cross[None])[0, 1]) == pytest.approx(0.0, abs=1e-10)
    ramp = torch.linspace(0, 1, 101, dtype=torch.float64)[None]
    assert bool((bessel_transfer(ramp).diff() > 0).all())
    assert torch.equal(bessel_transfer(torch.full((2, 3, 3), 5.0)), torch.ones(2, 3, 3, dtype=torch.float64))
    # each map of a batch is normalised on its own
    batch = torch.stack([ramp, 10 * ramp + 3])
    assert torch.allclose(bessel_transfer(batch)[0], bessel_transfer(batch)[1])
