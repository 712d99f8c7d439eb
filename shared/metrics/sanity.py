"""Sanity check: cascading model-parameter randomisation (Adebayo, Gilmer, Muelly, Goodfellow,
Hardt & Kim, Sanity Checks for Saliency Maps, NeurIPS 2018, Sec. 3.1)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._checks import check_maps
from .agreement import spearman
from .ssim import ssim


@dataclass(frozen=True)
class RandomisationStep:
    """Similarity between the original maps and the maps after randomising ``layers`` (cumulative)."""

    layer: str
    layers: tuple[str, ...]
    spearman: Tensor  # (B,) rank correlation of the raw maps
    spearman_abs: Tensor  # (B,) rank correlation of |maps|
    ssim: Tensor  # (B,) SSIM of the min-max normalised maps
    maps: Tensor | None = None


def _resolve(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        close = [n for n in names if name.split(".")[-1] in n][:8] or names[:8]
        raise ValueError(f"module {name!r} not found in the model; some names: {close}") from None


def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-initialise every parameter of ``module`` in place, deterministically from ``seed``.

    Each submodule with ``reset_parameters`` uses it (PyTorch's default initialisation:
    Kaiming-uniform for convolutions and linear layers; weight 1, bias 0 and fresh running
    statistics for normalisation layers); parameters owned directly by a module without it
    (e.g. ViT position embeddings) are drawn from a truncated normal, std 0.02. Adebayo et al.
    draw from a truncated normal for all weights; either way the learned weights are gone.
    """
    devices = [p.device for p in module.parameters() if p.device.type == "cuda"]
    with torch.random.fork_rng(devices=sorted({d.index or 0 for d in devices})):
        torch.manual_seed(seed)
        for sub in module.modules():
            if hasattr(sub, "reset_parameters") and callable(sub.reset_parameters):
                sub.reset_parameters()
            elif any(True for _ in sub.parameters(recurse=False)):
                with torch.no_grad():
                    for p in sub.parameters(recurse=False):
                        nn.init.trunc_normal_(p, std=0.02)


def cascading_randomisation(
    model: nn.Module,
    layers: Sequence[str],
    explain: Callable[[nn.Module], Tensor],
    seed: int = 0,
    keep_maps: bool = False,
) -> tuple[Tensor, list[RandomisationStep]]:
    """Cascading randomisation from the top: re-initialise ``layers`` (ordered from the output
    towards the input) one more at a time and compare each step's maps with the original ones.

    Works on a deep copy: the caller's model is never modified. ``explain(model) -> (B, H, W)``
    must explain the same inputs and targets each time (fix the targets beforehand; Adebayo et
    al. explain the originally predicted class). Step i re-initialises ``layers[i]`` with seed
    ``seed + i``. Per step and image: Spearman rank correlation of the raw maps and of their
    absolute values, and SSIM of the min-max normalised maps (Adebayo et al., Sec. 3.1).
    Returns the original maps and one :class:`RandomisationStep` per layer.
    """
    if not layers:
        raise ValueError("layers must name at least one module (ordered from the output to the input)")
    working = copy.deepcopy(model)
    working.eval()
    modules = [_resolve(working, name) for name in layers]
    original = check_maps(explain(copy.deepcopy(working)), "explain(model)").detach()
    steps = []
    for i, (name, module) in enumerate(zip(layers, modules)):
        reinitialise(module, seed + i)
        maps = check_maps(explain(working), f"explain(model) after randomising {name!r}").detach()
        if maps.shape != original.shape:
            raise ValueError(f"explain returned maps of shape {tuple(maps.shape)} after randomising {name!r}, expected {tuple(original.shape)}")
        steps.append(
            RandomisationStep(
                layer=name,
                layers=tuple(layers[: i + 1]),
                spearman=spearman(original, maps),
                spearman_abs=spearman(original.abs(), maps.abs()),
                ssim=ssim(original, maps),
                maps=maps if keep_maps else None,
            )
        )
    return original, steps
