"""Quality gate: refuse to explain a model whose test metric is below the configured minimum.

    python -m shared.models.gate --sidecar data/models/resnet.json --out data/models/resnet.gate.json

Explaining a bad model proves nothing, so every explanation rule depends on the gate file,
which is written only when the model passes. The checkpoint is loaded (SHA-256 and
architecture checked) so that a gate never vouches for weights that do not load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.atomic import write_text

from .checkpoint import load_checkpoint, read_sidecar

__all__ = ["GateError", "check_gate", "main"]


class GateError(RuntimeError):
    """The model's test metric is below its gate (or the sidecar has no metric / gate)."""


def check_gate(sidecar: str | os.PathLike[str], gate: float | None = None) -> dict[str, Any]:
    """The gate record of a checkpoint; raise :class:`GateError` if it fails.

    ``gate`` overrides the minimum recorded in the sidecar (the model config's ``gate``).
    """
    meta = read_sidecar(sidecar)
    load_checkpoint(sidecar)  # raises CheckpointError with a remedy if the weights are unusable
    name = meta["name"]
    metric = meta.get("primary_metric")
    threshold = meta.get("gate") if gate is None else gate
    if metric is None or metric not in meta["metrics"]:
        raise GateError(f"{sidecar}: the sidecar records no primary metric; retrain model {name!r}")
    if threshold is None:
        raise GateError(f"{sidecar}: model {name!r} has no gate in its config (models.{name}.gate)")
    value = float(meta["metrics"][metric])
    record = {
        "model": name,
        "metric": metric,
        "value": value,
        "gate": float(threshold),
        "passed": value >= float(threshold),
        "dataset": meta.get("dataset", {}),
        "weights_sha256": meta["weights"]["sha256"],
    }
    if not record["passed"]:
        raise GateError(
            f"model {name!r} fails its quality gate: {metric} = {value:.4f} < {float(threshold):.4f} "
            f"(on {meta.get('dataset', {}).get('name')} {meta['model'].get('test_split', 'test')}). Explaining a "
            f"bad model proves nothing: train it longer or change it in the config's models.{name} section "
            f"(epochs, lr, arch_kwargs), then rerun `snakemake data/models/{name}.gate.json`"
        )
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.models.gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sidecar", required=True, type=Path, help="checkpoint sidecar data/models/<name>.json")
    parser.add_argument("--out", required=True, type=Path, help="gate record to write when the model passes")
    parser.add_argument("--gate", type=float, default=None, help="override the sidecar's minimum")
    args = parser.parse_args(argv)
    try:
        record = check_gate(args.sidecar, args.gate)
    except GateError as exc:
        print(f"GATE FAILED: {exc}", file=sys.stderr)
        return 1
    write_text(args.out, json.dumps(record, indent=2, sort_keys=True) + "\n")
    print(f"gate passed: {record['model']} {record['metric']} = {record['value']:.4f} >= {record['gate']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
