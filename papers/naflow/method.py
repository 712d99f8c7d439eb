"""Neuron Abandoning Attention Flow (NAFlow) — Liao, Gao, Zhang, TPAMI 2025 (arXiv 2412.01202).

On a plain CNN (``features``: Conv2d / BatchNorm2d / ReLU / MaxPool2d, no skips) with
activations x_0 (input) … x_L (last feature map) and gradients g_k = ∂y/∂x_k of the score y
(a class logit, or the similarity of an embedding to a reference):

    x̂_L = x_L                                                  (start at the last feature map)
    x̂_{k−1} = f_k⁻¹(x̂_k) ⊙ [g_{k−1} ≠ 0],  k = L … 2            (NA-BP: invert, abandon neurons)
    NAFlow_k = Σ_c ReLU(x̂_k ⊙ g_k)                             (back-propagated feature map × importance)

with the inverse functions f⁻¹ of the authors' code (ly9802/NAFlow, ``model/BackPropagationModule.py``):
ReLU → identity; max-pool → unpool with the forward indices; BN → inverse affine with the
running statistics; conv → least-squares solution of J x = x̂ − b. The first layer (k = 1) is
not inverted, as in the code, so the flow has one map per module output x_1 … x_L.

The authors build J with one autograd call per output neuron and solve with SciPy's LSMR, one
image at a time. Here the convolution and its adjoint (``conv_transpose2d``) are the operator of
a batched, matrix-free CGLS solve in torch (:func:`conv_least_squares`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shared.explain import Explainer, register_method, upsample
from shared.explain.base import layer_signals
from shared.explain.targets import Target
from shared.models.adapter import ModelAdapter

INVERTIBLE = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.Identity, nn.Dropout)


# ---------------------------------------------------------------------------------------------
# The convolution inverse: min_x ‖conv(x) − t‖², matrix-free and batched


def conv_output_padding(conv: nn.Conv2d, in_size: tuple[int, int], out_size: tuple[int, int]) -> tuple[int, int]:
    """``output_padding`` that makes conv_transpose2d return ``in_size`` (strided convs lose rows)."""
    pad = []
    for i in range(2):
        full = (out_size[i] - 1) * conv.stride[i] - 2 * conv.padding[i] + conv.dilation[i] * (conv.kernel_size[i] - 1) + 1
        pad.append(in_size[i] - full)
    return pad[0], pad[1]


def conv_least_squares(
    conv: nn.Conv2d, t: torch.Tensor, in_shape: tuple[int, ...], iterations: int = 100, tol: float = 1e-5
) -> torch.Tensor:
    """x (B, C_in, H, W) minimising ‖W∗x − t‖² per image, by CGLS from x = 0 (bias not included).

    CGLS is conjugate gradients on the normal equations JᵀJ x = Jᵀt with J = the convolution and
    Jᵀ = the transposed convolution; from x = 0 it converges to the minimum-norm least-squares
    solution (what a dense ``lstsq`` returns, also for under-determined layers). Each image has
    its own step sizes and stops once ‖Jᵀr‖ ≤ tol·‖Jᵀt‖, or once ‖Jᵀr‖ has grown 100-fold over
    its best value (in float32 the recurrence turns unstable after it reaches the precision
    floor); the best iterate is returned. At most ``iterations`` steps: on ill-conditioned layers
    the cap is an early-stopping regulariser (see the README). Deterministic torch ops only.
    """
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"NAFlow inverts zero-padded convolutions with numeric padding; got padding={conv.padding!r}, mode={conv.padding_mode!r}")
    kw = dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation, groups=conv.groups)
    out_pad = conv_output_padding(conv, tuple(in_shape[-2:]), tuple(t.shape[-2:]))
    weight = conv.weight.detach().to(t.dtype)
    tiny = torch.finfo(t.dtype).tiny

    def forward(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, None, **kw)

    def adjoint(r: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(r, weight, None, output_padding=out_pad, **kw)

    def sq(v: torch.Tensor) -> torch.Tensor:  # per-image squared norm, (B, 1, 1, 1)
        return v.pow(2).sum(dim=(1, 2, 3), keepdim=True)

    x = t.new_zeros((t.shape[0], *in_shape[1:]))
    best = x.clone()
    r = t.clone()
    s = adjoint(r)
    p = s.clone()
    gamma = sq(s)
    gamma_best = gamma.clone()
    goal = gamma * tol**2
    active = gamma > goal
    for _ in range(iterations):
        if not bool(active.any()):
            break
        q = forward(p)
        delta = sq(q)
        alpha = torch.where(active & (delta > 0), gamma / delta.clamp_min(tiny), torch.zeros_like(gamma))
        x = x + alpha * p
        r = r - alpha * q
        s = adjoint(r)
        gamma_new = sq(s)
        beta = torch.where(gamma > 0, gamma_new / gamma.clamp_min(tiny), torch.zeros_like(gamma))
        p = s + beta * p
        gamma = gamma_new
        improved = active & (gamma < gamma_best)
        best = torch.where(improved, x, best)
        gamma_best = torch.where(improved, gamma, gamma_best)
        active = active & (gamma > goal) & (gamma <= 1e4 * gamma_best)
    return best


# ---------------------------------------------------------------------------------------------
# Inverse functions of the layers (NA-BP modules)


def invert(module: nn.Module, y: torch.Tensor, x_in: torch.Tensor, iterations: int, tol: float) -> torch.Tensor:
    """f⁻¹(y) for one layer; ``x_in`` is the layer's forward input (shape, pooling indices)."""
    if isinstance(module, (nn.ReLU, nn.Identity, nn.Dropout)):
        return y  # ReLU → identity: the negative half is recovered as "abandoned" by the gradient mask
    if isinstance(module, nn.MaxPool2d):
        if module.dilation not in (1, (1, 1)):
            raise ValueError("NAFlow cannot unpool a dilated max pool")
        _, idx = F.max_pool2d(
            x_in, module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode, return_indices=True
        )
        # unpool = scatter each pooled value back to its argmax; F.max_unpool2d does the same but is
        # flagged non-deterministic. With overlapping windows a neuron may be the max of two windows:
        # it then receives one of the two values, as with max_unpool2d.
        flat = torch.zeros_like(x_in).flatten(2).scatter(2, idx.flatten(2), y.flatten(2))
        return flat.view_as(x_in)
    if isinstance(module, nn.BatchNorm2d):
        if module.running_mean is None:
            raise ValueError("NAFlow inverts BatchNorm with running statistics; this BatchNorm2d tracks none")
        gamma = module.weight if module.affine else torch.ones_like(module.running_var)
        beta = module.bias if module.affine else torch.zeros_like(module.running_mean)
        shape = (1, -1, 1, 1)
        sigma = (module.running_var + module.eps).sqrt()
        scale = torch.where(gamma != 0, sigma / torch.where(gamma != 0, gamma, 1.0), 0.0)  # γ = 0: no information
        return (y - beta.view(shape)) * scale.view(shape) + module.running_mean.view(shape)
    if isinstance(module, nn.Conv2d):
        bias = module.bias.view(1, -1, 1, 1) if module.bias is not None else 0.0
        return conv_least_squares(module, y - bias, tuple(x_in.shape), iterations, tol)
    raise TypeError(
        f"NAFlow has no inverse for {type(module).__name__}; it supports plain CNNs of "
        f"{', '.join(t.__name__ for t in INVERTIBLE)}"
    )


def plain_features(adapter: ModelAdapter) -> tuple[str, nn.Sequential]:
    """(name, module) of the plain ``features`` Sequential NAFlow walks, checking every layer."""
    if adapter.kind != "cnn":
        raise ValueError(f"NAFlow is defined for plain CNNs, not for {adapter.kind} model {adapter.name!r}")
    found = [(n, m) for n, m in adapter.model.named_modules() if n.split(".")[-1] == "features" and isinstance(m, nn.Sequential)]
    if not found:
        raise TypeError(
            f"NAFlow needs a plain CNN with a `features` nn.Sequential (conv/BN/ReLU/max-pool, no skip "
            f"connections); model {adapter.name!r} ({type(adapter.model).__name__}) has none — use vgg_small"
        )
    name, features = found[0]
    for i, m in enumerate(features):
        if not isinstance(m, INVERTIBLE):
            raise TypeError(f"NAFlow cannot invert {name}.{i} ({type(m).__name__}); supported: {', '.join(t.__name__ for t in INVERTIBLE)}")
        if isinstance(m, nn.ReLU) and m.inplace:
            raise ValueError(f"{name}.{i} is an in-place ReLU; build the model with inplace=False (shared.models does)")
    return name, features


@dataclass
class NAFlowResult:
    """The flow of one batch: ``maps[k]`` (B, h_k, w_k) at the output of ``layers[k]``, bottom to top."""

    layers: list[str]
    maps: list[torch.Tensor]
    reconstructions: list[torch.Tensor]  # x̂_k, the back-propagated feature maps (BPFM)
    gradients: list[torch.Tensor]  # g_k


def naflow(adapter: ModelAdapter, images: torch.Tensor, target: Target, iterations: int = 100, tol: float = 1e-5) -> NAFlowResult:
    """The whole flow: one forward + one backward for all g_k, then NA-BP from the top down."""
    prefix, features = plain_features(adapter)
    names = [f"{prefix}.{i}" for i in range(len(features))]
    signals = layer_signals(adapter, images, target, names, gradients=True)
    acts, grads = signals.activations, signals.gradients
    assert grads is not None
    x0 = (images - adapter._mean) / adapter._std  # the first layer's input (its pool indices if any)
    inputs = [x0, *acts[:-1]]
    y = acts[-1]  # x̂_L = x_L
    recon = [y]
    maps = [(y * grads[-1]).clamp_min(0).sum(dim=1)]
    with torch.no_grad():
        for k in range(len(features) - 1, 0, -1):  # invert layer k (0-based), giving x̂ at layer k−1's output
            y = invert(features[k], y, inputs[k], iterations, tol)
            y = y * (grads[k - 1] != 0)  # abandon the neurons that do not reach the score
            recon.append(y)
            maps.append((y * grads[k - 1]).clamp_min(0).sum(dim=1))
    return NAFlowResult(layers=names, maps=maps[::-1], reconstructions=recon[::-1], gradients=grads)


# The plain CNNs of the zoo and of the paper (VGG-16); the adapter's block k is conv block k's ReLU.
@register_method("naflow", kinds=["cnn"], archs=["vgg_small", "vgg16", "vgg16.tv_in1k"], blocks=True)
class NAFlow(Explainer):
    """NAFlow map at one layer: conv block ``block`` (its ReLU output, ``naflow_b<k>``; default 1,
    where the flow ends) or any ``layer`` of ``features`` by name. Works for classifiers and
    plain embedding nets. Its per-layer baseline is Grad-CAM at the same block, ``gradcam_b<k>``."""

    def __init__(self, adapter: ModelAdapter, layer: str | None = None, block: int | None = None,
                 iterations: int = 100, tol: float = 1e-5) -> None:
        prefix, features = plain_features(adapter)  # a model NAFlow cannot invert fails here, saying why
        super().__init__(adapter, layer, block if layer is not None or block is not None else 1)
        names = [f"{prefix}.{i}" for i in range(len(features))]
        if self.layer not in names:
            raise ValueError(f"NAFlow maps exist at the layers of {prefix} ({names[0]} … {names[-1]}), not at {self.layer!r}")
        self.index = names.index(self.layer)
        self.iterations, self.tol = iterations, tol

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        if target is None:
            raise ValueError("NAFlow needs a target (ClassTarget or SimilarityTarget)")
        result = shared_flow(self.adapter, images, target, self.iterations, self.tol)
        return upsample(result.maps[self.index], tuple(images.shape[-2:]))


_LAST_FLOW: dict[tuple, NAFlowResult] = {}
"""The last batch's flow: one NA-BP pass gives the maps of every layer, so the layer variants
(naflow, naflow_b1 … naflow_b5) explaining the same batch share it instead of each inverting
the whole network again (at 224 px on VGG-16, one pass is ~200 forward passes' worth of work)."""


def _flow_key(adapter: ModelAdapter, images: torch.Tensor, target: Target, iterations: int, tol: float) -> tuple:
    """What the flow depends on: the network's identity and parameter versions (an in-place
    re-initialisation changes them), the images' and the target's contents, the solver settings."""
    digest = hashlib.sha256(images.detach().float().cpu().contiguous().numpy().tobytes())
    for name, value in sorted(vars(target).items()):
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    versions = tuple(p._version for p in adapter.model.parameters())
    return (id(adapter.model), versions, type(target).__name__, digest.hexdigest(), iterations, tol)


def shared_flow(adapter: ModelAdapter, images: torch.Tensor, target: Target, iterations: int = 100, tol: float = 1e-5) -> NAFlowResult:
    """:func:`naflow`, reusing the previous call's result when it explained the same batch."""
    key = _flow_key(adapter, images, target, iterations, tol)
    if key not in _LAST_FLOW:
        _LAST_FLOW.clear()
        _LAST_FLOW[key] = naflow(adapter, images, target, iterations, tol)
    return _LAST_FLOW[key]
