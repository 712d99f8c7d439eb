"""shared.concepts: NMF on activations with a known exact factorisation, the approximated model."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from shared.concepts import (
    Concepts, approximated_logits, concept_maps, encode, layer_activations, nmf_concepts, pca_concepts, reconstruct,
)
from shared.models.adapter import ModelAdapter


def _exact_rank_k(n=6, c=7, h=4, w=5, k=3, seed=0):
    """Activations A = W·H with W, H >= 0 and H's rows of disjoint support (separable: NMF's factors
    are unique up to permutation and scale), plus W and H themselves."""
    g = torch.Generator().manual_seed(seed)
    H = torch.zeros(k, c, dtype=torch.float64)
    for j, cols in enumerate([[0, 1], [2, 3, 4], [5, 6]][:k]):
        H[j, cols] = torch.rand(len(cols), generator=g, dtype=torch.float64) + 0.5
    W = torch.rand(n * h * w, k, generator=g, dtype=torch.float64)
    W[W < 0.3] = 0  # sparse, as post-ReLU concept activations are
    A = (W @ H).reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous()
    return A, W.reshape(n, h, w, k).permute(0, 3, 1, 2), H


def _match(H_true, H_found):
    """The permutation of found concepts best aligned (cosine) with the true ones, and the cosines."""
    a = torch.nn.functional.normalize(H_true, dim=1)
    b = torch.nn.functional.normalize(H_found.double(), dim=1)
    cos = a @ b.T
    best = max(itertools.permutations(range(H_true.shape[0])), key=lambda p: sum(cos[i, j] for i, j in enumerate(p)))
    return best, torch.stack([cos[i, j] for i, j in enumerate(best)])


def test_nmf_recovers_an_exact_nonnegative_factorisation():
    A, W, H = _exact_rank_k()
    con = nmf_concepts(A, k=3, seed=0, max_iter=2000, tol=1e-10)
    assert con.W.shape == (6, 3, 4, 5) and con.H.shape == (3, 7)
    rec = reconstruct(con)
    assert torch.linalg.norm(rec - A) / torch.linalg.norm(A) < 1e-4
    perm, cos = _match(H, con.H)
    assert (cos > 0.9999).all(), cos
    # the concept activations are the true ones up to each concept's scale: W_true[j] = s_j · W_found[perm j]
    for j, pj in enumerate(perm):
        found, true = con.W[:, pj].flatten(), W[:, j].flatten()
        s = (found @ true) / (found @ found)
        assert torch.allclose(s * found, true, atol=1e-4)
    assert con.info["init"] == "nndsvda (exact SVD)"


def test_nmf_is_deterministic_and_refuses_negative_input():
    A, _, _ = _exact_rank_k()
    a, b = nmf_concepts(A, 2, seed=3), nmf_concepts(A, 2, seed=3)
    assert torch.equal(a.W, b.W) and torch.equal(a.H, b.H)
    with pytest.raises(ValueError, match="non-negative"):
        nmf_concepts(A - 0.1, 2)


def test_shift_mode_reconstructs_signed_activations():
    # a rank-k non-negative matrix moved down by a per-channel constant: the shift undoes it exactly
    A, _, _ = _exact_rank_k()
    shift = torch.linspace(-1, -0.2, 7, dtype=torch.float64)
    con = nmf_concepts(A + shift[None, :, None, None], 3, max_iter=2000, tol=1e-10, nonnegative="shift")
    assert (con.offset <= 0).all()
    rec = reconstruct(con)
    assert torch.linalg.norm(rec - (A + shift[None, :, None, None])) / torch.linalg.norm(A) < 1e-3


def test_encode_on_fixed_concepts_equals_the_generating_weights():
    # new activations built from the same H: NNLS with H fixed recovers their W exactly
    A, W, H = _exact_rank_k(n=3, seed=4)
    con = Concepts(W=torch.empty(0), H=H, offset=torch.zeros(7, dtype=torch.float64))
    W2 = encode(A, con, max_iter=2000, tol=1e-12)
    assert torch.allclose(W2, W, atol=1e-6)


def test_pca_concepts_match_sklearn():
    from sklearn.decomposition import PCA

    A = torch.rand(4, 6, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    con = pca_concepts(A, 3)
    rows = A.permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    ref = PCA(3, svd_solver="full").fit(rows)
    assert torch.allclose(con.H.abs(), torch.from_numpy(ref.components_).abs(), atol=1e-8)
    # the same subspace, and W·H + mean is the rank-3 PCA reconstruction
    assert torch.allclose(reconstruct(con).permute(0, 2, 3, 1).reshape(-1, 6),
                          torch.from_numpy(ref.inverse_transform(ref.transform(rows))), atol=1e-8)


def test_concept_maps_upsample_each_concept_bilinearly():
    A, _, _ = _exact_rank_k()
    con = nmf_concepts(A, 3)
    maps = concept_maps(con, (8, 10))
    ref = torch.nn.functional.interpolate(con.W, size=(8, 10), mode="bilinear", align_corners=False)
    assert maps.shape == (6, 3, 8, 10) and torch.allclose(maps, ref)


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        z = self.conv2(self.act(self.conv(x))).relu()
        return self.head(z.mean(dim=(2, 3)))


def _tiny_adapter():
    return ModelAdapter(_Tiny(), kind="cnn", task="classifier", target_layer="act").explain_mode()


def test_identity_concepts_give_the_model_and_the_hook_is_removed():
    adapter = _tiny_adapter()
    images = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    acts = layer_activations(adapter, images, "act", batch_size=2)
    assert acts.shape == (5, 4, 8, 8) and (acts >= 0).all()
    ref = adapter(images)
    out = approximated_logits(adapter, images, "act", torch.eye(4), batch_size=2)
    assert torch.allclose(out, ref, atol=1e-6)
    assert not adapter.module("act")._forward_hooks
    assert torch.equal(adapter(images), ref)


def test_approximated_model_equals_a_hand_computed_forward():
    # k = 2 concepts: the layer's output replaced by encode(A)·H, then conv2 -> relu -> GAP -> head by hand
    adapter = _tiny_adapter()
    images = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    acts = layer_activations(adapter, images, "act")
    con = nmf_concepts(acts, 2, seed=0)
    W = encode(acts, con)
    m = adapter.model
    rec = torch.einsum("nkhw,kc->nchw", W, con.H)
    ref = m.head(m.conv2(rec).relu().mean(dim=(2, 3)))
    out = approximated_logits(adapter, images, "act", con)
    assert torch.allclose(out, ref, atol=1e-5)
    assert not torch.allclose(out, adapter(images), atol=1e-3)  # k < C: an approximation, not the model


def test_kmeans_concepts_find_separated_centres_and_encode_to_them():
    from shared.concepts import kmeans_concepts

    centres = torch.tensor([[0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    which = torch.arange(2 * 3 * 3) % 2
    rows = centres[which] + 0.01 * torch.randn(18, 3, generator=g)
    acts = rows.reshape(2, 3, 3, 3).permute(0, 3, 1, 2)
    con = kmeans_concepts(acts, 2, seed=0)
    order = con.H[:, 0].argsort()
    assert torch.allclose(con.H[order], centres, atol=0.02)
    W = encode(acts, con)
    assert torch.equal(W, con.W) and torch.equal(W.sum(dim=1), torch.ones(2, 3, 3))


def test_concept_layer_takes_the_topmost_non_negative_block():
    from shared.concepts import concept_layer

    model = _Tiny()
    adapter = ModelAdapter(model, kind="cnn", task="classifier", target_layer="act", layers=["act", "conv2"]).explain_mode()
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert concept_layer(adapter, images) == "act"  # conv2's output is signed
    assert concept_layer(adapter, images, block=-1) == "conv2" and concept_layer(adapter, images, block=1) == "act"
    with pytest.raises(ValueError, match="block 3"):
        concept_layer(adapter, images, block=3)


def test_many_concept_sets_in_one_pass_equal_separate_passes():
    adapter = _tiny_adapter()
    images = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    acts = layer_activations(adapter, images, "act")
    sets = [nmf_concepts(acts, 2, seed=0), pca_concepts(acts, 3)]
    both = approximated_logits(adapter, images, "act", sets, batch_size=2)
    assert both.shape == (2, 5, 3)
    for r, con in enumerate(sets):
        assert torch.allclose(both[r], approximated_logits(adapter, images, "act", con, batch_size=3), atol=1e-6)


def test_nndsvda_init_matches_scikit_learn_on_an_exact_svd():
    # scikit-learn's NNDSVDa on a randomized SVD; with n_oversamples covering the full rank its SVD is
    # exact up to rounding, so the two initialisations agree
    from sklearn.decomposition._nmf import _initialize_nmf

    from shared.concepts import nndsvda_init

    x = torch.rand(30, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    W, H = nndsvda_init(x, 3)
    W_ref, H_ref = _initialize_nmf(x.numpy(), 3, init="nndsvda", random_state=0)
    assert torch.allclose(W, torch.from_numpy(W_ref), atol=1e-8) and torch.allclose(H, torch.from_numpy(H_ref), atol=1e-8)
