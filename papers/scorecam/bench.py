"""Speed of Score-CAM: ours vs a bare forward pass of the same B·C images (the physical limit:
Score-CAM is C forward passes per image) vs pytorch-grad-cam's ScoreCAM, on timm resnet18
(random init, seed 0) at layer4 (C = 512 channels), 2 threads.

Maps: ours at pytorch-grad-cam's conventions (``weighting="softmax_logits"``,
``masking="normalised"``) against theirs, per-image Pearson correlation (theirs upsample the
masks with align_corners=True, ours False, so they are not identical: README.md). The timed run
of ours is that one (the registered default, probability weights and [0, 1] masking, makes the
same B·C forwards; only the weighting differs).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from papers.scorecam.method import ScoreCAM
from shared.bench import machine_info, register_benchmark, resnet18_adapter, time_call
from shared.bench_cam import map_correlation
from shared.explain import ClassTarget


@register_benchmark("scorecam_speed")
def bench_scorecam(quick: bool = False, threads: int = 2) -> dict[str, Any]:
    """Score-CAM vs B·C bare forwards vs pytorch-grad-cam's ScoreCAM (resnet18 layer4, 512 channels)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # quick: one image at 64 px (512 forwards of a 64 px image); full: 2 images at 224 px. One
        # timed run each (1024 forwards at 224 px take minutes on 2 threads), maps from that run.
        size, batch = (64, 1) if quick else (224, 2)
        # pytorch-grad-cam's batch (16): at 224 px on CPU a chunk of 16 copies is ~1.5x faster per
        # image than one of 256 (cache), for both sides alike
        max_batch = 16
        adapter = resnet18_adapter()
        gen = torch.Generator().manual_seed(size)
        images = torch.rand(batch, 3, size, size, generator=gen)
        labels = torch.randint(0, 10, (batch,), generator=gen)
        target = ClassTarget(labels)
        ours_pgc = ScoreCAM(adapter, max_batch=max_batch, weighting="softmax_logits", masking="normalised")
        channels = 512
        rows = torch.rand(min(max_batch, batch * channels), 3, size, size, generator=gen)

        def forward() -> None:  # B·C images, max_batch at a time, as ours scores them
            with torch.no_grad():
                for start in range(0, batch * channels, max_batch):
                    adapter(rows[: min(max_batch, batch * channels - start)])

        their_model = copy.deepcopy(adapter.model)
        for p in their_model.parameters():
            p.requires_grad_(True)
        their_cam = pytorch_grad_cam.ScoreCAM(model=their_model, target_layers=[their_model.layer4])
        normalised = (images - adapter._mean) / adapter._std
        their_targets = [ClassifierOutputTarget(int(c)) for c in labels]

        ours_pgc(images[:1, :, :32, :32], ClassTarget(labels[:1]))  # warm-up (allocator, threads)
        t_forward = time_call(forward, repeats=1, warmup=0)
        start = time.perf_counter()
        ours_maps = ours_pgc(images, target)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        their_maps = their_cam(input_tensor=normalised, targets=their_targets)
        t_theirs = time.perf_counter() - start
        corr = map_correlation(ours_maps, torch.from_numpy(their_maps))
        return {
            "model": "timm resnet18, random init (seed 0), 10 classes, layer4 (512 channels)",
            "setting": f"{size}px_batch{batch}",
            "forwards": batch * channels,
            "max_batch": max_batch,
            "pytorch_grad_cam_batch_size": getattr(their_cam, "batch_size", 16),
            "threads": threads,
            "repeats": 1,
            "forward_s": t_forward,
            "ours_s": t_ours,
            "pytorch_grad_cam_s": t_theirs,
            "ours_over_forward": t_ours / t_forward,
            "reference_over_ours": t_theirs / t_ours,
            "map_correlation_mean": float(corr.mean()),
            "map_correlation_min": float(corr.min()),
            "machine": machine_info(),
        }
    finally:
        torch.set_num_threads(saved)
