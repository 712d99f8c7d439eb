"""NAFlow's matrix-free batched solve against the authors' dense approach, on the same model and images.

The dense approach (as in the authors' code): the Jacobian of every convolution built with one
autograd call per output neuron, a dense least-squares solve, one image at a time. Ours: one
forward + backward for all gradients and batched CGLS with conv / conv-transpose.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from papers.naflow.method import naflow
from shared.bench import machine_info, register_benchmark, time_call
from shared.explain import ClassTarget
from shared.models.adapter import ModelAdapter
from shared.models.archs import VGGSmall


def per_neuron_jacobian(layer: nn.Module, x_in: torch.Tensor) -> torch.Tensor:
    """(m, n) Jacobian of ``layer`` at ``x_in`` (1, ...), one autograd call per output neuron."""
    rows = []
    with torch.enable_grad():
        x = x_in.detach().requires_grad_(True)
        y = layer(x).flatten()
        for i in range(y.numel()):
            (g,) = torch.autograd.grad(y[i], x, retain_graph=True)
            rows.append(g.flatten())
    return torch.stack(rows)


def dense_naflow(adapter: ModelAdapter, image: torch.Tensor, label: int) -> list[torch.Tensor]:
    """NAFlow maps (bottom to top) of ONE image with dense per-neuron Jacobians and ``lstsq``."""
    feats = adapter.model.features
    xs = [((image[None] - adapter._mean) / adapter._std).requires_grad_(True)]
    for m in feats:
        xs.append(m(xs[-1]))
    score = adapter.model.forward_head(xs[-1])[0, label]
    grads = list(torch.autograd.grad(score, xs[1:]))  # g_1 … g_L
    y = xs[-1].detach()
    maps = [(y * grads[-1]).clamp_min(0).sum(1)]
    for k in range(len(feats) - 1, 0, -1):
        m, x_in = feats[k], xs[k].detach()
        with torch.no_grad():
            if isinstance(m, nn.Conv2d):
                jac = per_neuron_jacobian(lambda v: F.conv2d(v, m.weight, None, m.stride, m.padding), x_in)
                b = m.bias.view(1, -1, 1, 1) if m.bias is not None else 0.0
                y = torch.linalg.lstsq(jac, (y - b).flatten()[:, None]).solution.view_as(x_in)
            elif isinstance(m, nn.BatchNorm2d):
                c = lambda v: v.view(1, -1, 1, 1)  # noqa: E731
                y = (y - c(m.bias)) / c(m.weight) * c((m.running_var + m.eps).sqrt()) + c(m.running_mean)
            elif isinstance(m, nn.MaxPool2d):
                _, idx = F.max_pool2d(x_in, m.kernel_size, m.stride, return_indices=True)
                was = torch.are_deterministic_algorithms_enabled()
                torch.use_deterministic_algorithms(False)  # flagged non-deterministic; exact here
                y = F.max_unpool2d(y, idx, m.kernel_size, m.stride, output_size=x_in.shape[-2:])
                torch.use_deterministic_algorithms(was)
            y = y * (grads[k - 1] != 0)
            maps.append((y * grads[k - 1]).clamp_min(0).sum(1))
    return maps[::-1]


@register_benchmark("naflow_matrix_free")
def bench_naflow(quick: bool = False) -> dict[str, Any]:
    """Batched matrix-free NAFlow vs the dense per-neuron-Jacobian approach, same maps.

    A plain CNN (conv 8 – pool – conv 16 – pool – conv 32, BN + ReLU, seeded random weights,
    channels doubling so every inverted conv is over-determined and well-conditioned) at 32 px
    (16 px quick); the dense side is timed on one image and scaled by the number of images.
    """
    torch.manual_seed(0)
    size, n_images = (16, 4) if quick else (32, 8)
    model = VGGSmall(cfg=(8, "M", 16, "M", 32), num_classes=8).eval()
    relus = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]
    adapter = ModelAdapter(model, kind="cnn", task="classifier", target_layer=relus[-1], layers=relus, name="bench_plain").eval()
    images = torch.rand(n_images, 3, size, size, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(n_images) % 8
    out: dict[str, Any] = {}

    def batched() -> None:
        out["fast"] = naflow(adapter, images, ClassTarget(labels), iterations=200, tol=1e-6).maps

    def dense_one() -> None:
        out["dense"] = dense_naflow(adapter, images[0], int(labels[0]))

    t_fast = time_call(batched, repeats=1 if quick else 3)
    t_dense_one = time_call(dense_one, repeats=1, warmup=0)
    rel = max(
        float((f[0] - d[0]).abs().max()) / max(float(d[0].abs().max()), 1e-12)
        for f, d in zip(out["fast"], out["dense"])
    )
    return {
        "model": "VGGSmall(cfg=(8,'M',16,'M',32)), random init seed 0",
        "image_size": size,
        "images": n_images,
        "naflow_batched_s": t_fast,
        "dense_per_image_s": t_dense_one,
        "dense_all_images_s_estimated": t_dense_one * n_images,
        "speedup": t_dense_one * n_images / t_fast,
        "max_rel_map_diff_image0": rel,
        "machine": machine_info("cpu"),
    }
