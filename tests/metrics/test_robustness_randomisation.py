"""Robustness (Max/Avg-Sensitivity, local Lipschitz estimate) and randomisation variants
(independent, smooth and efficient MPRT): analytic values on linear models, plain-loop
references, batch invariance, seeds, and Quantus 0.6 at aligned conventions.

Quantus alignment, used throughout:
* noise: Quantus draws with ``np.random``; we hand it *our* draws, through a ``perturb_func``
  (robustness) or a stand-in for ``np.random.randn`` (SmoothMPRT) that returns our sample k on
  its k-th call, cycling (each Quantus loop draws the samples in order). Our draws are
  re-derived here from the documented convention (``torch.Generator().manual_seed(seed)``,
  float64, ``rand * 2 - 1`` times the radius / ``randn`` times sigma, cast to the images' dtype).
* layer seeds: Quantus re-seeds ``torch.manual_seed(seed + 1)`` before every layer, we use
  ``seed + i``; the tests patch our ``reinitialise`` to use Quantus's seed for every layer.
* Quantus computes norms of float32 arrays in float32, we in float64: tolerance rtol 1e-5.
"""

import copy

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from shared.metrics import randomisation as rnd
from shared.metrics import sanity
from shared.metrics.randomisation import discrete_entropy, efficient_mprt, independent_randomisation, smooth_mprt, smoothed_explain
from shared.metrics.robustness import avg_sensitivity, local_lipschitz_estimate, max_sensitivity

quantus = pytest.importorskip("quantus")


def tiny_net():
    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("conv1", nn.Conv2d(3, 4, 3, padding=1))
    net.add_module("act", nn.Tanh())
    net.add_module("conv2", nn.Conv2d(4, 4, 3, padding=1))
    net.add_module("pool", nn.AdaptiveAvgPool2d(2))
    net.add_module("flat", nn.Flatten())
    net.add_module("fc", nn.Linear(16, 3))
    return net.eval()


NET = tiny_net()
IMAGES = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
TARGETS = torch.tensor([0, 2, 1])


def input_gradient(model, images, classes):
    """Plain input gradient summed over channels (= quantus.explain(method="Gradient"):
    captum Saliency, abs=False, summed over axis 1)."""
    x = images.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, classes.view(-1, 1)).sum(), x)
    return grad.sum(1)


def explain_fn(images, index):
    return input_gradient(NET, images, TARGETS[index])


def quantus_explain(model, inputs, targets, **kwargs):
    return input_gradient(model, torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()


def our_noise(kind, samples, shape, scale, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    if kind == "uniform":
        return ((torch.rand((samples, *shape), generator=gen, dtype=torch.float64) * 2 - 1) * scale).to(dtype)
    return (torch.randn((samples, *shape), generator=gen, dtype=torch.float64) * scale).to(dtype)


class CyclingPerturb:
    """Quantus perturb_func adding our noise sample k (the same for every row) on call k."""

    def __init__(self, noise):
        self.noise = noise.numpy().reshape(noise.shape[0], -1)
        self.calls = 0

    def __call__(self, arr, indices, **kwargs):
        out = arr + self.noise[self.calls % len(self.noise)][None, :]
        self.calls += 1
        return out


# ---------------------------------------------------------------- robustness: analytic values


W = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)  # per-class weights
X64 = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
T64 = torch.tensor([1, 0])


def linear_gradient(images, index):  # gradient of f_c(x) = <W_c, x>: constant in x
    return W[T64[index]].sum(1)


def linear_grad_times_input(images, index):  # sum_c W_c * x_c
    return (W[T64[index]] * images).sum(1)


@pytest.mark.parametrize("metric", [max_sensitivity, avg_sensitivity, local_lipschitz_estimate])
def test_a_constant_explanation_is_perfectly_robust(metric):
    assert torch.equal(metric(linear_gradient, X64, samples=5), torch.zeros(2, dtype=torch.float64))


def test_sensitivity_of_gradient_times_input_on_a_linear_model():
    # Phi(x + d) - Phi(x) = sum_c W_c d_c, so each sample's ratio is ||sum_c W_c d_c|| / ||sum_c W_c x_c||.
    r, s = 0.05, 6
    noise = our_noise("uniform", s, (3, 6, 6), r, seed=4, dtype=torch.float64)
    assert noise.abs().max() <= r
    expected = torch.empty(2, s, dtype=torch.float64)
    for b in range(2):
        for j in range(s):
            w = W[T64[b]]
            expected[b, j] = (w * noise[j]).sum(0).norm() / (w * X64[b]).sum(0).norm()
    got_max = max_sensitivity(linear_grad_times_input, X64, radius=r, samples=s, seed=4)
    got_avg = avg_sensitivity(linear_grad_times_input, X64, radius=r, samples=s, seed=4)
    torch.testing.assert_close(got_max, expected.amax(1), rtol=1e-10, atol=0)
    torch.testing.assert_close(got_avg, expected.mean(1), rtol=1e-10, atol=0)


def test_lipschitz_of_the_image_itself_is_one_and_scales():
    # One channel, Phi(x) = k x: ||Phi(x) - Phi(x')|| / ||x - x'|| = k for every sample (up to the 1e-10).
    gray = X64[:, :1]
    for k in (1.0, 2.5):
        got = local_lipschitz_estimate(lambda im, idx: k * im[:, 0], gray, samples=4, normalise=False)
        torch.testing.assert_close(got, torch.full((2,), k, dtype=torch.float64), rtol=1e-9, atol=0)
    # Normalised per map, the scale k drops out.
    a = local_lipschitz_estimate(lambda im, idx: im[:, 0], gray, samples=4)
    b = local_lipschitz_estimate(lambda im, idx: 2.5 * im[:, 0], gray, samples=4)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    # Three channels, Phi(x) = sum_c x_c: ratio ||sum_c d_c|| / ||d||, by hand from the draws.
    noise = our_noise("gaussian", 4, (3, 6, 6), 0.1, seed=0, dtype=torch.float64)
    expected = max(noise[j].sum(0).norm() / noise[j].norm() for j in range(4))
    got = local_lipschitz_estimate(lambda im, idx: im.sum(1), X64, samples=4, normalise=False)
    torch.testing.assert_close(got, torch.full((2,), float(expected), dtype=torch.float64), rtol=1e-9, atol=0)


NET64 = tiny_net().double()  # float64: free of float32 convolution rounding, which depends on the batch size


def explain_fn64(images, index):
    return input_gradient(NET64, images, TARGETS[index])


@pytest.mark.parametrize("metric", [max_sensitivity, avg_sensitivity, local_lipschitz_estimate])
def test_batch_invariance_seed_and_chunking(metric):
    images = IMAGES.double()
    full = metric(explain_fn64, images, samples=4, seed=3)
    assert full.dtype == torch.float64 and full.shape == (3,)
    alone = torch.cat([metric(lambda im, idx, b=b: explain_fn64(im, idx + b), images[b : b + 1], samples=4, seed=3) for b in range(3)])
    torch.testing.assert_close(full, alone, rtol=1e-10, atol=0)
    torch.testing.assert_close(full, metric(explain_fn64, images, samples=4, seed=3, max_batch=5), rtol=1e-10, atol=0)
    assert torch.equal(full, metric(explain_fn64, images, samples=4, seed=3))
    assert not torch.equal(full, metric(explain_fn64, images, samples=4, seed=4))
    maps = explain_fn64(images, torch.arange(3))
    assert torch.equal(full, metric(explain_fn64, images, maps=maps, samples=4, seed=3))


def test_max_sensitivity_is_at_least_the_average():
    assert torch.all(max_sensitivity(explain_fn, IMAGES, samples=5) >= avg_sensitivity(explain_fn, IMAGES, samples=5))


def test_robustness_bad_input_is_named():
    with pytest.raises(ValueError, match="radius must be > 0"):
        max_sensitivity(explain_fn, IMAGES, radius=0.0)
    with pytest.raises(ValueError, match="one \\(H, W\\) map per row"):
        avg_sensitivity(lambda im, idx: im, IMAGES)
    with pytest.raises(ValueError, match="images must be a"):
        local_lipschitz_estimate(explain_fn, IMAGES[0])


# ---------------------------------------------------------------- robustness vs Quantus 0.6


@pytest.mark.parametrize(
    "name, ours, make",
    [
        ("MaxSensitivity", lambda n: max_sensitivity(explain_fn, IMAGES, radius=0.1, samples=n, seed=2), lambda n, p: quantus.MaxSensitivity(nr_samples=n, lower_bound=0.1, perturb_func=p, disable_warnings=True)),
        ("AvgSensitivity", lambda n: avg_sensitivity(explain_fn, IMAGES, radius=0.1, samples=n, seed=2), lambda n, p: quantus.AvgSensitivity(nr_samples=n, lower_bound=0.1, perturb_func=p, disable_warnings=True)),
        ("LocalLipschitzEstimate", lambda n: local_lipschitz_estimate(explain_fn, IMAGES, sigma=0.1, samples=n, seed=2), lambda n, p: quantus.LocalLipschitzEstimate(nr_samples=n, perturb_std=0.1, perturb_func=p, disable_warnings=True)),
    ],
)
def test_robustness_equals_quantus(name, ours, make):
    # Quantus defaults: sensitivity normalise=False; Lipschitz normalise=True with the max over
    # the evaluation batch, per image here with batch_size=1. abs=False in all three.
    samples = 4
    kind, scale = ("gaussian", 0.1) if name == "LocalLipschitzEstimate" else ("uniform", 0.1)
    perturb = CyclingPerturb(our_noise(kind, samples, (3, 8, 8), scale, seed=2))
    metric = make(samples, perturb)
    theirs = metric(model=NET, x_batch=IMAGES.numpy(), y_batch=TARGETS.numpy(), explain_func=quantus_explain, batch_size=1)
    assert perturb.calls == 3 * samples
    torch.testing.assert_close(ours(samples), torch.tensor(theirs, dtype=torch.float64), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- randomisation


def two_layer_net():
    torch.manual_seed(1)
    net = nn.Sequential()
    net.add_module("fc1", nn.Linear(3 * 6 * 6, 8))
    net.add_module("act", nn.Tanh())
    net.add_module("fc2", nn.Linear(8, 3))
    return nn.Sequential(nn.Flatten(), net).eval()


X6 = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(7))


def explain_two_layer(model):
    return input_gradient(model, X6, TARGETS)


def test_independent_randomisation_equals_a_plain_loop():
    net = two_layer_net()
    before = copy.deepcopy(net.state_dict())
    layers = ["1.fc2", "1.fc1"]
    original, steps = independent_randomisation(net, layers, explain_two_layer, seed=10)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    torch.testing.assert_close(original, explain_two_layer(net))
    for i, (name, step) in enumerate(zip(layers, steps)):
        ref = copy.deepcopy(net)
        layer = ref.get_submodule(name)
        torch.manual_seed(10 + i)
        layer.reset_parameters()  # only this layer; the other keeps its trained weights
        maps = explain_two_layer(ref)
        assert step.layer == name and step.layers == (name,)
        for b in range(3):
            rho = scipy.stats.spearmanr(original[b].flatten().numpy(), maps[b].flatten().numpy())[0]
            rho_abs = scipy.stats.spearmanr(original[b].abs().flatten().numpy(), maps[b].abs().flatten().numpy())[0]
            assert step.spearman[b].item() == pytest.approx(rho, abs=1e-6)
            assert step.spearman_abs[b].item() == pytest.approx(rho_abs, abs=1e-6)
    # Independent, not cumulative: randomising fc1 alone differs from fc2 then fc1.
    _, cascade = sanity.cascading_randomisation(net, layers, explain_two_layer, seed=10)
    assert not torch.allclose(cascade[1].spearman, steps[1].spearman)


@pytest.fixture
def quantus_layer_seed(monkeypatch):
    """Our layers re-initialised with Quantus's seed + 1 for every layer (see the module docstring)."""
    real = sanity.reinitialise

    def patched(module, seed):
        real(module, 43)

    monkeypatch.setattr(rnd, "reinitialise", patched)
    monkeypatch.setattr(sanity, "reinitialise", patched)


LAYERS_BOTTOM_UP = ["conv1", "conv2", "fc"]  # every module with reset_parameters, input first


def test_independent_randomisation_equals_quantus_mprt(quantus_layer_seed):
    metric = quantus.MPRT(layer_order="independent", seed=42, disable_warnings=True)
    theirs = metric(model=NET, x_batch=IMAGES.numpy(), y_batch=TARGETS.numpy(), explain_func=quantus_explain, batch_size=8)
    _, steps = independent_randomisation(NET, LAYERS_BOTTOM_UP, lambda m: input_gradient(m, IMAGES, TARGETS))
    assert list(theirs) == ["original", *LAYERS_BOTTOM_UP]
    for step in steps:  # Quantus MPRT defaults: abs=True, Spearman (its normalisation: a positive scale)
        torch.testing.assert_close(step.spearman_abs, torch.tensor(theirs[step.layer], dtype=torch.float64), rtol=0, atol=1e-6)


def test_discrete_entropy_by_hand_and_against_numpy_and_quantus():
    # 16 values over [0, 3] in 4 bins of width 0.75: counts 4 (0s), 4 (1s), 2 (2s), 6 (3s, the closed last bin).
    m = torch.tensor([0.0] * 4 + [1.0] * 4 + [2.0] * 2 + [3.0] * 6).view(1, 4, 4)
    p = np.array([4, 4, 2, 6]) / 16
    assert discrete_entropy(m, n_bins=4).item() == pytest.approx(float(-(p * np.log(p)).sum()), abs=1e-14)
    assert discrete_entropy(torch.full((1, 3, 3), 2.0)).item() == 0.0
    # Values on a grid, many of them exactly on bin edges, and plain random maps.
    gen = torch.Generator().manual_seed(0)
    maps = torch.cat([torch.randint(0, 201, (3, 12, 12), generator=gen).float() / 200, torch.randn(3, 12, 12, generator=gen)])
    for n_bins in (7, 100):
        got = discrete_entropy(maps, n_bins)
        for b in range(6):
            ref = scipy.stats.entropy(np.histogram(maps[b].double().numpy(), bins=n_bins)[0])
            q = quantus.functions.complexity_func.discrete_entropy(a=maps[b].double().numpy(), x=None, n_bins=n_bins)
            assert got[b].item() == pytest.approx(ref, abs=1e-12)
            assert got[b].item() == pytest.approx(q, abs=1e-12)


def test_efficient_mprt_against_a_plain_computation_and_quantus(quantus_layer_seed):
    explain = lambda m: input_gradient(m, IMAGES, TARGETS)  # noqa: E731
    res = efficient_mprt(NET, explain, layers=LAYERS_BOTTOM_UP, keep_maps=True)
    ref = copy.deepcopy(NET)
    for name in LAYERS_BOTTOM_UP:
        torch.manual_seed(43)
        ref.get_submodule(name).reset_parameters()
    torch.testing.assert_close(res.maps_after, explain(ref))
    hist_entropy = lambda a: scipy.stats.entropy(np.histogram(a.double().numpy(), bins=100)[0])  # noqa: E731
    for b in range(3):
        assert res.before[b].item() == pytest.approx(hist_entropy(res.maps_before[b]), abs=1e-12)
        assert res.after[b].item() == pytest.approx(hist_entropy(res.maps_after[b]), abs=1e-12)
    torch.testing.assert_close(res.ratio, res.after / res.before)
    # Quantus EfficientMPRT defaults: bottom_up cascade over every module with reset_parameters,
    # skip_layers=True (keep the last), n_bins 100, abs/normalise False; it returns ratio - 1.
    metric = quantus.EfficientMPRT(seed=42, disable_warnings=True)
    theirs = metric(model=NET, x_batch=IMAGES.numpy(), y_batch=TARGETS.numpy(), explain_func=quantus_explain, batch_size=8)
    torch.testing.assert_close(res.ratio - 1, torch.tensor(theirs, dtype=torch.float64), rtol=0, atol=1e-9)


def test_efficient_mprt_whole_model_is_seeded_and_leaves_the_model_alone():
    net = two_layer_net()
    before = copy.deepcopy(net.state_dict())
    a = efficient_mprt(net, explain_two_layer, seed=5)
    b = efficient_mprt(net, explain_two_layer, seed=5)
    assert torch.equal(a.ratio, b.ratio) and a.ratio.shape == (3,) and a.ratio.dtype == torch.float64
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_smoothing_conventions():
    def explain(model, images, index):
        return input_gradient(model, images, TARGETS[index])

    plain = explain(NET, IMAGES, torch.arange(3))
    # One sample is the clean one; zero noise leaves every sample clean.
    torch.testing.assert_close(smoothed_explain(explain, IMAGES, samples=1)(NET), plain.double())
    torch.testing.assert_close(smoothed_explain(explain, IMAGES, samples=5, noise_magnitude=0.0)(NET), plain.double(), rtol=1e-6, atol=1e-9)
    # Linear in the input: the mean of x + std * z_s over the samples (z_last = 0), by hand.
    z = torch.cat([torch.randn((3, 3, 8, 8), generator=torch.Generator().manual_seed(9), dtype=torch.float64), torch.zeros(1, 3, 8, 8, dtype=torch.float64)])
    flat = IMAGES.flatten(1)
    std = (0.1 * (flat.amax(1) - flat.amin(1))).double()
    expected = torch.stack([sum((IMAGES[b].double() + z[s] * std[b]).float().double().sum(0) for s in range(4)) / 4 for b in range(3)])
    got = smoothed_explain(lambda m, im, idx: im.sum(1), IMAGES, samples=4, seed=9)(NET)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    # Batch invariance and chunking.
    full = smoothed_explain(explain, IMAGES, samples=4, max_batch=5)(NET)
    alone = torch.cat([smoothed_explain(lambda m, im, idx, b=b: explain(m, im, idx + b), IMAGES[b : b + 1], samples=4)(NET) for b in range(3)])
    torch.testing.assert_close(full, alone, rtol=1e-5, atol=1e-8)


def test_smooth_mprt_equals_quantus(quantus_layer_seed, monkeypatch):
    # Quantus's noise: np.random.randn replaced by one returning our draw k on call k (the same for every image).
    samples = 4
    z = torch.randn((samples - 1, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.float64).numpy()
    calls = []

    def fake_randn(*shape):  # Quantus: epsilon = np.random.randn(*x_batch.shape) * std, samples - 1 calls per explanation
        calls.append(shape)
        return np.broadcast_to(z[(len(calls) - 1) % (samples - 1)], shape).copy()

    metric = quantus.SmoothMPRT(seed=42, nr_samples=samples, noise_magnitude=0.1, disable_warnings=True)
    with monkeypatch.context() as patch:
        patch.setattr(np.random, "randn", fake_randn)
        theirs = metric(
            model=NET,
            x_batch=IMAGES.numpy(),
            y_batch=TARGETS.numpy(),
            explain_func=quantus.explain,  # SmoothMPRT calls quantus.explain with explain_func_kwargs
            explain_func_kwargs={"method": "Gradient"},
            batch_size=8,
        )
    assert len(calls) == (len(LAYERS_BOTTOM_UP) + 2) * (samples - 1)  # a_batch, "original", each layer
    _, steps = smooth_mprt(NET, LAYERS_BOTTOM_UP, lambda m, im, idx: input_gradient(m, im, TARGETS[idx]), IMAGES, samples=samples, noise_magnitude=0.1)
    assert list(theirs) == ["original", *LAYERS_BOTTOM_UP]
    np.testing.assert_allclose(theirs["original"], 1.0, atol=1e-6)  # same noise both times
    for step in steps:  # Quantus defaults abs=True, Spearman
        torch.testing.assert_close(step.spearman_abs, torch.tensor(theirs[step.layer], dtype=torch.float64), rtol=0, atol=1e-6)
