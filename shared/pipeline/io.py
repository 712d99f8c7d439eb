"""The evaluation batch of a model and the files the pipeline reads and writes.

The evaluation subset of a model is the first ``n_images`` rows of its dataset's ``test``
split. Classifiers are explained for the ground-truth class. Embedding models are explained
for a positive reference: for query row i, the next test row of the same class (cyclically).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from shared.atomic import write_text  # noqa: F401  (re-exported: figures import it from here)
from shared.data import SplitTensors, load_split, read_meta
from shared.explain import ClassTarget, Target
from shared.explain.pair import PairTarget
from shared.models import ModelAdapter, load_checkpoint
from shared.models.checkpoint import read_sidecar
from shared.pipeline.map_files import load_maps, save_maps, write_json  # noqa: F401  (re-exported: steps import them from here)


@dataclass
class EvalBatch:
    """Everything a step needs to explain and score one model on its evaluation subset."""

    adapter: ModelAdapter
    split: SplitTensors  # the evaluation rows (images, labels, masks, boxes)
    images: torch.Tensor  # (N, 3, H, W) on the adapter's device
    target: Target
    reference_index: torch.Tensor | None  # embedding models: the reference row of each query
    reference_images: torch.Tensor | None
    dataset: str


def positive_references(labels: torch.Tensor) -> torch.Tensor:
    """For each row, the next row of the same class (cyclically); itself if it is alone."""
    n = labels.numel()
    idx = torch.arange(n)
    same = labels[:, None] == labels[None, :]
    # distance going forward from i to j (1..n), so the first same-class row after i wins
    forward = (idx[None, :] - idx[:, None]) % n
    forward = torch.where(forward == 0, torch.full_like(forward, n), forward)
    forward = torch.where(same, forward, torch.full_like(forward, n + 1))
    ref = forward.argmin(dim=1)
    alone = same.sum(dim=1) == 1
    return torch.where(alone, idx, ref)


def test_split(model_path: str | Path) -> str:
    """The split a checkpoint's model is evaluated on (its config's ``test_split``, default ``test``)."""
    return str(read_sidecar(model_path)["model"].get("test_split", "test"))


def training_rows(model_path: str | Path, dataset_dir: str | Path, n: int) -> SplitTensors:
    """The first ``n`` rows of the split the checkpoint's model was trained on (its config's
    ``train_split``, default ``train``): what the papers that train or fit in a step (T-TAME,
    robust_xai, ICE, TraNCE) fit on."""
    return load_split(dataset_dir, str(read_sidecar(model_path)["model"].get("train_split", "train")), limit=int(n))


def eval_batch(model_path: str | Path, dataset_dir: str | Path, n_images: int, device: torch.device | str = "cpu") -> EvalBatch:
    """Load a checkpoint and its evaluation subset (the first ``n_images`` of the split the model
    was tested on: its config's ``test_split``, e.g. Imagenette's ``val``), with the targets every
    method explains."""
    adapter = load_checkpoint(model_path, device=device).explain_mode()
    split = load_split(dataset_dir, test_split(model_path), limit=n_images)
    images = split.images.to(device)
    dataset = read_meta(dataset_dir)["name"]
    if adapter.task == "classifier":
        return EvalBatch(adapter, split, images, ClassTarget(split.labels.to(device)), None, None, dataset)
    ref = positive_references(split.labels)
    ref_images = images[ref.to(device)]
    # a PairTarget is a SimilarityTarget that also carries the reference pixels, which the
    # decomposition methods (SFAM, SimNet, Zhu et al.) need for the reference's feature map
    target = PairTarget.from_images(adapter, ref_images)
    return EvalBatch(adapter, split, images, target, ref, ref_images, dataset)
