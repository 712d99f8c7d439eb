"""Speed of Ablation-CAM: ours (the network below the layer run once, only the part above it on
the B·C ablated copies) vs a bare forward of the B images vs pytorch-grad-cam's AblationCAM
(which replaces the layer by a cached, ablated activation but reruns everything *below* it for
every batch of 32 copies), on timm resnet18 (random init, seed 0) at layer4, 2 threads.

Maps: ours with ``denominator="signed"`` (pytorch-grad-cam's (y − y_k)/y) against theirs,
per-image Pearson correlation (they should agree to rounding: both zero channel k of layer4's
post-ReLU output; the map's resize differs slightly, cv2 vs torch bilinear).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from papers.ablationcam.method import AblationCAM
from shared.bench import machine_info, register_benchmark, resnet18_adapter, time_call
from shared.bench_cam import map_correlation
from shared.explain import ClassTarget


@register_benchmark("ablationcam_speed")
def bench_ablationcam(quick: bool = False, threads: int = 2) -> dict[str, Any]:
    """Ablation-CAM vs one bare forward vs pytorch-grad-cam's AblationCAM (resnet18 layer4)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        size, batch, repeats = (64, 1, 1) if quick else (224, 2, 3)
        adapter = resnet18_adapter()
        gen = torch.Generator().manual_seed(size)
        images = torch.rand(batch, 3, size, size, generator=gen)
        labels = torch.randint(0, 10, (batch,), generator=gen)
        target = ClassTarget(labels)
        ours = AblationCAM(adapter)
        ours_signed = AblationCAM(adapter, denominator="signed")

        def forward() -> None:
            with torch.no_grad():
                adapter(images)

        their_model = copy.deepcopy(adapter.model)
        for p in their_model.parameters():
            p.requires_grad_(True)
        their_cam = pytorch_grad_cam.AblationCAM(model=their_model, target_layers=[their_model.layer4])
        normalised = (images - adapter._mean) / adapter._std
        their_targets = [ClassifierOutputTarget(int(c)) for c in labels]

        t_forward = time_call(forward, repeats=3, warmup=1)
        t_ours = time_call(lambda: ours(images, target), repeats=repeats, warmup=1)
        start = time.perf_counter()
        their_maps = their_cam(input_tensor=normalised, targets=their_targets)
        t_theirs = time.perf_counter() - start  # one run: it reruns the network below layer4 per 32 copies
        corr = map_correlation(ours_signed(images, target), torch.from_numpy(their_maps))
        return {
            "model": "timm resnet18, random init (seed 0), 10 classes, layer4 (512 channels)",
            "setting": f"{size}px_batch{batch}",
            "ablated_copies": batch * 512,
            "path": ours.last_path,
            "threads": threads,
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
