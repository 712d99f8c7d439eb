"""The explainer contract: ``maps = explainer(images, target)``.

``images`` is a (B, 3, H, W) batch in [0, 1] on the adapter's device; ``target`` a
:class:`~shared.explain.targets.Target`; ``maps`` a (B, H, W) float32 tensor at input
resolution, raw (un-normalised) as the method defines it. Batched end to end.

A CAM-style method subclasses :class:`CAMExplainer` and overrides one small function:
``weights(A, G)`` (channel weights, as Grad-CAM) or ``cam(A, G)`` (the map itself).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from shared.explain.capture import capture
from shared.explain.layers import layer_or_block
from shared.explain.targets import Target
from shared.explain.upsample import upsample
from shared.models.adapter import ModelAdapter


@contextmanager
def frozen(adapter: ModelAdapter) -> Iterator[ModelAdapter]:
    """Eval mode and no parameter gradients for the duration; restores ``requires_grad``.

    Freezing the parameters is what lets a gradient method differentiate the target only down
    to the explained layer: nothing below it is recorded by autograd.
    """
    params = list(adapter.model.parameters())
    saved = [p.requires_grad for p in params]
    # restore each module's own mode: a wrapper left in train() must not switch BatchNorm back
    modes = [(m, m.training) for m in adapter.modules()]
    adapter.eval()
    try:
        for p in params:
            p.requires_grad_(False)
        yield adapter
    finally:
        for p, r in zip(params, saved):
            p.requires_grad_(r)
        for m, mode in modes:
            m.training = mode


@dataclass
class LayerSignals:
    """What one forward (and backward) pass produced at the explained layers."""

    activations: list[torch.Tensor]  # as captured: (B, C, h, w) or ViT tokens (B, P+N, C)
    gradients: list[torch.Tensor] | None  # d score / d activation, same shapes
    scores: torch.Tensor  # (B,) target scores
    output: torch.Tensor  # model output (B, K)


def check_images(images: torch.Tensor, adapter: ModelAdapter) -> None:
    """Raise a clear error if ``images`` is not a finite (B, 3, H, W) float batch on the adapter's device."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be a (B, 3, H, W) batch, got shape {tuple(images.shape)}"
            + ("; add a batch dimension with images[None]" if images.dim() == 3 else "")
        )
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch (0 images); give at least one (B, 3, H, W) image")
    if not images.is_floating_point():
        raise TypeError(f"images must be float in [0, 1], got {images.dtype}; divide uint8 images by 255")
    weights = next(adapter.model.parameters(), None)
    if weights is not None and images.dtype != weights.dtype:
        raise TypeError(
            f"images are {images.dtype} but the model's weights are {weights.dtype}; "
            f"pass images.to({weights.dtype}) (or convert the model)"
        )
    if images.device != adapter.device:
        raise ValueError(f"images are on {images.device} but the model is on {adapter.device}; move them with images.to(adapter.device)")
    if not bool(torch.isfinite(images).all()):
        raise ValueError("images contain NaN or infinite values")
    low, high = float(images.min()), float(images.max())
    # the [0, 1] contract holds where the adapter normalises (an identity normalisation takes
    # input that is already normalised, e.g. a hand-built model in a test)
    identity = adapter.mean == (0.0, 0.0, 0.0) and adapter.std == (1.0, 1.0, 1.0)
    if not identity and (low < -1e-3 or high > 1 + 1e-3):
        raise ValueError(
            f"images must be in [0, 1] (the adapter normalises them itself), got values in [{low:.3g}, {high:.3g}]"
            + ("; divide 0-255 images by 255" if high > 1.5 else "")
        )


def check_target(target: Target | None, adapter: ModelAdapter, n_images: int) -> None:
    """Raise a clear error if ``target`` cannot be explained on ``adapter`` for ``n_images`` images."""
    from shared.explain.targets import ClassTarget, SimilarityTarget

    if target is None:
        return
    if len(target) != n_images:
        raise ValueError(f"{len(target)} targets for {n_images} images; give one target per image")
    if isinstance(target, ClassTarget) and adapter.task != "classifier":
        raise TypeError(
            f"a ClassTarget explains a classifier's logit, but model {adapter.name!r} is a {adapter.task} model; "
            f"explain it with SimilarityTarget(reference_embeddings, {adapter.metric!r})"
        )
    if isinstance(target, SimilarityTarget):
        if adapter.task != "embedding":
            raise TypeError(f"a SimilarityTarget explains an embedding model, but model {adapter.name!r} is a classifier; use ClassTarget(labels)")
        if adapter.metric is not None and target.metric != adapter.metric:
            raise ValueError(
                f"the target measures {target.metric} similarity but model {adapter.name!r} was trained for "
                f"{adapter.metric}; build SimilarityTarget(reference_embeddings, {adapter.metric!r})"
            )


def layer_signals(
    adapter: ModelAdapter,
    images: torch.Tensor,
    target: Target | None,
    layers: Sequence[str],
    gradients: bool = True,
) -> LayerSignals:
    """One forward pass capturing ``layers``; with ``gradients``, d target / d activation there.

    The gradient is taken with ``torch.autograd.grad`` with respect to the captured
    activations only, so no parameter gradient is ever computed or accumulated and the
    backward pass stops at the lowest explained layer. Scores of different images are
    independent (eval mode), so the gradient of their sum is each image's own gradient.
    """
    check_images(images, adapter)
    if gradients and target is None:
        raise ValueError("a gradient method needs a target (ClassTarget or SimilarityTarget)")
    modules = {name: adapter.module(name) for name in layers}
    with frozen(adapter), capture(modules, track_gradients=gradients) as record:
        with torch.set_grad_enabled(gradients):
            output = adapter(images)
            scores = target(output) if target is not None else output.new_zeros(output.shape[0])
            acts = record.tensors()
            for name, a in zip(layers, acts):
                if not bool(torch.isfinite(a).all()):
                    raise FloatingPointError(
                        f"NaN or infinite activations at layer {name!r}; check the model weights and the input images"
                    )
            grads = None
            if gradients:
                grads = list(torch.autograd.grad(scores.sum(), acts, allow_unused=True))
                for i, (name, g) in enumerate(zip(layers, grads)):
                    if g is None:  # the score does not depend on this layer
                        grads[i] = torch.zeros_like(acts[i])
    return LayerSignals(
        activations=[a.detach() for a in acts],
        gradients=[g.detach() for g in grads] if grads is not None else None,
        scores=scores.detach(),
        output=output.detach(),
    )


class Explainer:
    """Base class of every explanation method: ``explainer(images, target) -> (B, H, W)``."""

    #: adapter kinds and model tasks the method is defined for: set by @register_method (the one
    #: source), so a method built directly checks them too
    kinds: tuple[str, ...] = ("cnn", "vit")
    tasks: tuple[str, ...] = ("classifier", "embedding")

    def __init__(self, adapter: ModelAdapter, layer: str | None = None, block: int | None = None) -> None:
        """Explain ``layer`` (a module name), or the output of the ``block``-th block
        (:func:`shared.explain.layers.block_layer`); by default the adapter's target layer."""
        if adapter.kind not in self.kinds:
            raise ValueError(
                f"{type(self).__name__} is defined for {', '.join(self.kinds)} models, not for "
                f"{adapter.kind!r} model {adapter.name!r}"
            )
        if adapter.task not in self.tasks:
            raise ValueError(f"{type(self).__name__} does not apply to {adapter.task} models")
        self.adapter = adapter
        self.layer = layer_or_block(adapter, layer, block) or adapter.target_layer
        adapter.module(self.layer)  # a wrong layer name fails here, listing the nearest names

    def __call__(self, images: torch.Tensor, target: Target | None = None) -> torch.Tensor:
        check_images(images, self.adapter)
        check_target(target, self.adapter, images.shape[0])
        maps = self.explain(images, target)
        expected = (images.shape[0], *images.shape[-2:])
        if tuple(maps.shape) != expected:
            raise AssertionError(f"{type(self).__name__} returned maps of shape {tuple(maps.shape)}, expected {expected}")
        return maps.float()

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        """The method itself: (B, H, W) maps. Override this for non-CAM methods."""
        raise NotImplementedError


class CAMExplainer(Explainer):
    """A class-activation-map method: a map from activations A and gradients G at one layer.

    Override ``weights`` (B, C) — the map is then Σ_k w_k A_k — or ``cam`` (B, h, w).
    """

    #: apply ReLU to the combined map (Grad-CAM's ReLU)
    relu: bool = True
    #: whether the method needs d target / d A (Eigen-CAM does not)
    needs_gradients: bool = True

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        signals = layer_signals(self.adapter, images, target, [self.layer], gradients=self.needs_gradients)
        A = self.adapter.to_grid(signals.activations[0]).float()
        G = self.adapter.to_grid(signals.gradients[0]).float() if signals.gradients is not None else None
        cam = self.cam(A, G)
        if self.relu:
            cam = cam.clamp_min(0)
        return upsample(cam, tuple(images.shape[-2:]))

    def cam(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        """(B, h, w) map; by default the weighted sum of channels Σ_k w_k A_k."""
        w = self.weights(A, G)
        return torch.einsum("bc,bchw->bhw", w, A)

    def weights(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        """(B, C) channel weights."""
        raise NotImplementedError(f"{type(self).__name__} must override weights() or cam()")
