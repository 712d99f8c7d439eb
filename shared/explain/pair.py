"""Pairs for metric-learning explanations: a similarity target that also carries the reference images.

Methods that decompose a similarity (SFAM, SimNet-style maps, Zhu et al.'s point-to-point
activation) need more than the reference *embedding* that :class:`SimilarityTarget` holds:
the point-to-point decomposition needs the reference's feature map too. :class:`PairTarget`
is a :class:`SimilarityTarget` (so every gradient method and every metric accepts it
unchanged) that also keeps the reference images.

:func:`gap_pair_signals` is the one forward pass these methods share: the explained layer's
map A of the queries (and, if asked, of the references), the embeddings f = mean_u A(u), and a
check that the model really embeds by global average pooling of that layer — the assumption
every exact decomposition rests on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from shared.explain.base import check_images, layer_signals
from shared.explain.targets import SimilarityTarget, Target
from shared.models.adapter import ModelAdapter


class PairTarget(SimilarityTarget):
    """Similarity to a reference image: its embedding (as :class:`SimilarityTarget`) and its pixels.

    Build it with :meth:`from_images`, which embeds the references with the same model.
    """

    def __init__(
        self,
        reference_images: torch.Tensor,
        reference_embeddings: torch.Tensor,
        metric: Literal["cosine", "euclidean"] = "cosine",
    ) -> None:
        super().__init__(reference_embeddings, metric)
        if reference_images.dim() != 4 or reference_images.shape[1] != 3:
            raise ValueError(f"reference images must be a (B, 3, H, W) batch, got {tuple(reference_images.shape)}")
        if reference_images.shape[0] != reference_embeddings.shape[0]:
            raise ValueError(
                f"{reference_images.shape[0]} reference images but {reference_embeddings.shape[0]} reference "
                f"embeddings; give one embedding per image (PairTarget.from_images computes them)"
            )
        self.reference_images = reference_images.detach()

    def subset(self, index: torch.Tensor) -> "PairTarget":
        """The pairs of rows ``index`` (the pipeline explains in chunks): embeddings and images."""
        return PairTarget(
            self.reference_images[index.to(self.reference_images.device)],
            self.reference[index.to(self.reference.device)],
            self.metric,  # type: ignore[arg-type]
        )

    @classmethod
    def from_images(
        cls, adapter: ModelAdapter, reference_images: torch.Tensor, metric: str | None = None
    ) -> "PairTarget":
        """Embed ``reference_images`` with ``adapter``; the metric defaults to the adapter's."""
        check_images(reference_images, adapter)
        metric = metric or adapter.metric
        if metric is None:
            raise ValueError(f"model {adapter.name!r} is a {adapter.task}, not an embedding model; pass metric=")
        with torch.no_grad():
            embeddings = adapter.eval()(reference_images).float()
        return cls(reference_images, embeddings, metric)  # type: ignore[arg-type]


def explain_both_sides(
    explainer: Callable[[torch.Tensor, Target], torch.Tensor],
    adapter: ModelAdapter,
    query_images: torch.Tensor,
    reference_images: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(query maps, reference maps): the method with the roles of the two images swapped.

    The similarity is symmetric, so the reference's map is the same method explaining the
    reference for the query (Zhu et al.'s Σ_u D[u, v] is exactly this, since D swaps to Dᵀ).
    """
    q = explainer(query_images, PairTarget.from_images(adapter, reference_images))
    r = explainer(reference_images, PairTarget.from_images(adapter, query_images))
    return q, r


@dataclass
class GapPairSignals:
    """The explained layer of a GAP embedding model, for queries (and references)."""

    A_q: torch.Tensor  # (B, C, h, w) query feature map
    f_q: torch.Tensor  # (B, C) query embedding = mean_u A_q(u)
    f_r: torch.Tensor  # (B, C) reference embedding (the target's)
    A_r: torch.Tensor | None  # (B, C, h', w') reference feature map, if asked for
    metric: str


def require_similarity_target(target: Target | None, method: str) -> SimilarityTarget:
    """The target as a :class:`SimilarityTarget`, or a clear error for a class target / none."""
    if not isinstance(target, SimilarityTarget):
        got = "no target" if target is None else type(target).__name__
        raise TypeError(
            f"{method} explains the similarity of two embeddings and needs a SimilarityTarget "
            f"(or a PairTarget), got {got}; it is not defined for class logits"
        )
    return target


def gap_pair_signals(
    adapter: ModelAdapter,
    layer: str,
    images: torch.Tensor,
    target: Target | None,
    method: str,
    need_reference_map: bool = False,
    atol: float = 1e-4,
) -> GapPairSignals:
    """One forward pass (queries and, if asked, references together) at ``layer``, no gradients.

    Raises a clear error if the target is not a similarity, if the reference map is needed
    but the target carries no reference images, or if the model's output is not the global
    average pool of ``layer`` (then no decomposition over positions or channels is exact).
    """
    target = require_similarity_target(target, method)
    batch = images
    if need_reference_map:
        if not isinstance(target, PairTarget):
            raise TypeError(
                f"{method} needs the reference images' feature maps; pass a PairTarget "
                f"(PairTarget.from_images(adapter, reference_images)) instead of a SimilarityTarget"
            )
        refs = target.reference_images.to(images.device, images.dtype)
        if refs.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"reference images {tuple(refs.shape[1:])} and query images {tuple(images.shape[1:])} differ in "
                f"size; resize them to one size"
            )
        batch = torch.cat([images, refs])  # one forward pass for both sides
    signals = layer_signals(adapter, batch, None, [layer], gradients=False)
    A = adapter.to_grid(signals.activations[0]).float()
    f = signals.output.float()
    if f.dim() != 2 or f.shape[1] != A.shape[1] or not torch.allclose(f, A.mean(dim=(2, 3)), atol=atol, rtol=1e-3):
        raise ValueError(
            f"{method} assumes the embedding is the global average pool of layer {layer!r}, but the model "
            f"{adapter.name!r} outputs {tuple(f.shape)} that is not mean_(h,w) of that layer's map "
            f"{tuple(A.shape)}; explain the layer whose spatial mean is the embedding (adapter.target_layer "
            f"of a shared.models embedding model)"
        )
    b = images.shape[0]
    f_r = target.reference.to(A.device, A.dtype)
    return GapPairSignals(
        A_q=A[:b], f_q=f[:b], f_r=f_r, A_r=A[b:] if need_reference_map else None, metric=target.metric
    )
