"""Benchmark: the batched point-to-point decomposition against per-position loops.

Zhu et al.'s code computes D[u, v] with four nested Python loops, one image at a time. Here D
is one einsum for the whole batch. Both references below compute the same tensor in torch:
a loop over every (image, u, v) pair (the authors' structure), and a loop over query positions
(vectorised over v, a fairer loop). Sizes are those of our models: an 8×8 last feature map
(64 px input) with a 64-dimensional embedding.
"""

from __future__ import annotations

from typing import Any

import torch

from papers.dml_explain.method import point_to_point
from shared.bench import machine_info, register_benchmark, time_call


def loop_pairs(A_q: torch.Tensor, A_r: torch.Tensor) -> torch.Tensor:
    """Cosine D by one dot product per (image, u, v), as the authors' loops."""
    e_q, e_r = A_q.flatten(2).transpose(1, 2), A_r.flatten(2).transpose(1, 2)
    b, n, m = e_q.shape[0], e_q.shape[1], e_r.shape[1]
    D = torch.empty(b, n, m, dtype=A_q.dtype, device=A_q.device)
    for i in range(b):
        scale = n * m * e_q[i].mean(0).norm() * e_r[i].mean(0).norm()
        for u in range(n):
            for v in range(m):
                D[i, u, v] = torch.dot(e_q[i, u], e_r[i, v]) / scale
    return D


def loop_positions(A_q: torch.Tensor, A_r: torch.Tensor) -> torch.Tensor:
    """Cosine D by one matrix–vector product per (image, query position u)."""
    e_q, e_r = A_q.flatten(2).transpose(1, 2), A_r.flatten(2).transpose(1, 2)
    b, n, m = e_q.shape[0], e_q.shape[1], e_r.shape[1]
    D = torch.empty(b, n, m, dtype=A_q.dtype, device=A_q.device)
    for i in range(b):
        scale = n * m * e_q[i].mean(0).norm() * e_r[i].mean(0).norm()
        for u in range(n):
            D[i, u] = e_r[i] @ e_q[i, u] / scale
    return D


@register_benchmark("dml_explain_decomposition")
def bench_decomposition(quick: bool = False) -> dict[str, Any]:
    """Median times of the batched D and of both loops on the same activations; speed-ups; max error."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch, channels, side = (4, 64, 8) if quick else (32, 64, 8)
    gen = torch.Generator().manual_seed(0)
    A_q = torch.randn(batch, channels, side, side, generator=gen).to(device)
    A_r = torch.randn(batch, channels, side, side, generator=gen).to(device)
    repeats = 3 if quick else 5
    t_batched = time_call(lambda: point_to_point(A_q, A_r, "cosine"), repeats=repeats, device=device)
    t_positions = time_call(lambda: loop_positions(A_q, A_r), repeats=repeats, device=device)
    t_pairs = time_call(lambda: loop_pairs(A_q, A_r), repeats=1, warmup=0, device=device)
    D = point_to_point(A_q, A_r, "cosine")
    err = max(
        (D - loop_positions(A_q, A_r)).abs().max().item(), (D - loop_pairs(A_q, A_r)).abs().max().item()
    )
    return {
        "what": "point-to-point activation D (B, 64, 64) of Zhu et al., cosine, batched einsum vs loops",
        "batch": batch,
        "channels": channels,
        "grid": [side, side],
        "batched_s": t_batched,
        "loop_over_positions_s": t_positions,
        "loop_over_pairs_s": t_pairs,
        "speedup_vs_positions": t_positions / t_batched,
        "speedup_vs_pairs": t_pairs / t_batched,
        "max_abs_error": err,
        "machine": machine_info(device),
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    import json

    print(json.dumps(bench_decomposition(quick=False), indent=2, default=str))
