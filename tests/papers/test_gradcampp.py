"""Grad-CAM++ against independent computations.

1. Closed form on a GAP network (conv → ReLU → GAP → linear, explained at the ReLU): the first
   derivative g_k = W_ck/(hw) is constant over positions, so α_k = 1/(2 + g_k Σ_ab A_k,ab) and
   w_k = hw · ReLU(g_k) / (2 + g_k Σ_ab A_k,ab).
2. The paper's definition with real higher derivatives: Y = exp(S), second and third
   derivatives from autograd (Hessian diagonal and the diagonal of its derivative); the
   paper's weights must equal exp(S) × our weights (the dropped positive factor).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import shared.models  # noqa: F401
from papers.gradcampp.method import GradCAMPlusPlus, gradcampp_alpha
from shared.explain import ClassTarget, build_explainer
from shared.models import build
from shared.models.adapter import ModelAdapter


class GapNet(nn.Module):
    def __init__(self, channels: int = 6, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def gap_adapter() -> ModelAdapter:
    return ModelAdapter(GapNet(), "cnn", "classifier", "act", mean=(0, 0, 0), std=(1, 1, 1)).eval()


def test_gradcampp_closed_form_on_gap_network():
    adapter = gap_adapter()
    x = torch.rand(3, 3, 6, 6)
    labels = torch.tensor([0, 2, 3])
    maps = GradCAMPlusPlus(adapter)(x, ClassTarget(labels))
    A = F.relu(adapter.model.conv(x)).detach()
    g = adapter.model.fc.weight.detach()[labels] / 36.0  # (B, C)
    w = 36.0 * g.clamp_min(0) / (2 + g * A.sum(dim=(2, 3)))
    expected = F.relu(torch.einsum("bk,bkhw->bhw", w, A))
    assert maps.abs().max() > 0
    assert torch.allclose(maps, expected, atol=1e-7, rtol=1e-5)


def test_paper_weights_with_exp_output_equal_ours_times_exp_score():
    torch.manual_seed(1)
    C, h, w = 2, 3, 3
    A = torch.rand(C, h, w, dtype=torch.float64)
    W = torch.randn(C, dtype=torch.float64)

    def S(a: torch.Tensor) -> torch.Tensor:  # pre-softmax score, linear in A (GAP + linear)
        return (W * a.reshape(C, h, w).mean(dim=(1, 2))).sum() + 0.3

    def Y(a: torch.Tensor) -> torch.Tensor:  # the paper's exponential output
        return torch.exp(S(a))

    a = A.flatten()
    dY = torch.autograd.functional.jacobian(Y, a)
    d2Y = torch.diagonal(torch.autograd.functional.hessian(Y, a))
    d3Y = torch.diagonal(torch.autograd.functional.jacobian(lambda v: torch.diagonal(torch.autograd.functional.hessian(Y, v, create_graph=True)), a))
    sum_A = A.sum(dim=(1, 2)).repeat_interleave(h * w)  # Σ_ab A^k_ab for each element's channel
    alpha = d2Y / (2 * d2Y + sum_A * d3Y)
    paper_w = (alpha * dY.clamp_min(0)).reshape(C, h * w).sum(dim=1)

    g = torch.autograd.functional.jacobian(S, a).reshape(1, C, h, w)
    ours = GradCAMPlusPlus(gap_adapter()).weights(A[None], g)[0]
    assert torch.allclose(paper_w, torch.exp(S(a)) * ours, rtol=1e-10)


def test_alpha_is_zero_where_gradient_is_zero():
    A = torch.rand(1, 2, 2, 2)
    G = torch.zeros(1, 2, 2, 2)
    G[0, 0, 0, 0] = 0.5
    alpha = gradcampp_alpha(A, G)
    assert torch.isfinite(alpha).all()
    assert alpha[0, 1].abs().sum() == 0
    assert torch.isclose(alpha[0, 0, 0, 0], torch.tensor(0.25) / (0.5 + A[0, 0].sum() * 0.125))


def test_batched_equals_per_image():
    torch.manual_seed(0)
    adapter = build("resnet_small", {"arch": "resnet_small"}, [str(i) for i in range(8)]).explain_mode()
    x = torch.rand(3, 3, 64, 64)
    labels = torch.tensor([1, 4, 6])
    explainer = build_explainer("gradcampp", adapter)
    batched = explainer(x, ClassTarget(labels))
    single = torch.cat([explainer(x[i : i + 1], ClassTarget(labels[i : i + 1])) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-6 * float(batched.abs().max()))



def test_refuses_an_embedding_model():
    # the closed form assumes non-negative (post-ReLU) activations; the embeddings' explained layer
    # is a 1x1 conv without ReLU (48.7 % negative channel sums on the trained embed_euclidean)
    from shared.explain.registry import MethodNotApplicable

    emb = build("emb", {"arch": "resnet_small", "task": "embedding", "metric": "cosine", "embedding_dim": 16}, []).explain_mode()
    with pytest.raises(MethodNotApplicable):
        build_explainer("gradcampp", emb)


def test_needs_target():
    with pytest.raises(ValueError, match="needs a target"):
        GradCAMPlusPlus(gap_adapter())(torch.rand(1, 3, 4, 4), None)
