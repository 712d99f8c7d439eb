"""What an explanation explains: one score per image.

A target maps the model output (B, K) — logits of a classifier or embeddings of a
metric-learning model — to one differentiable score per image (B,). ``index`` selects, for
each row of a (possibly perturbed, possibly repeated) batch, which image's target to use; the
metrics use it to score many perturbed copies of each image in one batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


class Target:
    """Base class: ``target(output, index=None) -> (B,)`` scores."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __call__(self, output: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def probability(self, output: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The score the faithfulness metrics use (class probability; similarity as is)."""
        return self(output, index)

    def subset(self, index: torch.Tensor) -> "Target":
        """The targets of the rows ``index`` (to explain a batch in chunks)."""
        raise NotImplementedError

    def _index(self, output: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        if index is None:
            if output.shape[0] != len(self):
                raise ValueError(
                    f"the target has {len(self)} entries but the batch has {output.shape[0]} images; "
                    f"give one target per image (or pass index=)"
                )
            return torch.arange(output.shape[0], device=output.device)
        return index.to(output.device)


class ClassTarget(Target):
    """The logit of one class per image (Grad-CAM's y^c, before the softmax)."""

    def __init__(self, labels: torch.Tensor | list[int]) -> None:
        self.labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)

    def __len__(self) -> int:
        return self.labels.numel()

    def subset(self, index: torch.Tensor) -> "ClassTarget":
        return ClassTarget(self.labels[index.to(self.labels.device)])

    def _labels(self, output: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        if output.dim() != 2:
            raise ValueError(f"ClassTarget needs logits of shape (B, K), got {tuple(output.shape)}")
        labels = self.labels.to(output.device)[self._index(output, index)]
        k = output.shape[1]
        bad = (labels < 0) | (labels >= k)
        if bool(bad.any()):
            raise IndexError(
                f"target class {int(labels[bad][0])} is out of range for a model with {k} classes (valid: 0..{k - 1})"
            )
        return labels

    def __call__(self, output: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        labels = self._labels(output, index)
        return output.gather(1, labels[:, None])[:, 0]

    def probability(self, output: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        labels = self._labels(output, index)
        return output.softmax(dim=1).gather(1, labels[:, None])[:, 0]


class SimilarityTarget(Target):
    """Similarity of each image's embedding to a reference embedding.

    ``cosine``: cos(f, r). ``euclidean``: −‖f − r‖² (higher is more similar; the squared
    distance is used because it decomposes exactly over embedding channels).
    """

    def __init__(
        self, reference_embeddings: torch.Tensor, metric: Literal["cosine", "euclidean"] = "cosine"
    ) -> None:
        if metric not in ("cosine", "euclidean"):
            raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
        if reference_embeddings.dim() != 2:
            raise ValueError(
                f"reference embeddings must be (B, D), got {tuple(reference_embeddings.shape)}"
            )
        if not bool(torch.isfinite(reference_embeddings).all()):
            raise ValueError("reference embeddings contain NaN or infinite values (a NaN reference makes every map NaN)")
        self.reference = reference_embeddings.detach()
        self.metric = metric

    def __len__(self) -> int:
        return self.reference.shape[0]

    def subset(self, index: torch.Tensor) -> "SimilarityTarget":
        return SimilarityTarget(self.reference[index.to(self.reference.device)], self.metric)

    def __call__(self, output: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if output.dim() != 2 or output.shape[1] != self.reference.shape[1]:
            raise ValueError(
                f"embeddings of shape {tuple(output.shape)} do not match the reference embeddings "
                f"{tuple(self.reference.shape)}; is this the same embedding model?"
            )
        ref = self.reference.to(output.device, output.dtype)[self._index(output, index)]
        if self.metric == "cosine":
            return F.cosine_similarity(output, ref, dim=1, eps=1e-12)
        return -((output - ref) ** 2).sum(dim=1)
