"""Speed of LRP: ours (``lrp_epsilon_plus_flat``) against a bare forward pass, a plain
forward + backward (the input gradient: what LRP costs without its rules) and zennit's
Gradient attributor called directly with the same composite. Ours *is* a zennit call, so
ours ≈ zennit; the point is the ratio to the forward pass (zennit re-runs each hooked layer's
forward with modified weights in its backward hooks).

timm ``resnet18`` with seeded random weights (seed 0), 10 classes, 224 px, batch 2, CPU, 2 threads.
"""

from __future__ import annotations

from typing import Any

import torch

from papers.lrp.method import canonizers
from shared.bench import machine_info, register_benchmark, resnet18_adapter, time_call
from shared.explain import ClassTarget, build_explainer
from shared.models.adapter import ModelAdapter


def _resnet18(seed: int = 0) -> ModelAdapter:
    adapter = resnet18_adapter(seed)
    for m in adapter.model.modules():  # as shared.models.build_model: hooks must see unmodified tensors
        if isinstance(m, torch.nn.ReLU):
            m.inplace = False
    return adapter


@register_benchmark("lrp_speed")
def bench_lrp(quick: bool = False) -> dict[str, Any]:
    """LRP (EpsilonPlusFlat) vs forward, forward + backward and a direct zennit call."""
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat

    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        adapter = _resnet18()
        ours = build_explainer("lrp_epsilon_plus_flat", adapter)
        size, batch = 224, 2
        gen = torch.Generator().manual_seed(size)
        images = torch.rand(batch, 3, size, size, generator=gen)
        labels = torch.randint(0, 10, (batch,), generator=gen)
        target = ClassTarget(labels)
        normalised = (images - adapter._mean) / adapter._std
        repeats, warmup = (1, 0) if quick else (5, 1)  # quick: one call each, no warm-up (< 5 s unloaded)
        last: dict[str, torch.Tensor] = {}  # the maps of the timed calls, compared below (no extra calls)

        def forward() -> None:
            with torch.no_grad():
                adapter(images)

        def forward_backward() -> torch.Tensor:
            x = images.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(target(adapter(x)).sum(), x)
            return g

        def zennit_direct() -> torch.Tensor:
            x = normalised.clone().requires_grad_(True)
            with Gradient(model=adapter.model, composite=EpsilonPlusFlat(canonizers=canonizers())) as attributor:
                _, relevance = attributor(x, lambda y: torch.eye(y.shape[1])[labels] * y.detach())
            last["zennit"] = relevance.sum(1)
            return last["zennit"]

        def ours_call() -> torch.Tensor:
            last["ours"] = ours(images, target)
            return last["ours"]

        t_forward = time_call(forward, repeats=repeats, warmup=warmup)
        t_fb = time_call(forward_backward, repeats=repeats, warmup=warmup)
        t_ours = time_call(ours_call, repeats=repeats, warmup=warmup)
        t_zennit = time_call(zennit_direct, repeats=repeats, warmup=warmup)
        diff = (last["ours"] - last["zennit"]).abs().max()
        return {
            "model": "timm resnet18, random init (seed 0), 10 classes; lrp_epsilon_plus_flat",
            "setting": f"{size}px_batch{batch}",
            "threads": 2,
            "repeats": repeats,
            "forward_s": t_forward,
            "forward_backward_s": t_fb,
            "ours_s": t_ours,
            "zennit_s": t_zennit,
            "ours_over_forward": t_ours / t_forward,
            "ours_over_forward_backward": t_ours / t_fb,
            "reference_over_ours": t_zennit / t_ours,
            "max_abs_diff_vs_zennit": float(diff),
            "machine": machine_info(),
        }
    finally:
        torch.set_num_threads(saved)
