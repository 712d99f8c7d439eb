"""Maps and JSON files of the pipeline, without the models: what the aggregation steps (the
leaderboard, agreement tables) read, importable without timm (~4 s a job process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from shared.atomic import atomic_write, write_text


def save_maps(path: str | Path, maps: torch.Tensor, meta: dict[str, Any]) -> None:
    """Write (N, H, W) maps with their metadata (method, model, dataset) atomically."""
    tensors = {"maps": maps.detach().float().cpu().contiguous()}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata={"meta": json.dumps(meta, sort_keys=True)}))


def load_maps(path: str | Path) -> tuple[torch.Tensor, dict[str, Any]]:
    """Read maps written by :func:`save_maps`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("meta", "{}"))
    return load_file(str(path))["maps"], meta


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, with stable key order (diff-friendly, byte-stable)."""
    from shared.results import dumps

    write_text(path, dumps(obj))  # sorted keys, rounded floats: byte-stable and diff-friendly
