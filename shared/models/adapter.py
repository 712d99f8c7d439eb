"""Model adapters: a timm network plus where to look inside it.

An adapter hides the differences between a CNN (activations (B, C, H, W)) and a vision
transformer (tokens (B, P + N, C), P prefix tokens, N = h·w patches), so that an explanation
method sees the same (B, C, h, w) grid whatever the architecture.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LayerNotFoundError(KeyError):
    """A layer name that the model does not have; the message lists the nearest names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def nearest_names(name: str, names: Sequence[str], n: int = 5) -> list[str]:
    """The ``n`` names closest to ``name`` (for "did you mean" messages)."""
    close = difflib.get_close_matches(name, names, n=n, cutoff=0.0)
    return close


class ModelAdapter(nn.Module):
    """A timm model with its normalisation, its layers and its token layout.

    ``adapter(images)`` takes images in [0, 1] and returns logits (classifier) or
    embeddings (metric-learning model).
    """

    def __init__(
        self,
        model: nn.Module,
        kind: str,
        task: str,
        target_layer: str,
        layers: Sequence[str] = (),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        metric: str | None = None,
        num_prefix_tokens: int = 0,
        name: str = "model",
        classes: Sequence[str] = (),
        arch: str | None = None,
    ) -> None:
        super().__init__()
        if kind not in ("cnn", "vit"):
            raise ValueError(f"adapter kind must be 'cnn' or 'vit', got {kind!r}")
        if task not in ("classifier", "embedding"):
            raise ValueError(f"adapter task must be 'classifier' or 'embedding', got {task!r}")
        if task == "embedding" and metric not in ("cosine", "euclidean"):
            raise ValueError(f"an embedding model needs metric 'cosine' or 'euclidean', got {metric!r}")
        self.model = model
        self.kind = kind
        self.task = task
        self.metric = metric
        self.target_layer = target_layer
        self.layers = list(layers)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.name = name
        self.classes = list(classes)
        self.arch = arch  # the architecture name (config `arch`), for methods restricted to some (NAFlow)
        self.register_buffer("_mean", torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        for layer in [target_layer, *self.layers]:
            self.module(layer)  # fail early on a wrong layer name

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise ``images`` (B, 3, H, W) in [0, 1] and run the model."""
        return self.model((images - self._mean) / self._std)

    def module(self, name: str) -> nn.Module:
        """The submodule called ``name`` (as in ``model.named_modules()``)."""
        modules = dict(self.model.named_modules())
        if name not in modules:
            names = [n for n in modules if n]
            hint = ", ".join(repr(n) for n in nearest_names(name, names))
            raise LayerNotFoundError(
                f"model {self.name!r} has no layer {name!r}; nearest layer names: {hint}. "
                f"List them all with: dict(adapter.model.named_modules()).keys()"
            )
        return modules[name]

    def to_grid(self, t: torch.Tensor) -> torch.Tensor:
        """Turn a captured activation (or its gradient) into a (B, C, h, w) grid.

        CNN feature maps pass through. ViT tokens (B, P + N, C) lose their P prefix tokens
        (class / distillation / register tokens) and the N = h·w patch tokens are laid out
        row-major on the patch grid, as timm's patch embedding orders them.
        """
        if t.dim() == 4:
            return t
        if t.dim() != 3:
            raise ValueError(f"cannot lay out an activation of shape {tuple(t.shape)} as a grid")
        patches = t[:, self.num_prefix_tokens :, :]
        n = patches.shape[1]
        h, w = self.grid_size(n)
        return patches.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)

    def grid_size(self, n_patches: int) -> tuple[int, int]:
        """The (h, w) patch grid of ``n_patches`` tokens."""
        grid = getattr(getattr(self.model, "patch_embed", None), "grid_size", None)
        if grid is not None and grid[0] * grid[1] == n_patches:
            return int(grid[0]), int(grid[1])
        side = int(round(n_patches**0.5))
        if side * side != n_patches:
            raise ValueError(
                f"{n_patches} patch tokens do not form a square grid and the model has no "
                f"patch_embed.grid_size; check num_prefix_tokens={self.num_prefix_tokens}"
            )
        return side, side

    def explain_mode(self) -> "ModelAdapter":
        """Eval mode and frozen parameters: explanations never accumulate parameter gradients."""
        self.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        return self
