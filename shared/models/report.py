"""The model report: test accuracy / Recall@1 of every trained model, with provenance.

    python -m shared.models.report --out reports/models.json data/models/resnet.json ...

Only reproducible fields are written (no timings), so two runs of the workflow give the same
bytes; training times stay in the checkpoint sidecars.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared.atomic import write_text
from shared.results import dumps, provenance

from .checkpoint import read_sidecar

__all__ = ["build_report", "main"]


def model_entry(meta: dict[str, Any]) -> dict[str, Any]:
    """One model's line of the report, from its sidecar."""
    metric = meta.get("primary_metric")
    value = meta["metrics"].get(metric) if metric else None
    gate = meta.get("gate")
    return {
        "arch": meta["model"].get("arch"),
        "task": meta["model"].get("task"),
        "metric_name": metric,
        "value": value,
        "gate": gate,
        "passed": None if value is None or gate is None else bool(value >= gate),
        "metrics": meta["metrics"],
        "dataset": meta.get("dataset", {}).get("name"),
        "dataset_content_hash": meta.get("dataset", {}).get("content_hash"),
        "n_train": meta.get("n_train"),
        "n_test": meta.get("n_test"),
        "seed": meta.get("seed"),
        "device": (meta.get("training") or {}).get("device"),
        "epochs": meta["model"].get("epochs"),
        "weights_sha256": meta["weights"]["sha256"],
        "adapter": {k: meta["adapter"][k] for k in ("kind", "target_layer", "num_prefix_tokens")},
    }


def build_report(sidecars: Sequence[str | os.PathLike[str]], rehearsal: str | None = None) -> dict[str, Any]:
    """The report over the given sidecars: ``{"models": {name: entry}, "provenance": {...}}``.

    ``rehearsal`` (the config's note, set only by a rehearsal config) is written at the top: the
    weights are stand-ins and the gates relaxed, so no number of that run means anything.
    """
    metas = [read_sidecar(p) for p in sidecars]
    models = {m["name"]: model_entry(m) for m in sorted(metas, key=lambda m: m["name"])}
    configs = {m["name"]: m["model"] for m in metas}
    seeds = sorted({m.get("seed") for m in metas if m.get("seed") is not None})
    devices = sorted({str((m.get("training") or {}).get("device")) for m in metas})
    prov = provenance({"models": configs}, seed=seeds[0] if len(seeds) == 1 else None, device=",".join(devices) or None)
    report: dict[str, Any] = {"models": models, "provenance": prov}
    if rehearsal:
        report["rehearsal"] = rehearsal
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.models.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="report to write (reports/models.json)")
    parser.add_argument("sidecars", nargs="+", type=Path, help="checkpoint sidecars data/models/<name>.json")
    parser.add_argument("--rehearsal", default=None, help="the config's rehearsal note (stand-in weights, relaxed gates)")
    args = parser.parse_args(argv)
    report = build_report(args.sidecars, args.rehearsal)
    if args.rehearsal:
        print(f"REHEARSAL: {args.rehearsal}")
    text = dumps(report)
    write_text(args.out, text)
    for name, entry in report["models"].items():
        print(f"{name}: {entry['metric_name']} = {entry['value']:.4f} (gate {entry['gate']}, passed {entry['passed']})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
