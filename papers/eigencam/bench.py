"""Speed of Eigen-CAM: against a bare forward pass and pytorch-grad-cam's EigenCAM (which
centres the activations, so its maps are compared with our ``eigencam_centered``), and the
batched decomposition itself — full ``torch.linalg.svd`` on (B, hw, C) vs the top eigenpair of
the smaller Gram matrix, which ``method.py`` uses."""

from __future__ import annotations

from typing import Any

import torch

from papers.eigencam.method import first_principal_projection
from shared.bench import machine_info, register_benchmark, time_call
from shared.bench_cam import compare_with_pytorch_grad_cam


@register_benchmark("eigencam_speed")
def bench_eigencam(quick: bool = False) -> dict[str, Any]:
    """Eigen-CAM (centred, as pytorch-grad-cam) vs forward and pytorch-grad-cam's EigenCAM."""
    return compare_with_pytorch_grad_cam("eigencam_centered", "EigenCAM", quick)


@register_benchmark("eigencam_svd_vs_gram")
def bench_svd_vs_gram(quick: bool = False) -> dict[str, Any]:
    """Batched SVD vs Gram-matrix eigh for O v₁ at ResNet-18's layer4 shapes (2 threads)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        figures: dict[str, Any] = {}
        repeats = 3 if quick else 10
        for name, (b, hw, c) in {"64px_batch32": (32, 4, 512), "224px_batch8": (8, 49, 512), "resnet_small_64px_batch32": (32, 64, 256)}.items():
            O = torch.rand(b, hw, c, generator=torch.Generator().manual_seed(0))

            def svd() -> torch.Tensor:
                _, _, vh = torch.linalg.svd(O, full_matrices=False)
                return (O @ vh[:, 0, :, None])[..., 0]

            t_svd = time_call(svd, repeats=repeats, warmup=1)
            t_gram = time_call(lambda: first_principal_projection(O), repeats=repeats, warmup=1)
            diff = (svd().abs() - first_principal_projection(O).abs()).abs().max()
            figures[name] = {"shape": [b, hw, c], "svd_s": t_svd, "gram_eigh_s": t_gram, "svd_over_gram": t_svd / t_gram, "max_abs_diff": float(diff)}
        figures["machine"] = machine_info()
        return figures
    finally:
        torch.set_num_threads(saved)
