"""Speed of Integrated Gradients: ours vs one bare forward + backward of the same B·m images
(the physical limit: IG is m gradients per image) vs captum 0.9's ``IntegratedGradients``.

timm ``resnet18``, seeded random weights, 10 classes, 224 px, batch 2, m = 16 steps (quick:
64 px, m = 4), 2 threads. Ours in one chunk (``max_batch`` = 64 ≥ B·m); captum with
``internal_batch_size`` = B·m (also one pass), the same callable (the adapter on [0, 1] images,
the target row as a forward argument), the same baseline (black) and rule (riemann_trapezoid,
captum's result rescaled by m/(m−1): README). Reports the median times, ``ours_over_forward``
(target ≤ 1.2), ``reference_over_ours`` (target ≥ 2 where achievable) and the largest
absolute difference of the attributions relative to their scale.
"""

from __future__ import annotations

from typing import Any

import torch

from shared.bench import machine_info, register_benchmark, resnet18_adapter, time_call
from shared.explain import ClassTarget, build_explainer, frozen


@register_benchmark("integrated_gradients_speed")
def bench_integrated_gradients(quick: bool = False, threads: int = 2) -> dict[str, Any]:
    """Integrated Gradients vs a bare forward + backward of B·m images and captum's IG."""
    from captum.attr import IntegratedGradients as CaptumIG

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        size, batch, steps = (64, 2, 4) if quick else (224, 2, 16)
        repeats = 2 if quick else 3
        adapter = resnet18_adapter()
        gen = torch.Generator().manual_seed(0)
        images = torch.rand(batch, 3, size, size, generator=gen)
        target = ClassTarget(torch.randint(0, 10, (batch,), generator=gen))
        index = torch.arange(batch)
        ours = build_explainer("integrated_gradients", adapter, steps=steps)
        captum_ig = CaptumIG(lambda x, i: target(adapter(x), index=i))
        rows = images.repeat(steps, 1, 1, 1)  # B·m images, point-major like ours
        row_index = index.repeat(steps)

        def forward_backward() -> torch.Tensor:
            with frozen(adapter), torch.enable_grad():
                x = rows.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(target(adapter(x), index=row_index).sum(), x)
            return g

        def theirs() -> torch.Tensor:
            return captum_ig.attribute(
                images, baselines=torch.zeros_like(images), n_steps=steps, method="riemann_trapezoid",
                internal_batch_size=batch * steps, additional_forward_args=(index,),
            )

        t_forward = time_call(forward_backward, repeats=repeats, warmup=1)
        t_ours = time_call(lambda: ours.attributions(images, target), repeats=repeats, warmup=1)
        t_theirs = time_call(theirs, repeats=repeats, warmup=1)
        a = ours.attributions(images, target)
        b = theirs() * steps / (steps - 1)
        return {
            "model": f"timm resnet18, random init (seed 0), 10 classes, {size} px",
            "batch": batch,
            "steps": steps,
            "method": "riemann_trapezoid, black baseline",
            "threads": threads,
            "repeats": repeats,
            "forward_backward_s": t_forward,
            "ours_s": t_ours,
            "captum_s": t_theirs,
            "ours_over_forward": t_ours / t_forward,
            "captum_over_forward": t_theirs / t_forward,
            "reference_over_ours": t_theirs / t_ours,
            "max_abs_diff_over_scale": float((a - b).abs().max() / a.abs().max()),
            "machine": machine_info(),
        }
    finally:
        torch.set_num_threads(saved)
