"""A trained tiny checkpoint for the model tests (trained once per session, copied per test)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shared import runtime
from tiny_models import TINY_CNN, tiny_split


@pytest.fixture(scope="session")
def _tiny_checkpoint_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shared.models.checkpoint import adapter_record, save_checkpoint
    from shared.models.train import train_model

    runtime.setup(seed=0, device="cpu", threads=2, deterministic=True)
    result = train_model("tiny", TINY_CNN, tiny_split(32, 2), tiny_split(16, 2, seed=1), ["a", "b"], seed=0, progress=False)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(
        path,
        result.adapter.model,
        {
            "name": "tiny",
            "model": TINY_CNN,
            "metrics": result.metrics,
            "primary_metric": "test_accuracy",
            "gate": TINY_CNN["gate"],
            "classes": ["a", "b"],
            "seed": 0,
            "dataset": {"name": "tiny", "content_hash": "0" * 64},
            "adapter": adapter_record(result.adapter),
            "training": result.training,
        },
    )
    return path


@pytest.fixture
def tiny_classifier_checkpoint(_tiny_checkpoint_master: Path, tmp_path: Path) -> Path:
    """A vgg_small checkpoint trained for a few steps on 16 px images (two classes); a private copy."""
    for suffix in (".safetensors", ".json"):
        shutil.copy(_tiny_checkpoint_master.with_suffix(suffix), tmp_path / f"tiny{suffix}")
    return tmp_path / "tiny.safetensors"
