"""Step: explain a model's evaluation subset with one registered method; write the maps.

    python -m shared.pipeline.explain --method gradcam --model data/models/resnet.safetensors \
        --dataset data/datasets/shapes --out data/maps/resnet/gradcam.safetensors --config-json '{...}'
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys

import torch
from tqdm import tqdm

from shared.explain import get_method
from shared.paper_plan import method_kwargs
from shared.pipeline.io import eval_batch, save_maps
from shared.runtime import setup_from_config


def explain_in_batches(explainer, images: torch.Tensor, target, batch_size: int, desc: str = "explain") -> torch.Tensor:
    """Run ``explainer`` over ``images`` in batches (memory bound), with a progress bar."""
    out = []
    n = images.shape[0]
    for start in tqdm(range(0, n, batch_size), desc=desc, unit="batch", disable=None):
        idx = torch.arange(start, min(start + batch_size, n), device=images.device)
        out.append(explainer(images[idx], target.subset(idx)))
    maps = torch.cat(out)
    if not bool(torch.isfinite(maps).all()):
        raise FloatingPointError(f"{desc} produced NaN or infinite maps")
    return maps


def build_for(method: str, adapter, dataset_dir: str, settings: dict | None = None):
    """Build ``method`` on ``adapter`` with the constructor arguments ``settings`` (the config's
    ``methods.<method>`` less ``models``: :func:`shared.paper_plan.method_kwargs`). Methods that
    need training data (DAAM's self-supervised k-NN memory bank) declare a ``dataset`` argument
    and get the model's dataset directory."""
    spec = get_method(method)
    parameters = inspect.signature(spec.factory).parameters
    extra = {"dataset": dataset_dir} if "dataset" in parameters else {}
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(parameters))
    if unknown:
        known = sorted(p for p in parameters if p not in ("self", "adapter", "dataset"))
        raise ValueError(
            f"config methods.{method} sets {', '.join(unknown)}, which {method!r} does not take; "
            f"its settings are: {', '.join(known) or 'none'} (and models: [...])"
        )
    return spec.build(adapter, **extra, **settings)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", required=True)
    p.add_argument("--model", required=True, help="checkpoint .safetensors (with its .json sidecar)")
    p.add_argument("--dataset", required=True, help="dataset directory")
    p.add_argument("--out", required=True)
    p.add_argument("--config-json", required=True, help="run-time settings + eval section")
    args = p.parse_args(argv)
    cfg = json.loads(args.config_json)
    device = setup_from_config(cfg)
    batch = eval_batch(args.model, args.dataset, cfg["eval"]["n_images"], device)
    try:
        explainer = build_for(args.method, batch.adapter, args.dataset, method_kwargs(args.method, cfg))
    except (ValueError, KeyError) as exc:
        print(f"error: cannot explain model {args.model} with {args.method}: {exc}", file=sys.stderr)
        return 2
    maps = explain_in_batches(explainer, batch.images, batch.target, cfg["eval"]["batch_size"], desc=f"{args.method}")
    save_maps(
        args.out,
        maps,
        {"method": args.method, "model": batch.adapter.name, "dataset": batch.dataset, "n": int(maps.shape[0])},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
