"""DAAM batched (one forward + one backward for the whole batch and all blocks) against one
image at a time (as the authors' code runs), on the zoo's ViT architecture."""

from __future__ import annotations

from typing import Any

import timm
import torch

import shared.models  # noqa: F401  (registers vit_small_shapes into timm)
from papers.daam.method import DAAM
from shared.bench import machine_info, register_benchmark, time_call
from shared.explain import ClassTarget
from shared.models.adapter import ModelAdapter


@register_benchmark("daam_batched")
def bench_daam(quick: bool = False) -> dict[str, Any]:
    """vit_small_shapes (64 px, 8×8 patches, 4 blocks), seeded random weights, 32 images (8 quick)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = timm.create_model("vit_small_shapes", num_classes=8).eval().to(device)
    adapter = ModelAdapter(
        model, kind="vit", task="classifier", target_layer="blocks.3.norm1",
        layers=[f"blocks.{i}" for i in range(4)], num_prefix_tokens=1, name="bench_vit",
    ).eval()
    n = 8 if quick else 32
    images = torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(device)
    labels = torch.arange(n, device=device) % 8
    explainer = DAAM(adapter)
    out: dict[str, torch.Tensor] = {}

    def batched() -> None:
        out["batched"] = explainer(images, ClassTarget(labels))

    def one_by_one() -> None:
        out["loop"] = torch.cat([explainer(images[i : i + 1], ClassTarget(labels[i : i + 1])) for i in range(n)])

    repeats = 1 if quick else 3
    t_batched = time_call(batched, repeats=repeats, device=device)
    t_loop = time_call(one_by_one, repeats=repeats, device=device)
    return {
        "model": "vit_small_shapes, random init seed 0",
        "images": n,
        "batched_s": t_batched,
        "per_image_loop_s": t_loop,
        "speedup": t_loop / t_batched,
        "max_abs_map_diff": float((out["batched"] - out["loop"]).abs().max()),
        "machine": machine_info(device),
    }
