"""Deterministic training of the configured models (classifiers and metric-learning embeddings).

    python -m shared.models.train --name resnet --data data/datasets/shapes \
        --out data/models/resnet.safetensors --config-json '{"seed": 0, ..., "model": {...}}'

The JSON holds the run-time settings (``seed``, ``device``, ``threads``, ``deterministic``) and
``model``: the model's entry of the config's ``models:`` section. The whole dataset is held in
memory as tensors; batches are drawn and augmented with one seeded ``torch.Generator`` (no
DataLoader workers), so the same config and seed give byte-identical weights on one machine.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from pytorch_metric_learning import losses
from torch import nn
from tqdm import tqdm

from shared import runtime

from .adapter import ModelAdapter
from .augment import augment_batch
from .checkpoint import adapter_record, save_checkpoint
from .evaluate import PRIMARY_METRIC, accuracy, distance_for, predict, recall_at_1
from .zoo import build_adapter, num_outputs

__all__ = ["Split", "TrainResult", "main", "train_model", "train_from_dataset"]


@dataclass
class Split:
    """The part of a dataset split training needs: images (N, 3, H, W) in [0, 1], labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor


@dataclass
class TrainResult:
    adapter: ModelAdapter
    metrics: dict[str, float]
    training: dict[str, Any]


def embedding_loss(metric: str) -> nn.Module:
    """The pytorch-metric-learning loss for an embedding metric.

    Cosine: multi-similarity loss on cosine similarities (all pairs of the batch weighted).
    Euclidean: triplet margin loss on the *unnormalised* L2 distance — the distance the model is
    explained with — over all the batch's triplets; a small L2 penalty on the embeddings keeps
    the network from meeting the margin merely by scaling its outputs up.
    """
    if metric == "cosine":
        return losses.MultiSimilarityLoss(alpha=2.0, beta=50.0, base=0.5, distance=distance_for("cosine"))
    if metric == "euclidean":
        from pytorch_metric_learning.regularizers import LpRegularizer

        return losses.TripletMarginLoss(
            margin=1.0, distance=distance_for("euclidean"), embedding_regularizer=LpRegularizer(), embedding_reg_weight=1e-3
        )
    raise ValueError(f"embedding metric must be 'cosine' or 'euclidean', got {metric!r}")


def epoch_batches(labels: torch.Tensor, batch_size: int, per_class: int | None, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch of index batches, drawn with ``generator``.

    Without ``per_class``: a random permutation cut into full batches. With ``per_class = m``
    (metric learning with many classes, e.g. CUB): each class's images are shuffled and cut
    into groups of m, the groups are shuffled, and each batch takes ``batch_size // m`` groups,
    so every batch holds positive pairs.
    """
    n = len(labels)
    if not per_class:
        order = torch.randperm(n, generator=generator)
        return [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)] or [order]
    m = int(per_class)
    if batch_size % m or batch_size // m < 2:
        raise ValueError(f"batch_size {batch_size} must be a multiple of samples_per_class {m}, with at least 2 classes a batch")
    groups: list[torch.Tensor] = []
    for c in torch.unique(labels).tolist():  # sorted, so the draws do not depend on dict order
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        groups += [idx[i : i + m] for i in range(0, len(idx) - m + 1, m)]
    groups = [groups[i] for i in torch.randperm(len(groups), generator=generator).tolist()]
    k = batch_size // m
    return [torch.cat(groups[i : i + k]) for i in range(0, len(groups) - k + 1, k)]


def lr_lambda(total_steps: int, warmup_steps: int):
    """Linear warm-up from 1/warmup to 1, then a cosine decay to 0, as a factor of the base lr."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def evaluate(adapter: ModelAdapter, test: Split, task: str, metric: str | None, batch_size: int, device: torch.device) -> dict[str, float]:
    """The model's test metric: accuracy (classifier) or Recall@1 on the test classes (embedding)."""
    outputs = predict(adapter, test.images, batch_size, device)
    if task == "classifier":
        return {PRIMARY_METRIC[task]: accuracy(outputs, test.labels)}
    return {PRIMARY_METRIC[task]: recall_at_1(outputs, test.labels, str(metric))}


def train_model(
    name: str,
    model_cfg: Mapping[str, Any],
    train: Split,
    test: Split,
    classes: Sequence[str],
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> TrainResult:
    """Build the configured model, train it on ``train`` and score it on ``test``.

    Call :func:`shared.runtime.setup` first (the CLI does): the initial weights come from the
    global torch generator it seeds; batch order and augmentation from a private generator.
    """
    device = torch.device(device)
    task = str(model_cfg.get("task", "classifier"))
    metric = model_cfg.get("metric")
    if task == "embedding" and metric not in ("cosine", "euclidean"):
        raise ValueError(f"embedding model {name!r} needs metric: cosine or euclidean in its config")
    adapter = build_adapter(name, model_cfg, classes).to(device)
    if task == "classifier":
        n_out = num_outputs(model_cfg, classes)
        top = int(train.labels.max()) if len(train.labels) else -1
        if top >= n_out:
            raise ValueError(f"model {name!r} has {n_out} outputs but the training labels go up to {top}")

    epochs = int(model_cfg["epochs"])
    batch_size = int(model_cfg["batch_size"])
    n = len(train.labels)
    per_class = model_cfg.get("samples_per_class")
    gen = runtime.generator(seed + 1)  # seed + 1: not the stream that initialised the weights
    # the last partial batch is dropped: a batch of one breaks BatchNorm, and equal batches
    # keep every step's statistics comparable. The batch count of an epoch does not depend on
    # the draws, so a throw-away generator sizes the schedule.
    steps_per_epoch = len(epoch_batches(train.labels, batch_size, per_class, torch.Generator().manual_seed(0))) if n else 0
    total_steps = epochs * steps_per_epoch
    if epochs > 0 and steps_per_epoch == 0:
        # found by the paper-scale rehearsal: a split too small for one batch trained nothing, silently
        group = f" with samples_per_class {per_class} (classes with fewer images form no group)" if per_class else ""
        raise ValueError(
            f"model {name!r}: {n} training images make no full batch of {batch_size}{group}, so "
            f"{epochs} epoch(s) would train nothing; lower models.{name}.batch_size or use more data"
        )
    training: dict[str, Any] = {"epochs": epochs, "steps": total_steps, "device": str(device)}
    started = time.perf_counter()
    # CPU time as well as wall time: on a shared machine the wall time says little
    cpu_started = time.process_time()

    if total_steps > 0:
        params = [p for p in adapter.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=float(model_cfg["lr"]), weight_decay=float(model_cfg.get("weight_decay", 5e-4)))
        warmup = int(round(float(model_cfg.get("warmup_epochs", 1)) * steps_per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total_steps, min(warmup, total_steps // 2)))
        if task == "classifier":
            criterion: nn.Module = nn.CrossEntropyLoss(label_smoothing=float(model_cfg.get("label_smoothing", 0.0)))
        else:
            criterion = embedding_loss(str(metric))
        aug = model_cfg.get("augment") or {}
        adapter.train()
        bar = tqdm(total=total_steps, desc=f"train {name}", unit="step", file=sys.stderr, mininterval=1.0, dynamic_ncols=True, disable=not progress)
        loss_sum, correct, seen = 0.0, 0, 0
        try:
            for epoch in range(epochs):
                for step, idx in enumerate(epoch_batches(train.labels, batch_size, per_class, gen)):
                    images = augment_batch(train.images[idx].to(device), aug, gen)
                    labels = train.labels[idx].to(device)
                    out = adapter(images)
                    loss = criterion(out, labels)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    loss_sum += float(loss.detach())
                    if task == "classifier":
                        correct += int((out.detach().argmax(1) == labels).sum())
                    seen += len(idx)
                    bar.update(1)
                    if bar.n % 10 == 0 or bar.n == total_steps:
                        post = {"epoch": epoch + 1, "loss": f"{loss_sum / max(1, step + 1):.3f}"}
                        if task == "classifier":
                            post["acc"] = f"{correct / max(1, seen):.3f}"
                        bar.set_postfix(post, refresh=False)
                training[f"epoch_{epoch + 1}_loss"] = loss_sum / steps_per_epoch
                if task == "classifier":
                    training[f"epoch_{epoch + 1}_train_accuracy"] = correct / max(1, seen)
                loss_sum, correct, seen = 0.0, 0, 0
        finally:
            bar.close()

    training["train_seconds"] = round(time.perf_counter() - started, 2)
    training["train_cpu_seconds"] = round(time.process_time() - cpu_started, 2)
    metrics = evaluate(adapter, test, task, metric, max(batch_size, 128), device)
    training["total_seconds"] = round(time.perf_counter() - started, 2)
    training["total_cpu_seconds"] = round(time.process_time() - cpu_started, 2)
    adapter.eval()
    return TrainResult(adapter=adapter, metrics=metrics, training=training)


def _load_dataset(root: Path, model_cfg: Mapping[str, Any]) -> tuple[dict[str, Any], Split, Split, list[str]]:
    """The dataset's meta.json and its train / test splits as in-memory tensors."""
    from shared.data import load_split  # the data layer; imported late so the models import without it

    meta_path = root / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{root} is not a dataset directory (no meta.json); build it first, e.g. `snakemake {root}`")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    te = load_split(root, model_cfg.get("test_split", "test"))
    test = Split(images=te.images, labels=te.labels)
    if int(model_cfg["epochs"]) > 0:
        tr = load_split(root, model_cfg.get("train_split", "train"), limit=model_cfg.get("train_limit"))
        train = Split(images=tr.images, labels=tr.labels)
    else:  # evaluated as is (a pretrained model): do not hold a training split in memory
        train = Split(images=te.images[:0], labels=te.labels[:0])
    # `classes` is the dataset's class list (labels index it); `class_names` is per row
    classes = list(getattr(te, "classes", None) or meta.get("classes", []))
    return meta, train, test, classes


def train_from_dataset(name: str, data: Path, out: Path, cfg: Mapping[str, Any], progress: bool = True) -> dict[str, Any]:
    """Train model ``name`` on the dataset at ``data``, write the checkpoint ``out``; the sidecar."""
    model_cfg = dict(cfg["model"])
    seed = int(cfg.get("seed", 0))
    device = runtime.setup(
        seed=seed, device=cfg.get("device", "auto"), threads=cfg.get("threads"), deterministic=bool(cfg.get("deterministic", True))
    )
    meta, train, test, classes = _load_dataset(Path(data), model_cfg)
    result = train_model(name, model_cfg, train, test, classes, seed=seed, device=device, progress=progress)
    task = str(model_cfg.get("task", "classifier"))
    sidecar = {
        "name": name,
        "architecture": {
            "arch": model_cfg["arch"],
            "arch_kwargs": dict(model_cfg.get("arch_kwargs") or {}),
            "num_classes": num_outputs(model_cfg, classes) if task == "classifier" else None,
            "embedding_dim": model_cfg.get("embedding_dim"),
        },
        "model": model_cfg,
        "dataset": {"name": meta.get("name", Path(data).name), "path": str(data), "content_hash": meta.get("content_hash")},
        "seed": seed,
        "runtime": {k: cfg.get(k) for k in ("device", "threads", "deterministic")},
        "metrics": result.metrics,
        "primary_metric": PRIMARY_METRIC[task],
        "gate": model_cfg.get("gate"),
        "classes": classes,
        "n_train": len(train.labels),
        "n_test": len(test.labels),
        "adapter": adapter_record(result.adapter),
        "training": result.training,
        "versions": {"torch": torch.__version__, "timm": timm.__version__},
    }
    return save_checkpoint(out, result.adapter.model, sidecar)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.models.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="model name (a key of the config's models: section)")
    parser.add_argument("--data", required=True, type=Path, help="dataset directory (data/datasets/<name>)")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint to write (.safetensors; the .json sidecar goes next to it)")
    parser.add_argument("--config-json", required=True, help='{"seed", "device", "threads", "deterministic", "model": {...}}')
    args = parser.parse_args(argv)
    cfg = json.loads(args.config_json)
    if "model" not in cfg:
        parser.error("--config-json needs a 'model' entry (the model's section of the config)")
    meta = train_from_dataset(args.name, args.data, args.out, cfg)
    primary = meta["primary_metric"]
    print(
        f"{args.name}: {primary} = {meta['metrics'][primary]:.4f} "
        f"(gate {meta.get('gate')}), trained in {meta['training']['train_seconds']:.1f} s "
        f"({meta['training']['train_cpu_seconds']:.1f} s CPU) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
