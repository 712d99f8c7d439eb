"""The zoo's roles at a tiny size, seeded: the same architectures and adapters as the benchmark's
models, for the method contract (tests/explain) and the baselines' reference tests (tests/papers)."""

from __future__ import annotations

import torch

from shared.explain import ClassTarget
from shared.explain.pair import PairTarget
from shared.models import build_adapter

SIZE = 32
CLASSES = ["a", "b", "c", "d"]
ZOO = {
    "resnet": {"arch": "resnet_small", "task": "classifier"},
    "plaincnn": {"arch": "vgg_small", "task": "classifier"},
    "vit": {"arch": "vit_small_shapes", "task": "classifier", "arch_kwargs": {"img_size": SIZE}},
    "embed_cosine": {"arch": "resnet_small", "task": "embedding", "metric": "cosine", "embedding_dim": 8},
    "embed_euclidean": {"arch": "resnet_small", "task": "embedding", "metric": "euclidean", "embedding_dim": 8},
}


def role(name: str, n_images: int = 3, labels: tuple[int, ...] = (0, 1, 3)):
    """(adapter, images, target) of a tiny seeded model of this role: ``n_images`` random images,
    a classifier's ``labels`` (the first ``n_images``), or an embedding model's random references."""
    torch.manual_seed(0)
    adapter = build_adapter(name, ZOO[name], CLASSES).explain_mode()
    g = torch.Generator().manual_seed(1)
    images = torch.rand(n_images, 3, SIZE, SIZE, generator=g)
    if adapter.task == "classifier":
        return adapter, images, ClassTarget(list(labels[:n_images]))
    return adapter, images, PairTarget.from_images(adapter, torch.rand(n_images, 3, SIZE, SIZE, generator=g))
