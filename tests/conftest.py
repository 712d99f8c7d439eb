"""Shared test fixtures. Tests are offline and build everything they need."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# Pinned, reproducible numbers: the same thread count whatever the machine.
torch.set_num_threads(int(os.environ.get("SALIENCY_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
