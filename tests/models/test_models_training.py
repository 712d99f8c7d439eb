"""Training is deterministic and the pieces it uses compute what they claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shared import runtime
from shared.models.augment import augment_batch
from shared.models.checkpoint import save_checkpoint
from shared.models.evaluate import recall_at_1
from shared.models.train import lr_lambda, train_model

from tiny_models import TINY_CNN, tiny_split


def _train_bytes(cfg: dict, tmp: Path, tag: str, classes: list[str], train, test) -> bytes:
    runtime.setup(seed=3, device="cpu", threads=2, deterministic=True)
    result = train_model(tag, cfg, train, test, classes, seed=3, progress=False)
    path = tmp / f"{tag}.safetensors"
    save_checkpoint(path, result.adapter.model, {"name": tag})
    return path.read_bytes()


TINY_VIT = {
    "arch": "vit_small_shapes",
    "dataset": "tiny",
    "task": "classifier",
    "epochs": 1,
    "batch_size": 8,
    "lr": 0.001,
    "gate": 0.0,
    "label_smoothing": 0.1,
    "augment": {"hflip": True, "shift": 2},
    "arch_kwargs": {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
}
TINY_EMBED = {
    "arch": "resnet_small",
    "dataset": "tiny",
    "task": "embedding",
    "metric": "euclidean",
    "embedding_dim": 8,
    "epochs": 1,
    "batch_size": 16,
    "lr": 0.003,
    "gate": 0.0,
    "arch_kwargs": {"channels": [8, 8, 8, 8], "stem_width": 8},
}


@pytest.mark.parametrize("cfg", [TINY_CNN, TINY_VIT, TINY_EMBED], ids=["cnn", "vit", "embedding"])
def test_two_training_runs_give_identical_weight_bytes(cfg: dict, tmp_path: Path) -> None:
    n_classes = 4
    classes = [str(i) for i in range(n_classes)]
    train, test = tiny_split(32, n_classes), tiny_split(16, n_classes, seed=1)
    first = _train_bytes(cfg, tmp_path, "a", classes, train, test)
    second = _train_bytes(cfg, tmp_path, "b", classes, train, test)
    assert first == second
    # and training changed the weights: a different seed gives different bytes
    runtime.setup(seed=4, device="cpu", threads=2, deterministic=True)
    other = train_model("c", cfg, train, test, classes, seed=4, progress=False)
    save_checkpoint(tmp_path / "c.safetensors", other.adapter.model, {"name": "c"})
    assert (tmp_path / "c.safetensors").read_bytes() != first


def test_training_learns_a_learnable_task() -> None:
    runtime.setup(seed=0, device="cpu", threads=2, deterministic=True)
    cfg = {**TINY_CNN, "epochs": 5, "augment": {}}
    result = train_model("t", cfg, tiny_split(48, 2), tiny_split(32, 2, seed=1), ["a", "b"], seed=0, progress=False)
    assert result.metrics["test_accuracy"] >= 0.9
    assert result.training["steps"] == 5 * (48 // 8)


def test_augment_shift_matches_edge_padded_crop() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 10, 12, generator=g)
    spec = {"shift": 3}
    out = augment_batch(x, spec, torch.Generator().manual_seed(5))
    # redo the draws, then crop each image from an edge-padded copy, one image at a time
    g2 = torch.Generator().manual_seed(5)
    dy = torch.randint(-3, 4, (6,), generator=g2)
    dx = torch.randint(-3, 4, (6,), generator=g2)
    padded = F.pad(x, (3, 3, 3, 3), mode="replicate")
    for i in range(6):
        y0, x0 = 3 + int(dy[i]), 3 + int(dx[i])
        torch.testing.assert_close(out[i], padded[i, :, y0 : y0 + 10, x0 : x0 + 12], rtol=0, atol=0)


def test_augment_flips_are_flips_and_nothing_else() -> None:
    x = torch.rand(64, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    out = augment_batch(x, {"hflip": True}, torch.Generator().manual_seed(2))
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    same = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped | same).all())
    assert 10 < int(flipped.sum()) < 54  # about half are flipped
    assert augment_batch(x, {}, torch.Generator()) is x


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_recall_at_1_matches_brute_force(metric: str) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=60)
    emb = rng.normal(size=(60, 8)) + labels[:, None] * 0.4
    if metric == "cosine":
        unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        dist = -(unit @ unit.T)
    else:
        dist = np.linalg.norm(emb[:, None] - emb[None], axis=2)
    np.fill_diagonal(dist, np.inf)  # a query never retrieves itself
    expected = float(np.mean(labels[dist.argmin(axis=1)] == labels))
    got = recall_at_1(torch.tensor(emb, dtype=torch.float32), torch.tensor(labels), metric)
    assert got == pytest.approx(expected, abs=1e-6)
    assert 0.2 < expected < 1.0  # a non-trivial case


def test_lr_schedule_warms_up_then_decays_to_zero() -> None:
    f = lr_lambda(total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-12)


def test_per_class_batches_hold_m_images_of_each_class() -> None:
    from shared.models.train import epoch_batches

    labels = torch.arange(10).repeat_interleave(13)  # 10 classes, 13 images each
    batches = epoch_batches(labels, batch_size=12, per_class=4, generator=torch.Generator().manual_seed(0))
    # 3 full groups of 4 per class -> 30 groups -> 10 batches of 3 groups
    assert len(batches) == 10
    seen = torch.cat(batches)
    assert len(set(seen.tolist())) == len(seen)  # no image twice in an epoch
    for batch in batches:
        # whole groups of 4 (two groups of one class may meet in a batch): every class in a
        # batch has positives
        counts = torch.bincount(labels[batch], minlength=10)
        assert len(batch) == 12 and all(c % 4 == 0 for c in counts.tolist())
    again = epoch_batches(labels, 12, 4, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(batches, again))
    with pytest.raises(ValueError, match="multiple of samples_per_class"):
        epoch_batches(labels, 10, 4, torch.Generator())


def test_a_split_too_small_for_one_batch_is_an_error_not_a_silent_no_op() -> None:
    """Found by the paper-scale rehearsal: with samples_per_class 4, classes of 3 images form no
    group, so an epoch had no batch and `epochs: 1` trained nothing without a word."""
    runtime.setup(seed=0, device="cpu", threads=2, deterministic=True)
    cfg = {**TINY_CNN, "epochs": 1, "augment": {}, "batch_size": 8, "samples_per_class": 4}
    with pytest.raises(ValueError, match="no full batch of 8 with samples_per_class 4"):
        train_model("t", cfg, tiny_split(6, 2), tiny_split(4, 2, seed=1), ["a", "b"], seed=0, progress=False)
