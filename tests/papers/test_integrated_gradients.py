"""Integrated Gradients (Sundararajan et al. 2017) against its completeness axiom and captum.

1. Completeness (Prop. 1): Σ_i IG_i(x) = F(x) − F(x') for the integral; for the m-point
   quadrature on a tiny smooth network (conv → softplus → GAP → linear, float64) the error
   shrinks with m at the rule's order: ×16 per ×4 steps for the trapezoid rule (error ∝ 1/m²),
   to < 1e-8 for 16-point Gauss–Legendre; for a class logit and a cosine similarity target,
   black and mean-colour baselines. The map (Σ_c) therefore sums to F(x) − F(x') too.
2. The quadrature nodes and weights equal captum 0.9's ``approximation_parameters`` for
   riemann_left / right / middle and gausslegendre; for riemann_trapezoid captum's weights are
   (m−1)/m × ours (it writes 1/m where the rule has 1/(m−1)).
3. captum's ``IntegratedGradients`` on the same callable (x ↦ target(adapter(x)), the target
   row passed as an additional forward argument, which captum repeats over the steps and splits
   with ``internal_batch_size``) at the same baseline, steps and method: equal on every model
   role (rtol 1e-4: float32 sums of m gradients in a different order); for riemann_trapezoid
   equal after the (m−1)/m factor.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients as CaptumIG
from captum.attr._utils.approximation_methods import approximation_parameters
from torch import nn

import shared.models  # noqa: F401
from papers.integrated_gradients.method import QUADRATURES, IntegratedGradients, quadrature
from shared.explain import ClassTarget, SimilarityTarget, build_explainer
from shared.explain.pair import PairTarget
from shared.models import build_adapter
from shared.models.adapter import ModelAdapter
from tiny_zoo import SIZE, ZOO
from tiny_zoo import role as tiny_role



def role(name: str):
    return tiny_role(name, n_images=2, labels=(0, 3))


class SmoothNet(nn.Module):
    """conv → softplus → GAP → linear: smooth along the path, so the quadrature order shows."""

    def __init__(self, out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.act = nn.Softplus(beta=3.0)
        self.fc = nn.Linear(6, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def smooth_adapter(task: str) -> ModelAdapter:
    torch.manual_seed(0)
    model = SmoothNet(4).double()
    adapter = ModelAdapter(model, "cnn", task, "act", mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.5), metric="cosine" if task == "embedding" else None)
    return adapter.double().explain_mode()


@pytest.mark.parametrize("task", ["classifier", "embedding"])
@pytest.mark.parametrize("baseline", ["black", "mean"])
def test_completeness_error_shrinks_with_steps(task, baseline):
    adapter = smooth_adapter(task)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 6, 6, generator=g, dtype=torch.float64)
    target = ClassTarget([1, 3]) if task == "classifier" else SimilarityTarget(torch.randn(2, 4, generator=g, dtype=torch.float64))
    ig = IntegratedGradients(adapter, baseline=baseline)
    with torch.no_grad():
        gap = target(adapter(x)) - target(adapter(ig.baseline_image(x)))
    assert float(gap.abs().min()) > 1e-3  # a non-trivial difference to explain

    def error(steps: int, method: str) -> float:
        maps = IntegratedGradients(adapter, steps=steps, method=method, baseline=baseline)(x.double(), target).double()
        # the (float32) map sums to the completeness sum; check the float64 attributions exactly
        attr = IntegratedGradients(adapter, steps=steps, method=method, baseline=baseline).attributions(x, target)
        assert torch.allclose(maps.sum(dim=(1, 2)), attr.sum(dim=(1, 2, 3)), rtol=1e-5)
        return float((attr.sum(dim=(1, 2, 3)) - gap).abs().max() / gap.abs().min())

    trapezoid = [error(m, "riemann_trapezoid") for m in (4, 16, 64)]
    assert trapezoid[1] < trapezoid[0] / 10 and trapezoid[2] < trapezoid[1] / 10, trapezoid  # ∝ 1/m²: ×16
    assert trapezoid[2] < 1e-3
    assert error(16, "gausslegendre") < 1e-8


@pytest.mark.parametrize("method", QUADRATURES)
def test_quadrature_matches_captum(method):
    m = 7
    alphas, weights = quadrature(m, method)
    step_sizes, captum_alphas = approximation_parameters(method)
    torch.testing.assert_close(alphas, torch.tensor(captum_alphas(m), dtype=torch.float64), rtol=0, atol=1e-7)
    factor = (m - 1) / m if method == "riemann_trapezoid" else 1.0
    torch.testing.assert_close(weights * factor, torch.tensor(step_sizes(m), dtype=torch.float64), rtol=0, atol=1e-12)
    assert abs(float(weights.sum()) - 1) < 1e-12


@pytest.mark.parametrize("name", list(ZOO))
def test_equals_captum_integrated_gradients_on_the_same_callable(name):
    adapter, images, target = role(name)
    index = torch.arange(images.shape[0])
    captum_ig = CaptumIG(lambda x, i: target(adapter(x), index=i))
    steps = 8
    for method, baseline in (("gausslegendre", "black"), ("riemann_trapezoid", "mean")):
        ours_ig = build_explainer("integrated_gradients", adapter, steps=steps, method=method, baseline=baseline, max_batch=5)
        ours = ours_ig.attributions(images, target)
        theirs = captum_ig.attribute(
            images, baselines=ours_ig.baseline_image(images), n_steps=steps, method=method,
            internal_batch_size=6, additional_forward_args=(index,),
        )
        factor = (steps - 1) / steps if method == "riemann_trapezoid" else 1.0
        scale = float(ours.abs().max())
        assert scale > 0
        torch.testing.assert_close(ours * factor, theirs, rtol=1e-4, atol=1e-5 * scale)


def test_chunking_does_not_change_the_result():
    adapter, images, target = role("resnet")
    one = IntegratedGradients(adapter, steps=6, max_batch=1000)(images, target)
    chunked = IntegratedGradients(adapter, steps=6, max_batch=5)(images, target)
    torch.testing.assert_close(one, chunked, rtol=0, atol=1e-6 * float(one.abs().max()))


def test_bad_settings_are_refused():
    adapter, _, _ = role("resnet")
    with pytest.raises(ValueError, match="unknown integration method"):
        IntegratedGradients(adapter, method="simpson")
    with pytest.raises(ValueError, match="at least 2 steps"):
        IntegratedGradients(adapter, steps=1)
    with pytest.raises(ValueError, match="unknown baseline"):
        IntegratedGradients(adapter, baseline="white")
