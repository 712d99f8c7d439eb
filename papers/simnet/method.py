"""Stylianou, Souvenir, Pless, *Visualizing Deep Similarity Networks*, WACV 2019.

For an embedding that is the global average pool of the last feature map, f = (1/N) Σ_u A(u)
(N = h·w positions), a dot-product similarity splits exactly over the query's positions:

    s = ⟨f_q, f_r⟩ = Σ_u (1/N) ⟨A_q(u), f_r⟩            so  map_q(u) = (1/N) Σ_c A_q,c(u) f_r,c   (Sec. 3)

Cosine similarity divides by ‖f_q‖‖f_r‖. The paper treats dot-product / cosine similarity
only; the Euclidean analogue below is ours (derived in README.md): with
s = −‖f_q − f_r‖² = 2⟨f_q, f_r⟩ − ⟨f_q, f_q⟩ − ‖f_r‖², distributing each term over the
query's positions gives

    map_q(u) = (1/N) ⟨A_q(u), 2 f_r − f_q⟩ − ‖f_r‖² / N

(the last term, the reference's own norm, is the same at every position). In both metrics
Σ_u map_q(u) = s exactly. The map is raw and signed (the paper shows it as a heat map; no ReLU).
"""

from __future__ import annotations

import torch

from shared.explain import Explainer, register_method, upsample
from shared.explain.pair import gap_pair_signals
from shared.explain.targets import Target


def similarity_map(A_q: torch.Tensor, f_q: torch.Tensor, f_r: torch.Tensor, metric: str) -> torch.Tensor:
    """(B, h, w) per-position share of the similarity; sums over positions to s exactly."""
    n = A_q.shape[-2] * A_q.shape[-1]
    if metric == "cosine":
        scale = 1.0 / (n * f_q.norm(dim=1) * f_r.norm(dim=1)).clamp_min(1e-12)
        return torch.einsum("bchw,bc->bhw", A_q, f_r) * scale[:, None, None]
    if metric == "euclidean":  # derived analogue, see the module docstring
        own = (f_r * f_r).sum(dim=1) / n
        return torch.einsum("bchw,bc->bhw", A_q, 2 * f_r - f_q) / n - own[:, None, None]
    raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")


@register_method("simnet", kinds=["cnn"], tasks=["embedding"])
class SimilarityMap(Explainer):
    """Per-position decomposition of a GAP embedding's similarity to a reference (Stylianou et al.)."""


    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        sig = gap_pair_signals(self.adapter, self.layer, images, target, "simnet")
        return upsample(similarity_map(sig.A_q, sig.f_q, sig.f_r, sig.metric), tuple(images.shape[-2:]))
