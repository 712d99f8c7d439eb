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


def _class_logits(output: torch.Tensor, what: str) -> None:
    if output.dim() != 2:
        raise ValueError(f"{what} needs logits of shape (B, K), got {tuple(output.shape)}")


class GroupTarget(Target):
    """The score of a group of classes per image (RFxG's group granularity, "Why Dog?").

    ``groups`` is a list of groups, each a non-empty list of class indices (groups may overlap);
    ``group`` names each image's group (an index into ``groups``). The score is the SUM of the
    group's logits, Σ_{k∈G} y_k — what the RFxG authors' code back-propagates for a group
    (``backward_class_score_and_get_activation_grads_additive``), so every gradient method's map
    for a group is the sum of its gradients for the group's classes. ``probability`` is the
    group's probability Σ_{k∈G} softmax(y)_k (the faithfulness metrics' score; the authors'
    metrics average the members' probabilities instead: 1/|G| of ours). A one-class group is
    exactly :class:`ClassTarget`.
    """

    def __init__(self, groups: list[list[int]], group: torch.Tensor | list[int]) -> None:
        groups = [[int(k) for k in g] for g in groups]
        if not groups:
            raise ValueError("GroupTarget needs at least one group of classes")
        for i, g in enumerate(groups):
            if not g:
                raise ValueError(f"group {i} is empty; every group needs at least one class")
            if min(g) < 0:
                raise IndexError(f"group {i} has a negative class index {min(g)}")
            if len(set(g)) != len(g):
                raise ValueError(f"group {i} lists a class twice: {g}")
        self.groups = groups
        self.group = torch.as_tensor(group, dtype=torch.long).reshape(-1)
        bad = (self.group < 0) | (self.group >= len(groups))
        if bool(bad.any()):
            raise IndexError(f"group index {int(self.group[bad][0])} is out of range for {len(groups)} groups (valid: 0..{len(groups) - 1})")

    def __len__(self) -> int:
        return self.group.numel()

    def subset(self, index: torch.Tensor) -> "GroupTarget":
        return GroupTarget(self.groups, self.group[index.to(self.group.device)])

    def members(self, k: int, device: torch.device | None = None) -> torch.Tensor:
        """(G, K) 0/1 membership matrix of the groups over ``k`` classes."""
        top = max(max(g) for g in self.groups)
        if top >= k:
            raise IndexError(f"group class {top} is out of range for a model with {k} classes (valid: 0..{k - 1})")
        m = torch.zeros(len(self.groups), k, device=device)
        for i, g in enumerate(self.groups):
            m[i, g] = 1.0
        return m

    def _rows(self, output: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        _class_logits(output, "GroupTarget")
        group = self.group.to(output.device)[self._index(output, index)]
        return self.members(output.shape[1], output.device).to(output.dtype)[group]

    def __call__(self, output: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return (output * self._rows(output, index)).sum(dim=1)

    def probability(self, output: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return (output.softmax(dim=1) * self._rows(output, index)).sum(dim=1)


class ContrastiveTarget(Target):
    """RFxG's contrastive reference frame: the fact's score minus the foil's, per image.

    ``fact`` and ``foil`` are targets of the same length (:class:`ClassTarget`,
    :class:`GroupTarget`, or a label tensor / list, read as a ClassTarget): class vs class
    ("Why Husky and not Shih-tzu?": y_c − y_c′), group vs group (Σ_{G} y − Σ_{G′} y), or class vs
    group ("Why Husky and not other dogs?"). Every gradient method explains the difference as it
    explains any score: by linearity its gradient is ∇y_fact − ∇y_foil. ``probability`` is the
    difference of the two probabilities (p_c − p_c′; P(G) − P(G′)), the score the faithfulness
    metrics perturb (the authors' CCS: p_a − p_b).
    """

    def __init__(self, fact: Target | torch.Tensor | list[int], foil: Target | torch.Tensor | list[int]) -> None:
        self.fact = fact if isinstance(fact, Target) else ClassTarget(fact)
        self.foil = foil if isinstance(foil, Target) else ClassTarget(foil)
        if isinstance(self.fact, ContrastiveTarget) or isinstance(self.foil, ContrastiveTarget):
            raise TypeError("a ContrastiveTarget's fact and foil must be class or group targets, not contrasts")
        if len(self.fact) != len(self.foil):
            raise ValueError(f"fact and foil must have one entry per image each, got {len(self.fact)} and {len(self.foil)}")

    @classmethod
    def runner_up(cls, logits: torch.Tensor, labels: torch.Tensor | list[int]) -> "ContrastiveTarget":
        """``labels`` against each image's highest-scoring other class (from ``logits`` (B, K))."""
        _class_logits(logits, "ContrastiveTarget.runner_up")
        labels = torch.as_tensor(labels, dtype=torch.long, device=logits.device).reshape(-1)
        if logits.shape[1] < 2:
            raise ValueError("a contrast needs at least two classes")
        others = logits.detach().clone()
        others.scatter_(1, labels[:, None], float("-inf"))
        return cls(ClassTarget(labels), ClassTarget(others.argmax(dim=1)))

    def __len__(self) -> int:
        return len(self.fact)

    def subset(self, index: torch.Tensor) -> "ContrastiveTarget":
        return ContrastiveTarget(self.fact.subset(index), self.foil.subset(index))

    def __call__(self, output: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return self.fact(output, index) - self.foil(output, index)

    def probability(self, output: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        return self.fact.probability(output, index) - self.foil.probability(output, index)
