"""Step: aggregate per-image scores into result records (mean, bootstrap CI, n, provenance).

    python -m shared.pipeline.results --paper gradcam --scores data/scores/resnet/gradcam.json ... \
        --out reports/gradcam/results.json --config-json '{...}' \
        [--tables-json '[...]'] [--claims-out reports/gradcam/claims.md --records R... \
         --benchmark-json '{...}' --models-json '{...}' [--rehearsal NOTE]]

With ``--claims-out`` the same process also judges the paper's claims
(:func:`shared.pipeline.claims.write_claims`, from the scores files it has read and the step
records ``--records``), writing claims.md and claims.json beside it: the files
``python -m shared.pipeline.claims`` writes, without a second interpreter loading torch and the
config per paper. The claims' bootstrap seed is the config's ``seed`` (as the results').
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

from shared.atomic import write_text
from shared.metrics import bootstrap_max_of_means
from shared.pipeline import table
from shared.runtime import pick_device
from shared.results import Provenance, ResultRecord, provenance, read_records, record_from_values, result_key, write_records


def records_from_scores(scores: dict[str, Any], prov: dict[str, Any], n_resamples: int, ci: float, seed: int) -> list[ResultRecord]:
    """One record per metric of one scores file (see shared.pipeline.score); the file's
    ``inputs`` (checkpoint and dataset hashes), where it has them, join the provenance."""
    ident = {"method": scores["method"], "model": scores["model"], "dataset": scores["dataset"]}
    inputs = scores.get("inputs") or {}
    prov = {**prov, **{k: inputs.get(k) for k in ("model_weights_sha256", "dataset_content_hash") if inputs.get(k)}}
    records = []
    for metric, values in sorted(scores["per_image"].items()):
        # a metric undefined on an image (complexity's entropy of an all-zero map; written as
        # null) leaves that image out of the mean, and the record says how many were left out
        defined = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not defined:
            continue
        record = record_from_values(defined, metric=metric, provenance=prov, n_resamples=n_resamples, ci=ci, seed=seed, **ident)
        if len(defined) < len(values):
            record.extra["undefined"] = len(values) - len(defined)
        records.append(record)
    for metric in ("maxboxacc", "maxboxacc_v2"):
        mba = scores.get(metric)
        if not mba:
            continue
        hits = torch.tensor(mba["hits"], dtype=torch.float64)
        interval = bootstrap_max_of_means(hits, n_resamples=n_resamples, ci=ci, seed=seed)
        best = hits.mean(0).argmax(0)  # v1: the best threshold; v2: one per IoU threshold
        chosen = [mba["thresholds"][int(i)] for i in best.flatten()]
        extra = {"ci": ci, "n_resamples": n_resamples, "bootstrap_seed": seed}
        if hits.ndim == 2:
            extra["best_threshold"] = chosen[0]
        else:
            extra["best_thresholds"] = dict(zip((f"iou{round(100 * t)}" for t in mba["iou_thresholds"]), chosen))
        records.append(
            ResultRecord(
                metric=metric,
                value=interval.value,
                ci_low=interval.low,
                ci_high=interval.high,
                n=interval.n,
                provenance=Provenance(**prov),
                extra=extra,
                **ident,
            )
        )
    return records


def load_results(path: str | Path) -> dict[str, ResultRecord]:
    """Records of a results.json by key."""
    return {result_key(r): r for r in read_records(path)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paper", required=True)
    p.add_argument("--scores", nargs="*", default=[], help="scores files (none for a paper whose numbers are all its steps' records)")
    p.add_argument("--out", required=True)
    p.add_argument("--config-json", required=True, help="seed, device, eval section and config_sha256")
    p.add_argument(
        "--tables-json",
        default="[]",
        help='the paper\'s results tables, written from these records in the same job: [{"file", "metrics", "methods"}]',
    )
    p.add_argument("--claims-out", default=None, help="also judge the paper's claims: claims.md (claims.json is written beside it)")
    p.add_argument("--records", nargs="*", default=[], help="with --claims-out: the paper's step records (per-image values in extra.per_image)")
    p.add_argument("--benchmark-json", default=None, help="with --claims-out: the config's benchmark section, dataset role -> dataset")
    p.add_argument("--models-json", default="{}", help="with --claims-out: model role -> timm architecture (the published numbers' setting)")
    p.add_argument("--papers-dir", default=None, help="with --claims-out: where papers/<id>/paper.yaml lives (default: the repository's)")
    p.add_argument("--rehearsal", default=None, help="with --claims-out: the config's rehearsal note, written above the verdicts and into claims.json")
    args = p.parse_args(argv)
    if args.claims_out and args.benchmark_json is None:
        p.error("--claims-out needs --benchmark-json")
    cfg = json.loads(args.config_json)
    # the device the numbers were computed on, not the config's "auto"
    prov = provenance(cfg, seed=cfg.get("seed"), device=str(pick_device(cfg.get("device"))))
    prov["config_sha256"] = cfg.get("config_sha256", prov["config_sha256"])
    records: list[ResultRecord] = []
    all_scores = []
    for path in args.scores:
        scores = json.loads(Path(path).read_text())
        all_scores.append(scores)
        records.extend(records_from_scores(scores, prov, cfg["eval"]["bootstrap"], cfg["eval"]["ci"], cfg.get("seed", 0)))
    write_records(records, args.out)
    # the tables read nothing but these records (as written, rounded): one job, not one process per table
    written = read_records(args.out) if json.loads(args.tables_json) else []
    for spec in json.loads(args.tables_json):
        md, table_csv = table.render(written, list(spec["metrics"]), list(spec["methods"]) or None, None, None)
        write_text(spec["file"], md)
        write_text(Path(spec["file"]).with_suffix(".csv"), table_csv)
    if args.claims_out:
        from shared.pipeline import claims

        claims.write_claims(
            args.paper,
            args.claims_out,
            all_scores,
            args.records,
            json.loads(args.benchmark_json),
            json.loads(args.models_json),
            seed=cfg.get("seed", 0),
            papers_dir=args.papers_dir or claims.PAPERS_DIR,
            rehearsal=args.rehearsal,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
