"""Zhu et al., *Visual Explanation for Deep Metric Learning*, IEEE TIP 2021.

Two explanations of a similarity s between a query q and a reference r:

* Grad-CAM on s (Sec. III-A): α_c = mean_u ∂s/∂A_q,c(u), map = ReLU(Σ_c α_c A_q,c).
* Activation decomposition (Sec. III-B). With a GAP embedding f = (1/N) Σ_u e(u), where e(u)
  is the embedding-space feature at position u (here e(u) = A(u): the explained layer is the
  last one before the pooling, so there is no BN or linear layer left to fold in), the
  similarity splits over *pairs* of positions, the point-to-point activation

      cosine:     D[u, v] = ⟨e_q(u), e_r(v)⟩ / (N M ‖f_q‖ ‖f_r‖)
      Euclidean:  D[u, v] = (2⟨e_q(u), e_r(v)⟩ − ⟨e_q(u), f_q⟩ − ⟨e_r(v), f_r⟩) / (N M)   (ours, README)

  (N, M positions of query and reference) with Σ_{u,v} D[u, v] = s exactly. The overall
  activation of the query is Σ_v D[u, v], of the reference Σ_u D[u, v]; the point-specific
  activation of a query point u* is D[u*, ·] on the reference.

The authors' code rectifies the decomposition before summing (D ← max(D / max D, 0), in every
demo of Jeff-Zilence/Explain_Metric_Learning); ``dml_overall`` follows it. Without the
rectification Σ_v D[u, v] is exactly Stylianou et al.'s map (papers/simnet), which the tests
check. The authors loop over all (u, v) in Python, batch 1; here D is one batched einsum.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.explain import CAMExplainer, Explainer, register_method, upsample
from shared.explain.pair import PairTarget, gap_pair_signals, require_similarity_target
from shared.explain.targets import Target
from shared.models.adapter import ModelAdapter


@register_method("gradcam_similarity", kinds=["cnn"], tasks=["embedding"])
class GradCAMSimilarity(CAMExplainer):
    """Grad-CAM of the similarity s (Zhu et al. Sec. III-A): ReLU(Σ_c mean_u(∂s/∂A_c) A_c)."""

    relu = True

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        require_similarity_target(target, "gradcam_similarity")
        return super().explain(images, target)

    def weights(self, A: torch.Tensor, G: torch.Tensor | None) -> torch.Tensor:
        assert G is not None
        return G.mean(dim=(2, 3))


def point_to_point(A_q: torch.Tensor, A_r: torch.Tensor, metric: str) -> torch.Tensor:
    """D (B, N, M): the point-to-point activation between query and reference positions.

    ``A_q`` (B, C, h, w), ``A_r`` (B, C, h', w'); row-major positions. Σ_{u,v} D = s exactly.
    """
    e_q = A_q.flatten(2).transpose(1, 2)  # (B, N, C)
    e_r = A_r.flatten(2).transpose(1, 2)  # (B, M, C)
    n, m = e_q.shape[1], e_r.shape[1]
    f_q, f_r = e_q.mean(dim=1), e_r.mean(dim=1)
    cross = torch.einsum("bnc,bmc->bnm", e_q, e_r)
    if metric == "cosine":
        norms = (f_q.norm(dim=1) * f_r.norm(dim=1)).clamp_min(1e-12)
        return cross / (n * m * norms[:, None, None])
    if metric == "euclidean":
        own_q = torch.einsum("bnc,bc->bn", e_q, f_q)  # position u's share of ‖f_q‖² (times N)
        own_r = torch.einsum("bmc,bc->bm", e_r, f_r)
        return (2 * cross - own_q[:, :, None] - own_r[:, None, :]) / (n * m)
    raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")


def rectify(D: torch.Tensor) -> torch.Tensor:
    """The authors' rectification, per pair: max(D / max D, 0) (all zero if no pair is positive)."""
    top = D.flatten(1).max(dim=1).values.clamp_min(1e-30)
    return (D / top[:, None, None]).clamp_min(0)


@register_method("dml_overall", kinds=["cnn"], tasks=["embedding"])
class OverallActivation(Explainer):
    """Overall activation of the query, Σ_v D[u, v] (rectified D, as in the authors' code)."""


    def __init__(self, adapter: ModelAdapter, layer: str | None = None, rectified: bool = True) -> None:
        super().__init__(adapter, layer)
        self.rectified = rectified

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        sig = gap_pair_signals(self.adapter, self.layer, images, target, "dml_overall", need_reference_map=True)
        assert sig.A_r is not None
        D = point_to_point(sig.A_q, sig.A_r, sig.metric)
        if self.rectified:
            D = rectify(D)
        h, w = sig.A_q.shape[-2:]
        return upsample(D.sum(dim=2).reshape(-1, h, w), tuple(images.shape[-2:]))


def point_specific_maps(
    adapter: ModelAdapter,
    query_images: torch.Tensor,
    target: PairTarget,
    points: torch.Tensor,
    layer: str | None = None,
    rectified: bool = True,
) -> torch.Tensor:
    """Point-specific activation on the reference, (B, H, W): D[u*, ·] for a query point u*.

    ``points`` (B, 2) are (y, x) pixel coordinates in the query image (pixel centres at
    integer + 0.5, as ``align_corners=False``). Between feature cells D is interpolated
    bilinearly, and beyond the outer cell centres the edge value is kept (the authors'
    edge padding). ``rectified`` applies the authors' max(D / max D, 0) first.
    """
    layer = layer or adapter.target_layer
    if not isinstance(target, PairTarget):
        raise TypeError("point_specific_maps needs a PairTarget (PairTarget.from_images(adapter, reference_images))")
    points = torch.as_tensor(points, dtype=torch.float32, device=query_images.device)
    if points.shape != (query_images.shape[0], 2):
        raise ValueError(f"points must be (B, 2) = (y, x) per query image, got {tuple(points.shape)}")
    sig = gap_pair_signals(adapter, layer, query_images, target, "point_specific_maps", need_reference_map=True)
    assert sig.A_r is not None
    D = point_to_point(sig.A_q, sig.A_r, sig.metric)
    if rectified:
        D = rectify(D)
    b, (h, w), (h2, w2) = D.shape[0], sig.A_q.shape[-2:], sig.A_r.shape[-2:]
    H, W = query_images.shape[-2:]
    # D as a (B, M, h, w) image over query positions; sample it at the query point
    grid = torch.stack([2 * (points[:, 1] + 0.5) / W - 1, 2 * (points[:, 0] + 0.5) / H - 1], dim=1)
    at_point = F.grid_sample(
        D.transpose(1, 2).reshape(b, h2 * w2, h, w), grid.view(b, 1, 1, 2).to(D.dtype),
        mode="bilinear", padding_mode="border", align_corners=False,
    )  # (B, M, 1, 1)
    ref_size = tuple(target.reference_images.shape[-2:])
    return upsample(at_point.reshape(b, h2, w2), ref_size)
