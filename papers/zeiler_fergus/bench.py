"""Speed of occlusion sensitivity: ours against a bare forward pass of the same number of
occluded images (the physical limit: occlusion is nothing but forwards) and captum's
``Occlusion`` with a generous ``perturbations_per_eval``, same model, window, stride, grey fill
and score (the class probability), and the same maps.

timm ``resnet18``, random init (seed 0), 10 classes; batch 2 at 224 px with a 56 px window and
stride 28 (7 × 7 = 49 windows, 100 forwards: the default 28 / 14 px has 225 windows, 452
forwards, minutes on 2 threads); quick: 64 px, window and stride 16 (16 windows, no warm-up). 2 threads; the three calls take turns in each repeat (medians of 3).
"""

from __future__ import annotations

from typing import Any

import torch

from papers.zeiler_fergus.method import Occlusion
from shared.bench import bare_forward, interleaved_times, machine_info, register_benchmark, resnet18_adapter
from shared.explain import ClassTarget


@register_benchmark("occlusion_speed")
def bench_occlusion(quick: bool = False) -> dict[str, Any]:
    """Occlusion (ours) vs a bare forward of the same images vs captum's Occlusion."""
    from captum.attr import Occlusion as CaptumOcclusion

    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        size, window, stride, batch = (64, 16, 16, 2) if quick else (224, 56, 28, 2)
        max_batch = 64
        per_eval = max_batch // batch  # captum evaluates per_eval occlusions × batch images at once
        repeats, warmup = (1, 0) if quick else (3, 1)
        adapter = resnet18_adapter()
        gen = torch.Generator().manual_seed(size)
        images = torch.rand(batch, 3, size, size, generator=gen)
        labels = torch.randint(0, 10, (batch,), generator=gen)
        target = ClassTarget(labels)
        ours = Occlusion(adapter, window=window, stride=stride, max_batch=max_batch)
        windows = ((size - window + stride - 1) // stride + 1) ** 2
        rows = batch * (1 + windows)  # every occluded copy and the clean image
        grey = torch.tensor(adapter.mean).view(1, 3, 1, 1)
        captum = CaptumOcclusion(lambda x: adapter(x).softmax(dim=1))

        def theirs() -> torch.Tensor:
            with torch.no_grad():
                return captum.attribute(
                    images, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
                    baselines=grey, target=labels, perturbations_per_eval=per_eval,
                )

        times = interleaved_times(
            {"forward": lambda: bare_forward(adapter, rows, size, max_batch), "ours": lambda: ours(images, target), "captum": theirs},
            repeats, warmup,
        )
        t_forward, t_ours, t_theirs = times["forward"], times["ours"], times["captum"]
        ours_maps, their_maps = ours(images, target), theirs()[:, 0]
        return {
            "model": "timm resnet18, random init (seed 0), 10 classes; score: class probability",
            "setting": {"size": size, "batch": batch, "window": window, "stride": stride, "windows": windows,
                        "forwarded_images": rows, "max_batch": max_batch, "captum_perturbations_per_eval": per_eval},
            "threads": 2,
            "repeats": repeats,
            "forward_s": t_forward,
            "ours_s": t_ours,
            "captum_s": t_theirs,
            "ours_over_forward": t_ours / t_forward,
            "captum_over_ours": t_theirs / t_ours,
            "max_abs_diff": float((ours_maps - their_maps).abs().max()),
            "map_scale": float(their_maps.abs().max()),
            "machine": machine_info(),
        }
    finally:
        torch.set_num_threads(saved)
