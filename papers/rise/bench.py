"""Speed of RISE: ours against a bare forward pass of the N·B masked images (the physical limit:
RISE is N forwards per image and one weighted sum) and against the authors' formulation
(eclique/RISE, explanations.py ``RISEBatch.forward`` with ``RISE.forward``'s ``/ N / p1``),
re-implemented here as the reference since captum has no RISE: all N masks materialised,
``stack = masks * x`` on the normalised images, the softmax model on ``gpu_batch`` rows at a
time, and the saliency of *every* class by one matmul, of which the target's row is kept. Both
use the same masks, so the maps must agree to float32 rounding.

timm ``resnet18``, random init (seed 0), 10 classes, 224 px, N = 256 masks, batch 2 (512
forwards); quick: 64 px, N = 32 (64 forwards), no warm-up. 2 threads; the three calls take turns in each repeat (medians of 3).
"""

from __future__ import annotations

from typing import Any

import torch

from papers.rise.method import RISE
from shared.bench import bare_forward, interleaved_times, machine_info, register_benchmark, resnet18_adapter, time_call
from shared.explain import ClassTarget
from shared.models.adapter import ModelAdapter


def authors_rise(adapter: ModelAdapter, masks: torch.Tensor, images: torch.Tensor, p1: float, gpu_batch: int) -> torch.Tensor:
    """(B, classes, H, W): the authors' RISEBatch.forward on normalised images, divided by N·p1."""
    n, h, w = masks.shape
    b, c = images.shape[:2]
    x = (images - adapter._mean) / adapter._std  # utils.preprocess: Normalize(mean, std)
    with torch.no_grad():
        stack = torch.mul(masks.view(n, 1, h, w), x.view(b * c, h, w))
        stack = stack.view(b * n, c, h, w)  # as their code: row k is mask k // B on image k % B
        p = []
        for i in range(0, n * b, gpu_batch):
            p.append(adapter.model(stack[i : min(i + gpu_batch, n * b)]).softmax(dim=1))  # nn.Sequential(model, Softmax)
        p = torch.cat(p)
        classes = p.size(1)
        p = p.view(n, b, classes)
        sal = torch.matmul(p.permute(1, 2, 0), masks.view(n, h * w))
        return sal.view(b, classes, h, w) / n / p1


@register_benchmark("rise_speed")
def bench_rise(quick: bool = False) -> dict[str, Any]:
    """RISE (ours) vs a bare forward of the N·B masked images vs the authors' RISEBatch formulation."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        size, n_masks, batch = (64, 32, 2) if quick else (224, 256, 2)
        repeats, warmup = (1, 0) if quick else (3, 1)
        max_batch, p1 = 64, 0.5
        adapter = resnet18_adapter()
        gen = torch.Generator().manual_seed(size)
        images = torch.rand(batch, 3, size, size, generator=gen)
        labels = torch.randint(0, 10, (batch,), generator=gen)
        target = ClassTarget(labels)
        ours = RISE(adapter, n_masks=n_masks, s=7, p1=p1, max_batch=max_batch, seed=0)
        t_masks = time_call(lambda: ours.masks(size, size)(torch.arange(n_masks)), repeats=1, warmup=0)
        masks = ours.masks(size, size)(torch.arange(n_masks)).float()  # the same masks for the reference

        times = interleaved_times(
            {
                "forward": lambda: bare_forward(adapter, n_masks * batch, size, max_batch),
                "ours": lambda: ours(images, target),
                "authors": lambda: authors_rise(adapter, masks, images, p1, max_batch),
            },
            repeats, warmup,
        )
        t_forward, t_ours, t_theirs = times["forward"], times["ours"], times["authors"]
        ours_maps = ours(images, target)
        their_maps = authors_rise(adapter, masks, images, p1, max_batch)[torch.arange(batch), labels]
        return {
            "model": "timm resnet18, random init (seed 0), 10 classes; score: class probability",
            "setting": {"size": size, "batch": batch, "n_masks": n_masks, "s": 7, "p1": p1,
                        "forwarded_images": n_masks * batch, "max_batch": max_batch, "authors_gpu_batch": max_batch},
            "threads": 2,
            "repeats": repeats,
            "masks_s": t_masks,
            "forward_s": t_forward,
            "ours_s": t_ours,
            "authors_s": t_theirs,
            "ours_over_forward": t_ours / t_forward,
            "authors_over_ours": t_theirs / t_ours,
            "max_abs_diff": float((ours_maps - their_maps).abs().max()),
            "map_scale": float(their_maps.abs().max()),
            "machine": machine_info(),
        }
    finally:
        torch.set_num_threads(saved)
