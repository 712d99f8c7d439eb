"""Speed of a CAM method against a bare forward pass and against pytorch-grad-cam.

timm ``resnet18`` with seeded random weights, layer ``layer4``; batch 32 at 64 px and batch 8
at 224 px; 2 threads. For a method: the median time of ours, of a bare forward pass
(``torch.no_grad``), of pytorch-grad-cam's class on the same model, layer and batch, their
ratios, and the mean per-image Pearson correlation between our maps and theirs (theirs are
ReLU'd, resized and min–max normalised; correlation ignores scale and offset).

Papers register the benchmarks (``papers/<id>/bench.py``) and call
:func:`compare_with_pytorch_grad_cam` with their method's name; the method is built through
the registry, so this module imports no paper.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from shared.bench import machine_info, resnet18_adapter, time_call
from shared.explain import ClassTarget, build_explainer

SETTINGS = ((64, 32), (224, 8))  # (image size, batch)


def map_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image correlation; 1 where both maps are constant (e.g. both all-zero after ReLU),
    0 where only one is."""
    a = a.flatten(1).double()
    b = b.flatten(1).double()
    a = a - a.mean(1, keepdim=True)
    b = b - b.mean(1, keepdim=True)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    flat_a, flat_b = na < 1e-12 * (1 + na.max()), nb < 1e-6
    corr = (a * b).sum(1) / (na * nb).clamp_min(1e-30)
    return torch.where(flat_a & flat_b, torch.ones_like(corr), torch.where(flat_a | flat_b, torch.zeros_like(corr), corr))


def compare_with_pytorch_grad_cam(method: str, theirs: str, quick: bool = False, threads: int = 2) -> dict[str, Any]:
    """Time ``method`` (ours) and pytorch-grad-cam's ``theirs`` class side by side."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    saved_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        adapter = resnet18_adapter()
        ours = build_explainer(method, adapter)
        # pytorch-grad-cam runs a full loss.backward(): give it its own copy with trainable parameters
        their_model = copy.deepcopy(adapter.model)
        for p in their_model.parameters():
            p.requires_grad_(True)
        their_cam = getattr(pytorch_grad_cam, theirs)(model=their_model, target_layers=[their_model.layer4])
        repeats = 2 if quick else 5
        figures: dict[str, Any] = {"model": "timm resnet18, random init (seed 0), 10 classes, layer4", "threads": threads, "repeats": repeats}
        for size, batch in SETTINGS:
            gen = torch.Generator().manual_seed(size)
            images = torch.rand(batch, 3, size, size, generator=gen)
            labels = torch.randint(0, 10, (batch,), generator=gen)
            target = ClassTarget(labels)
            # pytorch-grad-cam gets the same normalised input our adapter computes internally
            normalised = (images - adapter._mean) / adapter._std
            their_targets = [ClassifierOutputTarget(int(c)) for c in labels]

            def forward() -> None:
                with torch.no_grad():
                    adapter(images)

            t_forward = time_call(forward, repeats=repeats, warmup=1)
            t_ours = time_call(lambda: ours(images, target), repeats=repeats, warmup=1)
            t_theirs = time_call(lambda: their_cam(input_tensor=normalised, targets=their_targets), repeats=repeats, warmup=1)
            ours_maps = ours(images, target)
            their_maps = torch.from_numpy(their_cam(input_tensor=normalised, targets=their_targets))
            corr = map_correlation(ours_maps.clamp_min(0), their_maps)
            figures[f"{size}px_batch{batch}"] = {
                "forward_s": t_forward,
                "ours_s": t_ours,
                "pytorch_grad_cam_s": t_theirs,
                "ours_over_forward": t_ours / t_forward,
                "pytorch_grad_cam_over_forward": t_theirs / t_forward,
                "pytorch_grad_cam_over_ours": t_theirs / t_ours,
                "map_correlation_mean": float(corr.mean()),
                "map_correlation_min": float(corr.min()),
                "all_zero_maps_ours": int((ours_maps.flatten(1).abs().amax(1) == 0).sum()),
            }
        figures["machine"] = machine_info()
        return figures
    finally:
        torch.set_num_threads(saved_threads)
