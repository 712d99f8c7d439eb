"""Eigen-CAM against NumPy's SVD in float64 (an independent factorisation), the sign rule,
exact rank-one activations, class-agnosticism, and batched == per-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import shared.models  # noqa: F401
from papers.eigencam.method import EigenCAM, first_principal_projection
from shared.explain import ClassTarget, build_explainer
from shared.models import build
from shared.models.adapter import ModelAdapter


class Identity3(nn.Module):
    """The 'activations' are the input itself (3 channels), so A is fully under the test's control."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Identity()
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def numpy_eigencam(A: np.ndarray, center: bool = False) -> np.ndarray:
    """O v₁ with O = A as (hw, C), sign so that Σ_u L_u Σ_k A_k(u) ≥ 0."""
    c, h, w = A.shape
    O = A.reshape(c, h * w).T.astype(np.float64)
    if center:
        O = O - O.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(O, full_matrices=False)
    p = O @ vt[0]
    if (p * A.sum(axis=0).reshape(-1)).sum() < 0:
        p = -p
    return p.reshape(h, w)


@pytest.mark.parametrize("shape", [(2, 16, 3, 3), (2, 4, 5, 5)])  # hw ≤ C and hw > C branches
@pytest.mark.parametrize("center", [False, True])
def test_cam_matches_numpy_svd(shape, center):
    torch.manual_seed(0)
    A = torch.randn(*shape)
    explainer = EigenCAM(ModelAdapter(Identity3(), "cnn", "classifier", "features").eval(), center=center)
    got = explainer.cam(A, None)
    for i in range(shape[0]):
        expected = numpy_eigencam(A[i].numpy(), center)
        assert np.allclose(got[i].numpy(), expected, atol=1e-5), (shape, center)


def test_full_explainer_at_input_resolution_and_sign_rule():
    adapter = ModelAdapter(Identity3(), "cnn", "classifier", "features", mean=(0, 0, 0), std=(1, 1, 1)).eval()
    x = torch.rand(3, 3, 6, 6)
    maps = EigenCAM(adapter)(x)  # no target: class-agnostic
    for i in range(3):
        assert np.allclose(maps[i].numpy(), numpy_eigencam(x[i].numpy()), atol=1e-5)
    # non-negative activations: the fixed sign makes the whole map non-negative (Perron–Frobenius)
    assert (maps >= -1e-6).all()
    assert ((maps * x.sum(1)).sum(dim=(1, 2)) >= 0).all()


def test_rank_one_activations_give_the_spatial_factor():
    u = torch.rand(1, 1, 4, 4) + 0.1
    v = torch.tensor([3.0, -1.0, 2.0]).view(1, 3, 1, 1)
    A = v * u  # channel k = v_k · u
    got = EigenCAM(ModelAdapter(Identity3(), "cnn", "classifier", "features").eval()).cam(A, None)
    # O = u vᵀ, v₁ = v/|v| up to sign, O v₁ = |v| u; the mean map Σ_k A_k = (Σ v) u > 0 fixes the sign
    assert torch.allclose(got[0], v.norm() * u[0, 0], atol=1e-5)


def test_projection_of_a_negated_matrix_is_fixed_by_the_sign_rule():
    torch.manual_seed(0)
    A = torch.rand(1, 8, 4, 4)
    explainer = EigenCAM(ModelAdapter(Identity3(), "cnn", "classifier", "features").eval())
    # -A has the same singular vectors; the rule then flips the map so it correlates with Σ(-A)
    assert torch.allclose(explainer.cam(-A, None), -explainer.cam(A, None), atol=1e-5)
    assert torch.allclose(first_principal_projection(A.flatten(2).transpose(1, 2)).abs(), explainer.cam(A, None).flatten(1).abs(), atol=1e-5)


def test_class_agnostic_and_batched_equals_per_image():
    torch.manual_seed(0)
    adapter = build("vit", {"arch": "vit_small_shapes"}, [str(i) for i in range(8)]).explain_mode()
    x = torch.rand(3, 3, 64, 64)
    explainer = build_explainer("eigencam", adapter)
    a = explainer(x, ClassTarget([0, 1, 2]))
    b = explainer(x, ClassTarget([7, 7, 7]))
    c = explainer(x)
    assert torch.equal(a, b) and torch.equal(a, c)
    single = torch.cat([explainer(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(a, single, atol=1e-5 * float(a.abs().max()))


def test_wrong_layer_is_a_clear_error():
    adapter = ModelAdapter(Identity3(), "cnn", "classifier", "features").eval()
    with pytest.raises(KeyError, match="nearest layer names"):
        EigenCAM(adapter, layer="featurs")


# ---------------------------------------------------------------- FGSM (papers/eigencam/figures.py)

from papers.eigencam.figures import fgsm, fgsm_direction  # noqa: E402


class LinearClassifier(nn.Module):
    """logits = W vec(x) + b: the cross-entropy gradient is Wᵀ(softmax(logits) − onehot(y)) in closed form."""

    def __init__(self, n_in: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_fgsm_is_epsilon_times_sign_of_closed_form_gradient():
    torch.manual_seed(0)
    model = LinearClassifier(3 * 4 * 4, 5)
    adapter = ModelAdapter(model, "cnn", "classifier", "fc", mean=(0, 0, 0), std=(1, 1, 1)).eval()
    images = 0.25 + 0.5 * torch.rand(3, 3, 4, 4)  # in [0.25, 0.75]: no clipping at ε ≤ 8/255
    labels = torch.tensor([0, 3, 1])
    with torch.no_grad():
        p = model(images).softmax(1)
        grad = ((p - F.one_hot(labels, 5).float()) @ model.fc.weight).view_as(images)  # Wᵀ(p − y)
    direction = fgsm_direction(adapter, images, labels)
    assert torch.equal(direction, grad.sign())
    eps = [0.0, 1 / 255, 8 / 255]
    noisy = fgsm(images, direction, eps)
    assert noisy.shape == (3, 3, 3, 4, 4)
    for k, e in enumerate(eps):
        torch.testing.assert_close(noisy[k] - images, e * grad.sign(), atol=1e-7, rtol=0)
    assert all(p.grad is None for p in model.parameters())


def test_fgsm_clips_to_the_image_range_and_rejects_negative_strength():
    images = torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    direction = torch.tensor([-1.0, 1.0, 1.0]).view(1, 1, 1, 3).expand(1, 3, 1, 3)
    out = fgsm(images, direction, [0.1])[0, 0, 0, 0]
    assert out.tolist() == pytest.approx([0.0, 0.6, 1.0])
    with pytest.raises(ValueError, match=">= 0"):
        fgsm(images, direction, [-0.1])


def test_fgsm_direction_needs_one_label_per_image():
    model = LinearClassifier(3 * 4 * 4, 5)
    adapter = ModelAdapter(model, "cnn", "classifier", "fc", mean=(0, 0, 0), std=(1, 1, 1)).eval()
    with pytest.raises(ValueError, match="labels"):
        fgsm_direction(adapter, torch.rand(2, 3, 4, 4), torch.tensor([0, 1, 2]))
