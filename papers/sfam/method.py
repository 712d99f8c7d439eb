"""Liao et al., *Visual Explanation via Similar Feature Activation for Metric Learning* (SFAM), arXiv 2506.01636.

SFAM weighs each channel of the query's last feature map by a channel-wise contribution
importance score (CIS) computed from the two embeddings, and combines the channels linearly:

    SFAM(u) = ReLU( Σ_c CIS_c A_q,c(u) )

The paper's own CIS equations could not be retrieved (no public code, the text was not
reachable from here), so CIS is derived (README.md, "Derivation of CIS"): CIS_c is channel c's
exact share of the similarity gained over a query whose embedding is zero (the blank-image
baseline that CAM-style weights implicitly use), f = mean_u A(u) being the GAP embedding:

    cosine     s(f_q) − s(0) = Σ_c f_q,c f_r,c / (‖f_q‖ ‖f_r‖)
               CIS_c = f_q,c f_r,c / (‖f_q‖ ‖f_r‖)                                  (CIS-cos)
    Euclidean  s = −‖f_q − f_r‖²,  s(f_q) − s(0) = ‖f_r‖² − ‖f_q − f_r‖²
               CIS_c = f_r,c² − (f_q,c − f_r,c)² = f_q,c (2 f_r,c − f_q,c)           (CIS-euc)

so Σ_c CIS_c = s(f_q) − s(0) exactly in both metrics. A channel scores positively exactly when
the two embeddings agree on it (for Euclidean: the query's value lies closer to the
reference's than zero does, |f_q,c − f_r,c| < |f_r,c|), negatively when it pulls them apart.

Because CIS is ours, the method is registered with ``label="SFAM (derived CIS)"``: tables and
figures show that name (result keys stay ``sfam``). To use the paper's CIS, replace
:func:`contribution_importance_scores` and drop the label (README.md, "Swapping in the paper's CIS").
"""

from __future__ import annotations

import torch

from shared.explain import Explainer, register_method, upsample
from shared.explain.pair import gap_pair_signals
from shared.explain.targets import Target


def contribution_importance_scores(f_q: torch.Tensor, f_r: torch.Tensor, metric: str) -> torch.Tensor:
    """CIS (B, C): each channel's share of s(f_q) − s(0); rows sum to it exactly."""
    if metric == "cosine":  # (CIS-cos)
        norms = (f_q.norm(dim=1) * f_r.norm(dim=1)).clamp_min(1e-12)
        return f_q * f_r / norms[:, None]
    if metric == "euclidean":  # (CIS-euc)
        return f_r.square() - (f_q - f_r).square()
    raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")


@register_method("sfam", kinds=["cnn"], tasks=["embedding"], label="SFAM (derived CIS)")
class SFAM(Explainer):
    """Similar Feature Activation Map: ReLU(Σ_c CIS_c A_q,c) on the query's GAP feature map."""

    relu = True  # as CAM-family maps; only positive evidence for the similarity is shown

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        sig = gap_pair_signals(self.adapter, self.layer, images, target, "sfam")
        cis = contribution_importance_scores(sig.f_q, sig.f_r, sig.metric)
        cam = torch.einsum("bc,bchw->bhw", cis, sig.A_q)  # linear combination with the feature map
        if self.relu:
            cam = cam.clamp_min(0)
        return upsample(cam, tuple(images.shape[-2:]))
