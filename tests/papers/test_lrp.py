"""LRP (papers/lrp): zennit's rules against matrix-form replicas, conservation, and the
registered methods against a direct zennit call.

1. Every rule, on a tiny ReLU network (conv 2→3 k2 on 3×3, ReLU, dense 12→4, ReLU, dense 4→3;
   float64, no BatchNorm) against the rule written out in plain torch ops on the network's
   weight matrices (the convolution as an explicit (12, 18) matrix built by loops). One
   parametrised test over all rules, zennit's style. Conventions written down below: zennit's
   stabiliser adds ε·sign(z) with sign(0) = +1; αβ / z⁺ / γ put the positive (negative) part
   of the bias into the positive (negative) denominator; z^B's bias cancels.
2. Conservation: with biases removed from the rules (zero_params=["bias"]), Σ_p R_p = f_c.
3. The registered methods equal zennit's Gradient attributor called directly on the adapter's
   model (same composite classes, same canonizers, same seed: one-hot × logit), CNN classifiers.
Batch == one-at-a-time is the contract test's (tests/explain/test_registry_contract.py).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat, LayerMapComposite, SpecialFirstLayerMapComposite
from zennit.rules import AlphaBeta, Epsilon, Flat, Gamma, Pass, ZBox, ZPlus
from zennit.types import Activation, Linear

from papers.lrp.method import COMPOSITES, TimmCanonizer, lrp_attribution, make_composite, relevance_seed
from shared.explain import ClassTarget, SimilarityTarget, build_explainer
from shared.models import build_adapter
from shared.models.adapter import IMAGENET_MEAN, IMAGENET_STD

D = torch.float64
EPS = 1e-3  # the ε of the ε rule in the replicas (large enough that the stabiliser matters)
STAB = 1e-6
LOW, HIGH = -2.0, 2.5  # z^B's box for the tiny net's input


def tiny_net() -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, kernel_size=2), nn.ReLU(), nn.Flatten(), nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.bias.normal_(0, 0.3)
    return net.to(D).eval()


def conv_matrix(weight: torch.Tensor, bias: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A stride-1, unpadded convolution as a dense matrix on the flattened (C, H, W) input."""
    o_ch, c_ch, k, _ = weight.shape
    ho, wo = h - k + 1, w - k + 1
    M = torch.zeros(o_ch * ho * wo, c_ch * h * w, dtype=D)
    for o, y, x, c, ky, kx in itertools.product(range(o_ch), range(ho), range(wo), range(c_ch), range(k), range(k)):
        M[o * ho * wo + y * wo + x, c * h * w + (y + ky) * w + (x + kx)] = weight[o, c, ky, kx]
    return M, bias.repeat_interleave(ho * wo)


def stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    """zennit's stabiliser: z + ε·sign(z), sign(0) = +1."""
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z)


def pos(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(min=0)


def neg(t: torch.Tensor) -> torch.Tensor:
    return t.clamp(max=0)


# R_i (in) from R_j (out) for one layer z = W a + b, written as in the papers
def rule_epsilon(a, W, b, R, eps=EPS):
    return a * (W.T @ (R / stab(W @ a + b, eps)))  # Bach et al. Eq. 58


def rule_alphabeta(a, W, b, R, alpha=2.0, beta=1.0):
    zp = pos(W) @ pos(a) + neg(W) @ neg(a) + pos(b)  # Σ_i z_ij⁺ + b_j⁺ (Bach et al. Eq. 60)
    zn = neg(W) @ pos(a) + pos(W) @ neg(a) + neg(b)
    sp, sn = R / stab(zp, STAB), R / stab(zn, STAB)
    return alpha * (pos(a) * (pos(W).T @ sp) + neg(a) * (neg(W).T @ sp)) - beta * (pos(a) * (neg(W).T @ sn) + neg(a) * (pos(W).T @ sn))


def rule_zplus(a, W, b, R):
    return rule_alphabeta(a, W, b, R, alpha=1.0, beta=0.0)


def rule_gamma(a, W, b, R, gamma=0.25):
    """zennit's generalised γ rule: positive outputs use (W + γW⁺) on a⁺ and (W + γW⁻) on a⁻."""
    z = W @ a + b
    Wp, Wn = W + gamma * pos(W), W + gamma * neg(W)
    zp = Wp @ pos(a) + (b + gamma * pos(b)) + Wn @ neg(a)
    zn = Wn @ pos(a) + (b + gamma * neg(b)) + Wp @ neg(a)
    sp = (z > 0).to(D) * R / stab(zp, STAB)
    sn = (z < 0).to(D) * R / stab(zn, STAB)
    return pos(a) * (Wp.T @ sp) + neg(a) * (Wn.T @ sp) + pos(a) * (Wn.T @ sn) + neg(a) * (Wp.T @ sn)


def rule_flat(a, W, b, R, ones=None):
    ones = torch.ones_like(W) if ones is None else ones  # the layer's connectivity, all weights 1
    return ones.T @ (R / stab(ones @ torch.ones_like(a), STAB))


def rule_zbox(a, W, b, R, low=LOW, high=HIGH):
    lo, hi = torch.full_like(a, low), torch.full_like(a, high)
    z = W @ a - pos(W) @ lo - neg(W) @ hi  # b − b⁺ − b⁻ = 0: the bias cancels
    s = R / stab(z, STAB)
    return a * (W.T @ s) - lo * (pos(W).T @ s) - hi * (neg(W).T @ s)


def replica(net: nn.Sequential, x: torch.Tensor, label: int, first_rule, rule) -> torch.Tensor:
    """Input relevance (2, 3, 3) of one image: ``first_rule`` at the convolution, ``rule`` at the dense layers."""
    conv, _, _, fc1, _, fc2 = net
    M, mb = conv_matrix(conv.weight, conv.bias, 3, 3)
    ones, _ = conv_matrix(torch.ones_like(conv.weight), conv.bias, 3, 3)
    a0 = x.flatten()
    a1 = (M @ a0 + mb).relu()
    a2 = (fc1.weight @ a1 + fc1.bias).relu()
    y = fc2.weight @ a2 + fc2.bias
    R = torch.zeros_like(y)
    R[label] = y[label]  # output relevance: one-hot × logit
    R = rule(a2, fc2.weight, fc2.bias, R)  # ReLUs pass relevance unchanged
    R = rule(a1, fc1.weight, fc1.bias, R)
    kw = {"ones": ones} if first_rule is rule_flat else {}
    R = first_rule(a0, M, mb, R, **kw)
    return R.reshape(2, 3, 3)


# (name, zennit rule at the first layer, at the others; replica's first and other rule)
RULES = {
    "epsilon": (Epsilon(epsilon=EPS), Epsilon(epsilon=EPS), rule_epsilon, rule_epsilon),
    "alpha2beta1": (AlphaBeta(2.0, 1.0, stabilizer=STAB), AlphaBeta(2.0, 1.0, stabilizer=STAB), rule_alphabeta, rule_alphabeta),
    "zplus": (ZPlus(stabilizer=STAB), ZPlus(stabilizer=STAB), rule_zplus, rule_zplus),
    "gamma": (Gamma(gamma=0.25, stabilizer=STAB), Gamma(gamma=0.25, stabilizer=STAB), rule_gamma, rule_gamma),
    "flat_first": (Flat(stabilizer=STAB), Epsilon(epsilon=EPS), rule_flat, rule_epsilon),
    "zbox_first": (ZBox(low=LOW, high=HIGH, stabilizer=STAB), Epsilon(epsilon=EPS), rule_zbox, rule_epsilon),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_matches_matrix_replica(rule: str) -> None:
    net = tiny_net()
    zennit_first, zennit_rest, first, rest = RULES[rule]
    composite = SpecialFirstLayerMapComposite(layer_map=[(Activation, Pass()), (Linear, zennit_rest)], first_map=[(Linear, zennit_first)])
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(4, 2, 3, 3, generator=g, dtype=D) * 4 - 2)  # signed input, inside the box
    labels = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        logits = net(x)
    seed = torch.nn.functional.one_hot(labels, 3).to(D) * logits
    _, relevance = Gradient(net, composite)(x.clone().requires_grad_(True), seed)
    expected = torch.stack([replica(net, x[i], int(labels[i]), first, rest) for i in range(4)])
    torch.testing.assert_close(relevance, expected, rtol=1e-9, atol=1e-12)
    assert relevance.abs().sum() > 0


@pytest.mark.parametrize("rule", ["epsilon", "zplus", "gamma", "flat_first", "zbox_first"])
def test_conservation_without_biases(rule: str) -> None:
    """Σ_p R_p = f_c when no rule lets a bias absorb relevance (ε → 0); αβ is excluded: it
    conserves only where both z⁺ and z⁻ are non-zero (Bach et al. Sec. 4.2)."""
    net = tiny_net()
    make = {
        "epsilon": lambda: Epsilon(epsilon=1e-12, zero_params=["bias"]),
        "zplus": lambda: ZPlus(stabilizer=1e-12, zero_params=["bias"]),
        "gamma": lambda: Gamma(stabilizer=1e-12, zero_params=["bias"]),
        "flat_first": lambda: Flat(stabilizer=1e-12),
        "zbox_first": lambda: ZBox(LOW, HIGH, stabilizer=1e-12, zero_params=["bias"]),
    }[rule]
    rest = Epsilon(epsilon=1e-12, zero_params=["bias"]) if rule.endswith("_first") else make()
    composite = SpecialFirstLayerMapComposite(layer_map=[(Activation, Pass()), (Linear, rest)], first_map=[(Linear, make())])
    x = torch.rand(5, 2, 3, 3, generator=torch.Generator().manual_seed(4), dtype=D) * 4 - 2
    labels = torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        logits = net(x)
    f_c = logits.gather(1, labels[:, None])[:, 0]
    # z⁺ / γ lose the relevance of a unit whose positive (negative) pre-activation part is 0: ReLU
    # nets route none there (such a unit is dead), so only the top layer's signed seed matters
    _, relevance = Gradient(net, composite)(x.clone().requires_grad_(True), torch.nn.functional.one_hot(labels, 3).to(D) * logits)
    torch.testing.assert_close(relevance.sum((1, 2, 3)), f_c, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------ the adapters' models ----

CLASSES = ["a", "b", "c", "d"]
MODELS = {"resnet": {"arch": "resnet_small", "task": "classifier"}, "plaincnn": {"arch": "vgg_small", "task": "classifier"}}


@pytest.fixture(scope="module")
def adapters() -> dict:
    torch.manual_seed(0)
    out = {}
    for role, cfg in MODELS.items():
        a = build_adapter(role, cfg, CLASSES).explain_mode()
        with torch.no_grad():  # trained BatchNorm statistics, not the identity of a fresh model
            for m in a.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.normal_(0, 0.1)
                    m.running_var.uniform_(0.5, 2.0)
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.1)
        out[role] = a
    return out


def _images(n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


CONSERVING = [("plaincnn", name) for name in COMPOSITES] + [("resnet", "epsilon_gamma_box")]


@pytest.mark.parametrize(("role", "name"), CONSERVING)
def test_conservation_on_the_adapters_models(adapters, role: str, name: str) -> None:
    """BatchNorm merged, residual sums and the global pool as Norm-rule modules, biases out of
    the rules: Σ_p R_p = f_c to 0.1 %. On the ResNet only EpsilonGammaBox conserves exactly (γ
    has a branch for negative pre-activations); z⁺ / αβ / ε lose the relevance that a residual
    sum routes to a unit without positive (negative) inputs, or divide by near-zero sums
    (README.md, "Conservation")."""
    adapter = adapters[role]
    images = _images()
    target = ClassTarget([0, 1, 2])
    eps = 1e-9 if name == "epsilon" else 1e-6
    relevance, output = lrp_attribution(adapter, images, target, make_composite(name, adapter, epsilon=eps, zero_params=["bias"]))
    f_c = target(output)
    torch.testing.assert_close(relevance.sum((1, 2, 3)).double(), f_c.double(), rtol=1e-3, atol=1e-3 * float(f_c.abs().max()))


def _direct_zennit(adapter, images: torch.Tensor, labels: torch.Tensor, composite) -> torch.Tensor:
    """zennit's own recipe: Gradient attributor, one-hot × logit output relevance, normalised input."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = ((images - mean) / std).requires_grad_(True)
    with Gradient(model=adapter.model, composite=composite) as attributor:
        out, relevance = attributor(x, lambda y: torch.eye(y.shape[1])[labels] * y.detach())
    return relevance.sum(1)


@pytest.mark.parametrize(("method", "role"), list(itertools.product(
    ["lrp_epsilon", "lrp_alpha2beta1", "lrp_epsilon_plus_flat", "lrp_epsilon_gamma_box"], sorted(MODELS))))
def test_registered_method_equals_direct_zennit(adapters, method: str, role: str) -> None:
    adapter = adapters[role]
    images = _images()
    labels = torch.tensor([0, 1, 2])
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    cans = [SequentialMergeBatchNorm(), TimmCanonizer()]
    base = [(Activation, Pass())]
    from zennit.composites import layer_map_base

    composite = {
        "lrp_epsilon": lambda: LayerMapComposite(layer_map_base() + [(Linear, Epsilon(epsilon=0.01))], canonizers=cans),
        "lrp_alpha2beta1": lambda: LayerMapComposite(layer_map_base() + [(Linear, AlphaBeta(2.0, 1.0))], canonizers=cans),
        "lrp_epsilon_plus_flat": lambda: EpsilonPlusFlat(canonizers=cans),
        "lrp_epsilon_gamma_box": lambda: EpsilonGammaBox(low=(0 - mean) / std, high=(1 - mean) / std, canonizers=cans),
    }[method]()
    del base
    expected = _direct_zennit(adapter, images, labels, composite)
    ours = build_explainer(method, adapter)(images, ClassTarget(labels))
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5 * scale)


def test_canonized_model_computes_the_same_function(adapters) -> None:
    """The canonizers (BatchNorm merge, Sum / pool modules) change no output, and are undone."""
    for adapter in adapters.values():
        images = _images()
        with torch.no_grad():
            before = adapter(images)
        composite = make_composite("epsilon_plus_flat", adapter)
        composite.register(adapter.model)
        try:
            names = {n for n, _ in adapter.model.named_modules()}
            with torch.no_grad():
                during = adapter(images)
        finally:
            composite.remove()
        assert any(n.endswith("canonizer_pool") for n in names)
        torch.testing.assert_close(during, before, rtol=1e-4, atol=1e-4 * float(before.abs().max()))  # float32 rounding of the merged weights
        with torch.no_grad():
            torch.testing.assert_close(adapter(images), before, rtol=0, atol=0)
        assert not any(n.endswith("canonizer_pool") for n, _ in adapter.model.named_modules())


def test_relevance_seeds() -> None:
    """Class target: one-hot × logit. Similarity: per-channel terms summing to s (cosine) and
    s + ‖r‖² (euclidean)."""
    g = torch.Generator().manual_seed(2)
    y = torch.randn(4, 5, generator=g, dtype=D)
    labels = torch.tensor([0, 3, 4, 1])
    seed = relevance_seed(ClassTarget(labels), y)
    torch.testing.assert_close(seed, torch.nn.functional.one_hot(labels, 5).to(D) * y)
    r = torch.randn(4, 5, generator=g, dtype=D)
    cos = SimilarityTarget(r, "cosine")
    torch.testing.assert_close(relevance_seed(cos, y).sum(1), cos(y))
    euc = SimilarityTarget(r, "euclidean")
    torch.testing.assert_close(relevance_seed(euc, y).sum(1), euc(y) + (r**2).sum(1))


def test_refuses_models_without_lrp_rules() -> None:
    from shared.explain.registry import MethodNotApplicable

    adapter = build_adapter("vit", {"arch": "vit_small_shapes", "task": "classifier", "arch_kwargs": {"img_size": 32}}, CLASSES)
    with pytest.raises(MethodNotApplicable, match="lrp_epsilon"):
        build_explainer("lrp_epsilon", adapter)
