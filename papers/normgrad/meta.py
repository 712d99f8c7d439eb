"""The meta-saliency step of Rebuffi et al. (CVPR 2020, Sec. 5): one inner SGD step on the
model's parameters with the loss of the explained target, then saliency on the updated model.

Per image, not per batch: image i is explained by θ_i = θ − lr ∇_θ L(x_i, c_i), its own step.
(The authors' TorchRay code explains one image at a time, so their step is per image too.)
Everything is functional (``torch.func``): per-image gradients with ``vmap(grad(...))``, and
the forward pass of each image under its own θ_i with ``vmap(functional_call(...))``. The
adapter's parameters are never written, copied into the model, or given a ``.grad``.

The loss: cross-entropy of the target class for a ``ClassTarget`` (as TorchRay), and the
negated similarity for a ``SimilarityTarget`` (the loss that makes the pair more similar).
The layer gradients afterwards are those of the target score (logit / similarity), as
without the meta step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import warnings

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from shared.explain import ClassTarget, SimilarityTarget, Target, check_images, frozen
from shared.models.adapter import ModelAdapter

#: The learning rate of the authors' class-selectivity experiment (the paper's Table 3): TorchRay
#: ``normgrad`` branch, examples/class_selectivity.py (``lr=0.0025``, lines 75 and 295, and
#: examples/meta_saliency.py line 31). ``meta_saliency()``'s own default, 1e-4
#: (torchray/attribution/meta_saliency.py line 10), barely moves a small model's maps.
DEFAULT_META_LR = 2.5e-3

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_image_target(target: Target, output_dim: int, batch: int, device: torch.device) -> tuple[torch.Tensor, ScoreFn, ScoreFn]:
    """(per-image target data (B, D), score(out (1, K), t (D,)), loss(out, t)) — vmap-friendly."""
    if isinstance(target, ClassTarget):
        labels = target.labels.to(device)
        if labels.numel() != batch:
            raise ValueError(f"{labels.numel()} target classes for {batch} images; give one per image")
        if bool(((labels < 0) | (labels >= output_dim)).any()):
            raise IndexError(f"target classes {labels.tolist()} out of range for a model with {output_dim} classes")
        onehot = F.one_hot(labels, output_dim).float()

        def score(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return (out[0] * t).sum()

        def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return -(out[0].log_softmax(dim=-1) * t).sum()  # cross-entropy of the target class

        return onehot, score, loss
    if isinstance(target, SimilarityTarget):
        ref = target.reference.to(device).float()
        if ref.shape[0] != batch:
            raise ValueError(f"{ref.shape[0]} reference embeddings for {batch} images; give one per image")
        metric = target.metric

        def score(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            f = out[0]
            if metric == "cosine":
                return (f * t).sum() / (f.norm().clamp_min(1e-12) * t.norm().clamp_min(1e-12))
            return -((f - t) ** 2).sum()

        def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return -score(out, t)

        return ref, score, loss
    raise TypeError(f"the meta step supports ClassTarget and SimilarityTarget, got {type(target).__name__}")


def meta_layer_signals(
    adapter: ModelAdapter,
    images: torch.Tensor,
    target: Target,
    layers: Sequence[str],
    lr: float = DEFAULT_META_LR,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Activations and target gradients at ``layers`` after each image's own inner SGD step.

    Returns two lists of (B, C, h, w) grids (``adapter.to_grid`` applied). The gradient with
    respect to a layer is taken by adding a zero tensor δ to the layer's output and
    differentiating with respect to δ: ∂S/∂δ = ∂S/∂A, and only the graph above the lowest
    layer is needed.
    """
    if not lr > 0:
        raise ValueError(f"the meta step's learning rate must be > 0, got {lr}")
    return meta_layer_signals_sweep(adapter, images, target, layers, [lr])[0]


def meta_layer_signals_sweep(
    adapter: ModelAdapter,
    images: torch.Tensor,
    target: Target,
    layers: Sequence[str],
    lrs: Sequence[float],
) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """:func:`meta_layer_signals` at each learning rate of ``lrs``, one (A, G) pair per lr.

    The per-image parameter gradients ∇_θ L(x_i, c_i) do not depend on the learning rate: they
    are computed once and every θ_i(lr) = θ − lr ∇_θ L(x_i, c_i) reuses them. ``lr = 0`` is
    allowed here (θ_i = θ: the signals without the meta step, up to float rounding).
    """
    check_images(images, adapter)
    if target is None:
        raise ValueError("the meta step needs a target (ClassTarget or SimilarityTarget)")
    lrs = [float(lr) for lr in lrs]
    if not lrs or any(not lr >= 0 for lr in lrs):
        raise ValueError(f"the meta step's learning rates must be >= 0 (and at least one), got {lrs}")
    modules = [adapter.module(name) for name in layers]
    batch = images.shape[0]
    with frozen(adapter):
        params = {k: v.detach() for k, v in adapter.named_parameters()}
        buffers = {k: v.detach() for k, v in adapter.named_buffers()}
        # Shapes of the layer outputs (one plain forward, no autograd), for the δ's.
        shapes: list[torch.Size] = []
        probe = [m.register_forward_hook(lambda mod, i, o: shapes.append(o.shape[1:])) for m in modules]
        try:
            with torch.no_grad():
                out_dim = adapter(images[:1]).shape[1]
        finally:
            for h in probe:
                h.remove()
        tdata, score_fn, loss_fn = _per_image_target(target, out_dim, batch, images.device)

        def image_loss(p: dict, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return loss_fn(functional_call(adapter, (p, buffers), (x[None],)), t)

        # ∇_θ L(x_i) per image, once for every lr (Sec. 5: θ_i = θ − lr ∇_θ L(x_i)).
        with warnings.catch_warnings():
            # CPU flash attention has no vmap batching rule yet: correct, only slower.
            warnings.filterwarnings("ignore", message="There is a performance drop")
            per_image_grads = vmap(grad(image_loss), in_dims=(None, 0, 0))(params, images, tdata)

        def image_score(p: dict, x: torch.Tensor, t: torch.Tensor, deltas: tuple) -> tuple[torch.Tensor, tuple]:
            seen: list[torch.Tensor] = []

            def make_hook(j: int):
                def hook(mod, inputs, output):
                    seen.append(output)
                    return output + deltas[j]

                return hook

            handles = [m.register_forward_hook(make_hook(j)) for j, m in enumerate(modules)]
            try:
                out = functional_call(adapter, (p, buffers), (x[None],))
            finally:
                for h in handles:
                    h.remove()
            return score_fn(out, t), tuple(seen)

        deltas = tuple(images.new_zeros((batch, 1, *s)) for s in shapes)
        results = []
        for lr in lrs:
            stepped = {k: params[k][None] - lr * per_image_grads[k] for k in params}
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="There is a performance drop")
                grads, acts = vmap(grad(image_score, argnums=3, has_aux=True), in_dims=(0, 0, 0, 0))(stepped, images, tdata, deltas)
            del stepped
            A = [adapter.to_grid(a[:, 0].detach()).float() for a in acts]
            G = [adapter.to_grid(g[:, 0].detach()).float() for g in grads]
            results.append((A, G))
    return results
