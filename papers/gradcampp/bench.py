"""Speed of Grad-CAM++ against a bare forward pass and pytorch-grad-cam's GradCAMPlusPlus
(same model, layer, batches and figures as papers/gradcam/bench.py)."""

from __future__ import annotations

from typing import Any

from papers.gradcam.bench import compare_with_pytorch_grad_cam
from shared.bench import register_benchmark


@register_benchmark("gradcampp_speed")
def bench_gradcampp(quick: bool = False) -> dict[str, Any]:
    """Grad-CAM++ vs forward and pytorch-grad-cam (target: ≤ 1.2× forward)."""
    return compare_with_pytorch_grad_cam("gradcampp", "GradCAMPlusPlus", quick)
