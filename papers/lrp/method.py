"""Layer-wise relevance propagation (Bach et al., PLoS ONE 2015), with zennit 0.5.1's rules.

LRP redistributes the explained score f(x) backwards, layer by layer, so that every layer's
relevances sum to the layer above's (conservation, Bach et al. Eq. 2):

    f(x) = … = Σ_j R_j^(l+1) = Σ_i R_i^(l) = … = Σ_p R_p^(1).

The rules (z_ij = a_i w_ij, z_j = Σ_i z_ij + b_j; zennit/rules.py):

- ε (Bach et al. Eq. 58; ``Epsilon``):  R_i = Σ_j z_ij / (z_j + ε sign(z_j)) R_j
- αβ (Eq. 60; ``AlphaBeta``):          R_i = Σ_j (α z_ij⁺ / z_j⁺ − β z_ij⁻ / z_j⁻) R_j, α − β = 1
- z⁺ (``ZPlus`` = αβ with α=1, β=0):  R_i = Σ_j z_ij⁺ / z_j⁺ R_j
- γ (``Gamma``, Montavon et al. 2019): w → w + γ w⁺ in the positive part (and its mirror)
- flat (``Flat``, first layer):        R_i = Σ_j 1 / Σ_i' 1 · R_j   (all weights 1, inputs 1)
- z^B (``ZBox``, first layer):         R_i = Σ_j (x_i w_ij − l_i w_ij⁺ − h_i w_ij⁻) / z_j^B R_j

The four registered methods are zennit composites (which rule where):

- ``lrp_epsilon``           ε in every convolution and dense layer (Bach et al.'s ε-LRP)
- ``lrp_alpha2beta1``       αβ with α = 2, β = 1 in every convolution and dense layer (Bach et al.'s αβ-LRP)
- ``lrp_epsilon_plus_flat`` ``zennit.composites.EpsilonPlusFlat``: flat at the first layer, z⁺ in
  the other convolutions, ε in dense layers (Kohlbrenner et al. 2020's "composite" best practice)
- ``lrp_epsilon_gamma_box`` ``zennit.composites.EpsilonGammaBox``: z^B at the first convolution,
  γ = 0.25 in the others, ε in dense layers (Montavon et al. 2019, Sec. 10.2)

All four share zennit's base map: activations pass the relevance through (``Pass``), sums and
average pools redistribute in proportion to their inputs (``Norm``), BatchNorm is merged into
the convolution before it (canonizer), max pools send it to the maximum (plain gradient).

**Output relevance.** zennit's ``Gradient`` attributor takes the output relevance as the
vector its rules divide by z_j at the top layer. We seed it with R^(L) = y ⊙ ∂s/∂y: for a
:class:`ClassTarget` that is the one-hot of the class times its logit, so R^(L) = f_c(x) as
Bach et al. define it (Sec. 2: "the relevance of the output is the prediction f(x)") and the
top dense layer's relevances are the contributions z_ic = a_i w_ic (for ε → 0), whatever the
logit's sign. A bare one-hot seed would give z_ic / f_c instead: the map divided by the logit,
which flips every map whose logit is negative. For embedding models (:class:`SimilarityTarget`)
the seed splits the similarity s over the embedding channels (README.md, "Embedding models"):
cosine R_k = f_k r_k / (‖f‖‖r‖) (Σ_k R_k = s), euclidean R_k = f_k (2 r_k − f_k)
(Σ_k R_k = s + ‖r‖², the constant −‖r‖² not depending on the image).

**Input.** The adapter normalises inside its forward, x' = (x − μ)/σ; relevance is a quantity of
the network's input x', so we call zennit on the bare model with x' (autograd through the
normalisation would multiply the relevance by 1/σ per channel). The first layer therefore sees
x', and z^B's box is the normalised image of [0, 1]: l = (0 − μ)/σ, h = (1 − μ)/σ per channel.
The map is Σ over colour channels of the input relevance, signed.

**Where LRP stops.** zennit has rules for linear layers, pools, element-wise activations and
(via canonizers) BatchNorm and residual sums; it has none for attention, LayerNorm or GELU, so
the methods are registered for CNNs only (README.md, "Where LRP stops").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import AttributeCanonizer, Canonizer, SequentialMergeBatchNorm
from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat, LayerMapComposite, layer_map_base
from zennit.core import Composite
from zennit.layer import Sum
from zennit.rules import AlphaBeta, Epsilon
from zennit.types import Convolution, Linear

from shared.explain import Explainer, register_method
from shared.explain.base import frozen
from shared.explain.gradients import reduce_channels
from shared.explain.targets import SimilarityTarget, Target
from shared.models.adapter import ModelAdapter

#: module types zennit has no LRP rule for: LRP is not defined on a model that contains them
UNSUPPORTED: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.MultiheadAttention, nn.GELU, nn.SiLU)


# ---------------------------------------------------------------------------------------------
# Canonizers: rewrite the forward of our timm models so every operation LRP treats is a module
# ---------------------------------------------------------------------------------------------


def _timm_block_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's BasicBlock / Bottleneck forward (timm/models/resnet.py) with the residual
    ``x += shortcut`` as a ``zennit.layer.Sum`` module, so that the sum gets the Norm rule
    (R split in proportion to the two summands) instead of the gradient (split in half)."""
    shortcut = x
    x = self.conv1(x)
    x = self.bn1(x)
    if hasattr(self, "conv3"):  # Bottleneck
        x = self.act1(x)
        x = self.conv2(x)
        x = self.bn2(x)
        x = self.drop_block(x)
        x = self.act2(x)
        x = self.aa(x)
        x = self.conv3(x)
        x = self.bn3(x)
        last_act = self.act3
    else:  # BasicBlock
        x = self.drop_block(x)
        x = self.act1(x)
        x = self.aa(x)
        x = self.conv2(x)
        x = self.bn2(x)
        last_act = self.act2
    if self.se is not None:
        x = self.se(x)
    if self.drop_path is not None:
        x = self.drop_path(x)
    if self.downsample is not None:
        shortcut = self.downsample(shortcut)
    x = self.canonizer_sum(torch.stack([shortcut, x], dim=-1))
    return last_act(x)


def _mean_pool_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm's ``FastAdaptiveAvgPool`` (``x.mean((2, 3))``) through an ``nn.AdaptiveAvgPool2d``
    module, which zennit's composites give the Norm rule: R_i = x_i / Σ x · R (the mean's
    gradient would spread R uniformly over the positions, whatever their activation)."""
    pooled = self.canonizer_pool(x)
    return pooled.flatten(1) if self.flatten else pooled


def _embedding_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``EmbeddingNet.forward`` (spatial mean of ``forward_features``) through a pool module."""
    return self.canonizer_pool(self.forward_features(x)).flatten(1)


class TimmCanonizer(AttributeCanonizer):
    """Residual sums of timm's ResNet blocks and the global mean pools of timm's heads and of
    our ``EmbeddingNet`` as modules (zennit.torchvision.ResNetCanonizer does this for
    torchvision's blocks, whose attribute names differ: act1/act2 vs relu)."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @staticmethod
    def _attribute_map(name: str, module: nn.Module) -> dict[str, Any] | None:
        from timm.layers.adaptive_avgmax_pool import FastAdaptiveAvgPool
        from timm.models.resnet import BasicBlock, Bottleneck

        from shared.models.embedding import EmbeddingNet

        if isinstance(module, (BasicBlock, Bottleneck)):
            return {"forward": _timm_block_forward.__get__(module), "canonizer_sum": Sum()}
        if isinstance(module, FastAdaptiveAvgPool):
            if tuple(module.dim) != (2, 3):
                return None  # a channels-last pool: not ours
            return {"forward": _mean_pool_forward.__get__(module), "canonizer_pool": nn.AdaptiveAvgPool2d(1)}
        if isinstance(module, EmbeddingNet):
            return {"forward": _embedding_forward.__get__(module), "canonizer_pool": nn.AdaptiveAvgPool2d(1)}
        return None

    def copy(self) -> "TimmCanonizer":
        return TimmCanonizer()


def canonizers() -> list[Canonizer]:
    """BatchNorm merged into the convolution before it, then timm's sums and pools as modules."""
    return [SequentialMergeBatchNorm(), TimmCanonizer()]


# ---------------------------------------------------------------------------------------------
# Composites and the output relevance
# ---------------------------------------------------------------------------------------------

COMPOSITES: tuple[str, ...] = ("epsilon", "alpha2beta1", "epsilon_plus_flat", "epsilon_gamma_box")


def box_bounds(adapter: ModelAdapter) -> tuple[torch.Tensor, torch.Tensor]:
    """z^B's box (low, high), each (1, 3, 1, 1): the normalised images of pixel values 0 and 1,
    (0 − μ)/σ and (1 − μ)/σ, because the first convolution sees the normalised input."""
    return (0 - adapter._mean) / adapter._std, (1 - adapter._mean) / adapter._std


def make_composite(name: str, adapter: ModelAdapter, epsilon: float = 1e-6, gamma: float = 0.25, stabilizer: float = 1e-6,
                   zero_params: Sequence[str] | None = None) -> Composite:
    """The zennit composite ``name`` (one of :data:`COMPOSITES`) with our canonizers.

    ``zero_params=["bias"]`` drops the biases from every rule's z_j (used by the conservation test).
    """
    kw = {"zero_params": list(zero_params) if zero_params else None}
    cans = canonizers()
    if name == "epsilon":
        layer_map = layer_map_base(stabilizer) + [(Linear, Epsilon(epsilon=epsilon, **kw))]
        return LayerMapComposite(layer_map=layer_map, canonizers=cans)
    if name == "alpha2beta1":
        layer_map = layer_map_base(stabilizer) + [(Linear, AlphaBeta(alpha=2.0, beta=1.0, stabilizer=stabilizer, **kw))]
        return LayerMapComposite(layer_map=layer_map, canonizers=cans)
    if name == "epsilon_plus_flat":
        return EpsilonPlusFlat(epsilon=epsilon, stabilizer=stabilizer, canonizers=cans, **kw)
    if name == "epsilon_gamma_box":
        low, high = box_bounds(adapter)
        return EpsilonGammaBox(low=low, high=high, epsilon=epsilon, gamma=gamma, stabilizer=stabilizer, canonizers=cans, **kw)
    raise ValueError(f"unknown LRP composite {name!r}; one of {', '.join(COMPOSITES)}")


def relevance_seed(target: Target, output: torch.Tensor) -> torch.Tensor:
    """The output relevance R^(L) (B, K), detached (see the module docstring).

    A class target: y ⊙ ∂s/∂y = one-hot(c) · f_c. Cosine similarity: f ⊙ r / (‖f‖‖r‖), the
    cosine split over channels (Σ = s). Euclidean (s = −‖f − r‖²): f ⊙ (2r − f), the terms of
    s = 2 f·r − ‖f‖² − ‖r‖² that depend on f (Σ = s + ‖r‖²).
    """
    y = output.detach()
    if isinstance(target, SimilarityTarget):
        r = target.reference.to(y.device, y.dtype)
        if r.shape != y.shape:
            raise ValueError(f"embeddings {tuple(y.shape)} do not match the reference embeddings {tuple(r.shape)}")
        if target.metric == "cosine":
            norms = (y.norm(dim=1, keepdim=True) * r.norm(dim=1, keepdim=True)).clamp_min(1e-12)
            return y * r / norms
        return y * (2 * r - y)
    with torch.enable_grad():
        leaf = y.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(target(leaf).sum(), leaf)
    return y * g


def check_lrp_model(adapter: ModelAdapter) -> None:
    """A clear error for a model with layers zennit has no LRP rule for."""
    bad = sorted({type(m).__name__ for m in adapter.model.modules() if isinstance(m, UNSUPPORTED) or "Attention" in type(m).__name__})
    if bad:
        raise ValueError(
            f"LRP (zennit 0.5.1) has no rule for {', '.join(bad)} in model {adapter.name!r}; "
            f"LRP is defined here for ReLU CNNs (papers/lrp/README.md, 'Where LRP stops')"
        )


def lrp_attribution(adapter: ModelAdapter, images: torch.Tensor, target: Target,
                    composite: Composite | Callable[[], Composite]) -> tuple[torch.Tensor, torch.Tensor]:
    """(relevance at the normalised input (B, 3, H, W), model output (B, K)): one zennit call."""
    if target is None:
        raise ValueError("LRP needs a target (ClassTarget or SimilarityTarget): it distributes the target's score")
    comp = composite() if callable(composite) and not isinstance(composite, Composite) else composite
    x = ((images - adapter._mean) / adapter._std).detach().requires_grad_(True)
    with frozen(adapter), torch.enable_grad():
        attributor = Gradient(model=adapter.model, composite=comp)
        output, relevance = attributor(x, lambda out: relevance_seed(target, out))
    return relevance.detach(), output.detach()


class LRP(Explainer):
    """LRP with a zennit composite; map = Σ_c R_c(x') (signed)."""

    composite_name: str = "epsilon"

    def __init__(self, adapter: ModelAdapter, epsilon: float = 1e-6, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        """``epsilon``: ε of the ε rule (zennit's default 1e-6 unless the method says otherwise);
        ``gamma``: γ of the γ rule (EpsilonGammaBox only); ``stabilizer``: the denominators'
        guard of every other rule."""
        super().__init__(adapter)
        check_lrp_model(adapter)
        if epsilon < 0 or stabilizer <= 0 or gamma < 0:
            raise ValueError(f"need epsilon >= 0, stabilizer > 0, gamma >= 0; got {epsilon}, {stabilizer}, {gamma}")
        self.epsilon, self.gamma, self.stabilizer = float(epsilon), float(gamma), float(stabilizer)

    def composite(self) -> Composite:
        """A fresh composite (one zennit composite is registered to one model at a time)."""
        return make_composite(self.composite_name, self.adapter, self.epsilon, self.gamma, self.stabilizer)

    def relevance(self, images: torch.Tensor, target: Target) -> torch.Tensor:
        """Input relevance (B, 3, H, W) at the normalised input."""
        return lrp_attribution(self.adapter, images, target, self.composite())[0]

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        return reduce_channels(self.relevance(images, target), "sum")


@register_method("lrp_epsilon", kinds=("cnn",), label="LRP-ε")
class LRPEpsilon(LRP):
    """ε rule in every layer (Bach et al. 2015, Eq. 58), ε = 0.01 by default."""

    composite_name = "epsilon"

    def __init__(self, adapter: ModelAdapter, epsilon: float = 0.01, gamma: float = 0.25, stabilizer: float = 1e-6) -> None:
        super().__init__(adapter, epsilon=epsilon, gamma=gamma, stabilizer=stabilizer)


@register_method("lrp_alpha2beta1", kinds=("cnn",), label="LRP-α2β1")
class LRPAlpha2Beta1(LRP):
    """αβ rule with α = 2, β = 1 in every convolution and dense layer (Bach et al. 2015, Eq. 60)."""

    composite_name = "alpha2beta1"


@register_method("lrp_epsilon_plus_flat", kinds=("cnn",), label="LRP-ε+♭")
class LRPEpsilonPlusFlat(LRP):
    """zennit's EpsilonPlusFlat: flat (first layer), z⁺ (convolutions), ε (dense)."""

    composite_name = "epsilon_plus_flat"


@register_method("lrp_epsilon_gamma_box", kinds=("cnn",), label="LRP-εγz^B")
class LRPEpsilonGammaBox(LRP):
    """zennit's EpsilonGammaBox: z^B (first convolution, box = normalised [0, 1]), γ = 0.25
    (other convolutions), ε (dense)."""

    composite_name = "epsilon_gamma_box"
