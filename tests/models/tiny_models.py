"""Tiny in-memory datasets for the model tests (imported by conftest and the tests)."""

from __future__ import annotations

import torch

from shared.models.train import Split


def tiny_split(n: int, n_classes: int, size: int = 16, seed: int = 0) -> Split:
    """``n`` random images whose mean brightness depends on the label (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    images = torch.rand(n, 3, size, size, generator=g) * 0.5 + (labels.float() / n_classes)[:, None, None, None] * 0.5
    return Split(images=images.clamp(0, 1), labels=labels)


TINY_CNN = {
    "arch": "vgg_small",
    "dataset": "tiny",
    "task": "classifier",
    "epochs": 2,
    "batch_size": 8,
    "lr": 0.003,
    "gate": 0.0,
    "augment": {"hflip": True, "vflip": True, "shift": 2},
    "arch_kwargs": {"cfg": [8, "M", 16, "M", 16]},
}


