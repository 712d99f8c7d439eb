"""``gradcampp_authors`` against an independent replica of the authors' code.

The replica takes the first, second and third derivatives of Y = exp(S^c) with respect to each
activation along its own axis from autograd (nested ``torch.func.grad`` of t ↦ Y(A + t e_ij),
nothing assumed about their form), then runs adityac94/Grad_CAM_plus_plus misc/utils.py:107-137
transcribed to numpy, channels last as there. The model has two conv layers after the explained
one, so the gradient varies over positions and the per-channel renormalisation of α matters.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, vmap

from papers.gradcampp.method import GradCAMPlusPlus, GradCAMPlusPlusAuthors, gradcampp_authors_weights
from shared.explain import ClassTarget, build_explainer
from shared.models.adapter import ModelAdapter


class TwoConv(nn.Module):
    """conv → ReLU (explained, ``act``) → conv → ReLU → GAP → linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)

    def head(self, a: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv2(a)).mean(dim=(-2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv1(x)))


def _adapter() -> ModelAdapter:
    torch.manual_seed(3)
    model = TwoConv().double()
    with torch.no_grad():
        model.conv2.bias.uniform_(0.0, 0.3)  # most conv2 units alive, so g varies and is signed
    return ModelAdapter(model, "cnn", "classifier", "act", mean=(0, 0, 0), std=(1, 1, 1)).eval()


def _authors_replica(conv_output, conv_first_grad, conv_second_grad, conv_third_grad):
    """misc/utils.py:107-137 of the authors' code (one image, (h, w, C) arrays), verbatim up to [0]."""
    C = conv_first_grad.shape[2]
    global_sum = np.sum(conv_output.reshape((-1, C)), axis=0)
    alpha_num = conv_second_grad
    alpha_denom = conv_second_grad * 2.0 + conv_third_grad * global_sum.reshape((1, 1, C))
    alpha_denom = np.where(alpha_denom != 0.0, alpha_denom, np.ones(alpha_denom.shape))
    alphas = alpha_num / alpha_denom
    weights = np.maximum(conv_first_grad, 0.0)
    alphas_thresholding = np.where(weights, alphas, 0.0)
    alpha_normalization_constant = np.sum(np.sum(alphas_thresholding, axis=0), axis=0)
    alpha_normalization_constant_processed = np.where(
        alpha_normalization_constant != 0.0, alpha_normalization_constant, np.ones(alpha_normalization_constant.shape)
    )
    alphas /= alpha_normalization_constant_processed.reshape((1, 1, C))
    deep_linearization_weights = np.sum((weights * alphas).reshape((-1, C)), axis=0)
    grad_CAM_map = np.sum(deep_linearization_weights * conv_output, axis=2)
    return deep_linearization_weights, np.maximum(grad_CAM_map, 0)


def _derivatives_of_exp_score(model: TwoConv, A: torch.Tensor, c: int) -> tuple[np.ndarray, ...]:
    """d^n exp(S^c) / d A_kij^n, n = 1, 2, 3, each element along its own axis; (h, w, C) arrays."""
    shape = A.shape
    basis = torch.eye(A.numel(), dtype=A.dtype)

    def Y(t: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return torch.exp(model.head((A.flatten() + t * e).reshape(1, *shape))[0, c])

    t0 = torch.zeros((), dtype=A.dtype)
    d1, d2, d3 = (vmap(f, in_dims=(None, 0))(t0, basis) for f in (grad(Y), grad(grad(Y)), grad(grad(grad(Y)))))
    return tuple(d.reshape(shape).permute(1, 2, 0).detach().numpy() for d in (d1, d2, d3))


def test_authors_variant_equals_a_replica_of_their_code():
    adapter = _adapter()
    model = adapter.model
    x = torch.rand(3, 3, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1])
    ours = build_explainer("gradcampp_authors", adapter)(x, ClassTarget(labels))
    for b in range(x.shape[0]):
        with torch.no_grad():
            A = model.act(model.conv1(x[b : b + 1]))[0]
            S = model.head(A[None])[0, labels[b]]
        first, second, third = _derivatives_of_exp_score(model, A, int(labels[b]))
        g = first / np.exp(S.item())
        assert (g > 0).any() and (g < 0).any() and np.ptp(g[..., 0]) > 0  # varies over positions
        w_ref, cam_ref = _authors_replica(A.permute(1, 2, 0).numpy(), first, second, third)
        # the weights with exp(S) kept, as the code computes them
        G = torch.from_numpy(g).permute(2, 0, 1)[None]
        w = gradcampp_authors_weights(A[None], G, exp_S=torch.exp(S)[None])[0]
        np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-9, atol=1e-12 * np.abs(w_ref).max())
        # the registered method drops exp(S): its map is the code's map / exp(S), same after its /max
        assert cam_ref.max() > 0
        np.testing.assert_allclose(ours[b].numpy() * np.exp(S.item()), cam_ref, rtol=1e-5, atol=1e-6 * cam_ref.max())


def test_authors_weights_are_relu_gradcam_on_a_gap_head_and_differ_from_the_paper():
    """Explained right before GAP → linear, g_k is constant over positions: the code's
    renormalised α is 1/(hw) on every position, so w_k = ReLU(g_k) (Grad-CAM's weights with a
    ReLU), whereas Eq. (20) gives hw ReLU(g_k) / (2 + g_k Σ A_k)."""
    torch.manual_seed(0)
    A = torch.rand(2, 5, 4, 4, dtype=torch.float64)
    g = torch.randn(2, 5, 1, 1, dtype=torch.float64)
    G = g.expand(2, 5, 4, 4)
    authors = gradcampp_authors_weights(A, G)
    assert torch.allclose(authors, g[..., 0, 0].clamp_min(0), rtol=1e-12)
    paper = GradCAMPlusPlus.weights(None, A, G)  # noqa: the method does not use self
    expected = 16 * g[..., 0, 0].clamp_min(0) / (2 + g[..., 0, 0] * A.sum(dim=(2, 3)))
    assert torch.allclose(paper, expected, rtol=1e-12)
    assert not torch.allclose(paper / paper.sum(1, keepdim=True), authors / authors.sum(1, keepdim=True))


def test_authors_weights_scale_with_exp_score_and_batch_is_per_image():
    torch.manual_seed(1)
    A = torch.rand(3, 4, 5, 5, dtype=torch.float64)
    G = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    e = torch.tensor([0.5, 3.0, 1e3], dtype=torch.float64)
    assert torch.allclose(gradcampp_authors_weights(A, G, exp_S=e), e[:, None] * gradcampp_authors_weights(A, G), rtol=1e-12)
    single = torch.cat([gradcampp_authors_weights(A[i : i + 1], G[i : i + 1]) for i in range(3)])
    assert torch.equal(single, gradcampp_authors_weights(A, G))
    G[0, 1] = -G[0, 1].abs()  # a channel without positive gradient: weight 0, not NaN (utils.py:125)
    w = gradcampp_authors_weights(A, G)
    assert torch.isfinite(w).all() and w[0, 1] == 0
    assert GradCAMPlusPlusAuthors.relu
