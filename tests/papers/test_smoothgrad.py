"""SmoothGrad (Smilkov et al. 2017), SmoothGrad² and VarGrad against captum 0.9.

captum's ``NoiseTunnel`` draws its own noise (``torch.normal`` on the global generator, one
draw of (B·n, C, H, W) when ``nt_samples_batch_size`` is unset); ours shares one seeded draw
(n, C, H, W) between the images of a batch. The checks feed both the same noise:

1. One image: seed the global generator, let captum's ``NoiseTunnel(Saliency)`` draw, redraw
   the same noise with the same seed and the same ``torch.normal`` call, and give it to ours
   (divided by σ: ours takes standard normal draws). ``nt_type`` smoothgrad / smoothgrad_sq /
   vargrad with ``abs=False`` (the gradient is averaged signed, README) equal our ``mean`` /
   ``sq`` / ``var`` statistics, on every model role.
2. A batch with our own shared draws: our mean of gradients equals captum's ``Saliency``
   (abs=False) averaged over the explicit noisy copies x + σ_b ε_i.
3. σ → 0 (noise_level = 0): SmoothGrad equals gradient saliency, map and all.
4. The map is max_c |mean gradient|, not captum's NoiseTunnel(Saliency(abs=True)) mean of
   |gradient|: the two differ (documented convention).
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel
from captum.attr import Saliency as CaptumSaliency

import shared.models  # noqa: F401
from papers.saliency.method import Saliency
from papers.smoothgrad.method import SmoothGrad, noise_draws
from shared.explain import ClassTarget, build_explainer
from shared.explain.pair import PairTarget
from shared.models import build_adapter
from tiny_zoo import SIZE, ZOO, role

N = 6



@pytest.mark.parametrize("name", list(ZOO))
def test_equals_captum_noise_tunnel_fed_the_same_noise(name):
    adapter, images, target = role(name, n_images=1)
    index = torch.arange(1)
    tunnel = NoiseTunnel(CaptumSaliency(lambda x, i: target(adapter(x), index=i)))
    for nt_type, statistic in (("smoothgrad", "mean"), ("smoothgrad_sq", "sq"), ("vargrad", "var")):
        ours_sg = SmoothGrad(adapter, samples=N, noise_level=0.15, statistic=statistic, max_batch=4)
        sigma = float(ours_sg.sigma(images))
        torch.manual_seed(123)
        theirs = tunnel.attribute(images, nt_type=nt_type, nt_samples=N, stdevs=sigma, abs=False, additional_forward_args=(index,))
        torch.manual_seed(123)  # captum's own draw, repeated: NoiseTunnel._add_noise_to_input
        noise = torch.normal(0, torch.tensor(sigma).repeat((N, *images.shape[1:])))
        ours = ours_sg.attributions(images, target, noise=noise / sigma)
        scale = float(theirs.abs().max())
        assert scale > 0
        # VarGrad is a difference of two means: float32 cancellation, so a looser absolute bound
        atol = (1e-4 if statistic == "var" else 1e-6) * scale
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("name", ["resnet", "vit", "embed_cosine"])
def test_batch_mean_equals_captum_saliency_over_explicit_noisy_copies(name):
    adapter, images, target = role(name)
    sg = build_explainer("smoothgrad", adapter, samples=N, seed=7)
    ours = sg.attributions(images, target)
    noise = noise_draws(N, tuple(images.shape[1:]), seed=7)  # shared by every image
    sigma = sg.sigma(images)[:, None, None, None]
    saliency = CaptumSaliency(lambda x, i: target(adapter(x), index=i))
    index = torch.arange(images.shape[0])
    theirs = torch.stack([saliency.attribute(images + sigma * eps, abs=False, additional_forward_args=(index,)) for eps in noise]).mean(0)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6 * float(theirs.abs().max()))
    torch.testing.assert_close(sg(images, target), theirs.abs().amax(1), rtol=1e-4, atol=1e-6 * float(theirs.abs().max()))


def test_zero_noise_is_saliency():
    adapter, images, target = role("resnet")
    sg = SmoothGrad(adapter, samples=3, noise_level=0.0)
    plain = Saliency(adapter)
    torch.testing.assert_close(sg.attributions(images, target), plain.attributions(images, target), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(sg(images, target), plain(images, target), rtol=1e-5, atol=1e-9)


def test_map_is_magnitude_of_the_mean_not_mean_of_magnitudes():
    adapter, images, target = role("resnet", n_images=1)
    sg = SmoothGrad(adapter, samples=N, noise_level=0.2)
    sigma = float(sg.sigma(images))
    torch.manual_seed(5)
    abs_first = NoiseTunnel(CaptumSaliency(lambda x, i: target(adapter(x), index=i))).attribute(
        images, nt_type="smoothgrad", nt_samples=N, stdevs=sigma, abs=True, additional_forward_args=(torch.arange(1),)
    )
    torch.manual_seed(5)
    noise = torch.normal(0, torch.tensor(sigma).repeat((N, *images.shape[1:]))) / sigma
    ours = sg.attributions(images, target, noise=noise)
    assert bool((ours.abs() <= abs_first * (1 + 1e-5) + 1e-12).all())  # |mean| ≤ mean |·|
    assert float((abs_first - ours.abs()).max()) > 1e-3 * float(abs_first.max())  # and they differ


def test_bad_settings_are_refused():
    adapter, _, _ = role("resnet")
    with pytest.raises(ValueError, match="unknown statistic"):
        SmoothGrad(adapter, statistic="median")
    with pytest.raises(ValueError, match="samples"):
        SmoothGrad(adapter, samples=0)
    with pytest.raises(ValueError, match="noise_level"):
        SmoothGrad(adapter, noise_level=-0.1)
