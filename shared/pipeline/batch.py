"""Step: explain and score one model's evaluation subset with several methods, in one process.

    python -m shared.pipeline.batch --model data/models/resnet.safetensors --dataset data/datasets/shapes \
        --methods gradcam eigencam ... --maps-dir data/maps/resnet --scores-dir data/scores/resnet \
        --config-json '{...}'

One process per model instead of one per (model, method): loading torch, the model and the
evaluation images once saves a few seconds per method, which dominates on small benchmarks.
The maps and scores are the same files, with the same contents, as `explain` and `score` write.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from shared.paper_plan import method_kwargs
from shared.pipeline.explain import build_for, explain_in_batches
from shared.pipeline.io import eval_batch, save_maps, write_json
from shared.pipeline.score import extended_scoring, input_identity, reference_scores, score_maps
from shared.runtime import seed_everything, setup_from_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--maps-dir", required=True)
    p.add_argument("--scores-dir", required=True)
    p.add_argument("--config-json", required=True)
    args = p.parse_args(argv)
    cfg = json.loads(args.config_json)
    device = setup_from_config(cfg)
    batch = eval_batch(args.model, args.dataset, cfg["eval"]["n_images"], device)
    references = reference_scores(batch, cfg["eval"])  # once for all methods
    # the run's seed seeds ROAD's imputation noise
    eval_cfg = {**cfg["eval"], "seed": int(cfg.get("seed", 0))}
    inputs = input_identity(args.model, args.dataset)  # what every method's scores were computed from
    for method in tqdm(args.methods, desc=f"{batch.adapter.name}: methods", unit="method", disable=None):
        # each method starts from the same random state, whatever ran before it
        seed_everything(int(cfg.get("seed", 0)))
        try:
            explainer = build_for(method, batch.adapter, args.dataset, method_kwargs(method, cfg))
        except (ValueError, KeyError) as exc:
            print(f"error: cannot explain model {args.model} with {method}: {exc}", file=sys.stderr)
            return 2
        maps = explain_in_batches(explainer, batch.images, batch.target, cfg["eval"]["batch_size"], desc=method)
        meta = {"method": method, "model": batch.adapter.name, "dataset": batch.dataset, "n": int(maps.shape[0])}
        save_maps(Path(args.maps_dir) / f"{method}.safetensors", maps, meta)
        scores = score_maps(batch, maps, eval_cfg, references, extended=extended_scoring(batch.adapter.name, method, cfg["eval"]))
        scores.update(meta)
        scores["inputs"] = inputs
        write_json(Path(args.scores_dir) / f"{method}.json", scores)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
