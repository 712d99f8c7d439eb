"""Deterministic query/reference pairs for explaining similarity (metric-learning) models."""

from __future__ import annotations

import numpy as np
import torch


def sample_pairs(
    labels: np.ndarray | torch.Tensor | list[int], n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample ``n`` pairs of row indices: ``(query_idx, ref_idx, same)``.

    ``n // 2`` pairs share the class (``same`` True) and the rest do not; a row is never paired
    with itself. Queries are drawn uniformly among eligible rows, references uniformly among the
    rows of the same (resp. any other) class. The result depends only on ``labels``, ``n`` and
    ``seed``; pairs are returned in a shuffled order (same and different interleaved).
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).astype(np.int64)
    if labels.ndim != 1 or labels.size < 2:
        raise ValueError(f"labels must be a 1-D sequence of at least 2 rows, got shape {labels.shape}")
    if n < 1:
        raise ValueError(f"n must be >= 1 pairs, got {n}")
    rng = np.random.default_rng(seed)
    # Rows grouped by class: the group of class c is order[start[c] : start[c] + count[c]].
    order = np.argsort(labels, kind="stable")
    classes, start, count = np.unique(labels[order], return_index=True, return_counts=True)
    group = np.searchsorted(classes, labels)
    position = np.empty_like(order)
    position[order] = np.arange(labels.size)

    n_same, n_diff = n // 2, n - n // 2
    if n_same and not (count >= 2).any():
        raise ValueError("no class has two rows, so no same-class pair exists; pass n=1 or more data")
    if n_diff and classes.size < 2:
        raise ValueError(f"all rows have class {classes[0]}, so no different-class pair exists")

    eligible = np.flatnonzero(count[group] >= 2)
    query_same = eligible[rng.integers(0, eligible.size, size=n_same)]
    g = group[query_same]
    # Pick one of the other count-1 members of the group, skipping the query's own slot.
    offset = rng.integers(0, count[g] - 1)
    offset += offset >= position[query_same] - start[g]
    ref_same = order[start[g] + offset]

    query_diff = rng.integers(0, labels.size, size=n_diff)
    g = group[query_diff]
    # Pick one of the labels.size - count rows outside the group, in sorted order.
    offset = rng.integers(0, labels.size - count[g])
    offset += np.where(offset >= start[g], count[g], 0)
    ref_diff = order[offset]

    query = np.concatenate([query_same, query_diff])
    ref = np.concatenate([ref_same, ref_diff])
    same = np.concatenate([np.ones(n_same, dtype=bool), np.zeros(n_diff, dtype=bool)])
    shuffle = rng.permutation(n)
    return query[shuffle].astype(np.int64), ref[shuffle].astype(np.int64), same[shuffle]
