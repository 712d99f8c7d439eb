"""Speed of Grad-CAM++ against a bare forward pass and pytorch-grad-cam's GradCAMPlusPlus
(model, layer, batches and figures: :mod:`shared.bench_cam`)."""

from __future__ import annotations

from typing import Any

from shared.bench import register_benchmark
from shared.bench_cam import compare_with_pytorch_grad_cam


@register_benchmark("gradcampp_speed")
def bench_gradcampp(quick: bool = False) -> dict[str, Any]:
    """Grad-CAM++ vs forward and pytorch-grad-cam (target: ≤ 1.2× forward)."""
    return compare_with_pytorch_grad_cam("gradcampp", "GradCAMPlusPlus", quick)
