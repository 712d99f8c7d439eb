"""Checkpoints: weights in safetensors plus a JSON sidecar; loading never unpickles.

``data/models/<name>.safetensors`` holds the tensors; ``data/models/<name>.json`` says how to
rebuild the network (architecture and kwargs, the model config), what it was trained on
(dataset name + content hash), the seed, its test metrics, its classes, the adapter spec and
the SHA-256 of the weights file. Both files are written to a temporary name and moved into
place (weights first, sidecar last), so a crash never leaves a half-written checkpoint that
looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from shared.atomic import atomic_write

from .adapter import ModelAdapter
from .zoo import build_model

__all__ = ["SIDECAR_FORMAT", "CheckpointError", "load_checkpoint", "read_sidecar", "save_checkpoint", "sidecar_path"]

SIDECAR_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used as it is; the message says which file and what to do."""


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``x.safetensors`` → ``x.json`` (and ``x.json`` → itself)."""
    p = Path(path)
    return p if p.suffix == ".json" else p.with_suffix(".json")


def weights_path(path: str | os.PathLike[str]) -> Path:
    """``x.json`` → ``x.safetensors`` (and ``x.safetensors`` → itself)."""
    p = Path(path)
    return p if p.suffix == ".safetensors" else p.with_suffix(".safetensors")


def _remedy(path: Path) -> str:
    name = path.with_suffix("").name
    return (
        f"delete {weights_path(path)} and {sidecar_path(path)} and rebuild it with "
        f"`snakemake data/models/{name}.safetensors` (or `repro pull` for the published one)"
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def architecture_signature(model: nn.Module) -> str:
    """A fingerprint of the network's structure (layer types and settings, not weights).

    Recorded in the sidecar and checked on loading: if a registered factory changes (a
    removed pool, another stride), old weights may still fit every tensor shape while the
    network computes something else; the signature catches that.
    """
    return hashlib.sha256(repr(model).encode()).hexdigest()[:16]


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, sidecar: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``model``'s weights to ``path`` (safetensors) and ``sidecar`` next to it.

    The sidecar is completed with the format version, the weights file name and its SHA-256.
    Returns the sidecar as written.
    """
    path = weights_path(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp))
    meta = dict(sidecar)
    meta["format"] = SIDECAR_FORMAT
    meta["architecture_signature"] = architecture_signature(model)
    meta["weights"] = {"file": path.name, "sha256": sha256_file(path), "n_tensors": len(tensors)}
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"

    def write_json(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(sidecar_path(path), write_json)
    return meta


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sidecar of checkpoint ``path`` (either file of the pair), checked for required keys."""
    side = sidecar_path(path)
    if not side.is_file():
        raise CheckpointError(f"checkpoint sidecar {side} is missing; {_remedy(side)}")
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint sidecar {side} is not valid JSON ({exc}); {_remedy(side)}") from exc
    missing = [k for k in ("name", "model", "adapter", "weights", "metrics", "classes") if k not in meta]
    if not isinstance(meta, dict) or missing:
        raise CheckpointError(f"checkpoint sidecar {side} lacks {', '.join(missing) or 'its keys'}; {_remedy(side)}")
    if meta.get("format") != SIDECAR_FORMAT:
        raise CheckpointError(
            f"checkpoint sidecar {side} has format {meta.get('format')!r}, this code reads format "
            f"{SIDECAR_FORMAT}; {_remedy(side)}"
        )
    return meta


def load_checkpoint(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> ModelAdapter:
    """Rebuild the adapter saved at ``path`` (the ``.safetensors`` or its ``.json`` sidecar).

    The weights must match the SHA-256 in the sidecar and the architecture the sidecar
    describes; anything else is a :class:`CheckpointError` naming the file and the remedy.
    The adapter is returned on ``device`` in explain mode (eval, frozen parameters).
    """
    meta = read_sidecar(path)
    weights = sidecar_path(path).with_name(meta["weights"]["file"])
    if not weights.is_file():
        raise CheckpointError(f"checkpoint weights {weights} are missing (its sidecar exists); {_remedy(weights)}")
    actual = sha256_file(weights)
    if actual != meta["weights"]["sha256"]:
        raise CheckpointError(
            f"checkpoint weights {weights} do not match their sidecar (SHA-256 {actual[:12]}… instead of "
            f"{meta['weights']['sha256'][:12]}…): the file is corrupted, truncated or from another run; "
            f"{_remedy(weights)}"
        )
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint weights {weights} cannot be read ({exc}); {_remedy(weights)}") from exc

    model = build_model(meta["model"], meta["classes"], pretrained=False)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{what}: {', '.join(keys[:4])}{'…' if len(keys) > 4 else ''}"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise CheckpointError(
            f"checkpoint weights {weights} do not fit the architecture in its sidecar "
            f"({meta['model'].get('arch')}): {detail}; {_remedy(weights)}"
        )
    signature = meta.get("architecture_signature")
    if signature is not None and signature != architecture_signature(model):
        raise CheckpointError(
            f"checkpoint {weights} was trained with another version of architecture "
            f"{meta['model'].get('arch')!r} (its structure changed since: signature {signature} vs "
            f"{architecture_signature(model)} now); {_remedy(weights)}"
        )
    model.load_state_dict(state, strict=True)
    spec = meta["adapter"]
    adapter = ModelAdapter(
        model,
        kind=spec["kind"],
        task=spec["task"],
        target_layer=spec["target_layer"],
        layers=spec["layers"],
        mean=spec["mean"],
        std=spec["std"],
        metric=spec.get("metric"),
        num_prefix_tokens=spec["num_prefix_tokens"],
        name=meta["name"],
        classes=meta["classes"],
    )
    return adapter.to(device).explain_mode()


def adapter_record(adapter: ModelAdapter) -> dict[str, Any]:
    """The sidecar's ``adapter`` entry: everything :func:`load_checkpoint` needs to rebuild it."""
    return {
        "kind": adapter.kind,
        "task": adapter.task,
        "metric": adapter.metric,
        "target_layer": adapter.target_layer,
        "layers": list(adapter.layers),
        "num_prefix_tokens": adapter.num_prefix_tokens,
        "mean": list(adapter.mean),
        "std": list(adapter.std),
    }
