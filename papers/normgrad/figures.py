"""Figures and the class-sensitivity table of "There and Back Again" (Rebuffi et al., CVPR 2020).

    python -m papers.normgrad.figures layers --models data/models/resnet.safetensors \
        --dataset data/datasets/shapes --out reports/normgrad/layers.png --config-json '{...}'
    python -m papers.normgrad.figures class_sensitivity --models data/models/resnet.safetensors ... \
        --dataset data/datasets/shapes --methods normgrad,normgrad_meta,gradcam,gradcam_meta \
        --out reports/normgrad/class_sensitivity.md --records reports/normgrad/class_sensitivity.json \
        --config-json '{...}'

``layers`` (paper Fig. 3): Grad-CAM and NormGrad at every stage of the ResNet and NormGrad
combined over the stages, on the first test images; each column title gives the method's
pointing game / energy pointing game over the whole evaluation subset.
``class_sensitivity`` (paper Table 3): for each image, maps for the highest- and the
lowest-scoring class (``shared.metrics.class_sensitivity``); the record ``class_sensitivity`` is
the mean Spearman correlation between the two (lower = more class-sensitive), and
``class_sensitivity_pointing_disagreement`` the share of images whose two maxima lie farther
apart than the pointing-game tolerance (higher = more class-sensitive). A constant map (e.g.
Grad-CAM's ReLU zeroes the whole map of a class with no positive evidence) has no ranking: its
Spearman correlation is undefined; we count it as 0 ("no association") and report the share of
such images as ``class_sensitivity_constant_map``.
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from shared.plotting import Recorder, applies, class_explainer, in_chunks, show, undefined_as_zero, write_records_and_table  # noqa: E402
from papers.normgrad.method import default_layers  # noqa: E402
from shared.explain import normalize_maps  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.metrics import class_sensitivity, energy_pointing_game, pointing_game  # noqa: E402

CLASS_SENSITIVITY_METHODS = ["normgrad", "normgrad_meta", "gradcam", "gradcam_meta"]
CLASS_SENSITIVITY_METRICS = ["class_sensitivity", "class_sensitivity_pointing_disagreement", "class_sensitivity_constant_map"]


def stage_methods(n_stages: int) -> list[str]:
    """Grad-CAM per stage, NormGrad per stage, NormGrad combined: the layer figure's columns."""
    return [f"gradcam_stage{k}" for k in range(1, n_stages + 1)] + [f"normgrad_stage{k}" for k in range(1, n_stages + 1)] + ["normgrad_combined"]


def layers_figure(batch, batch_size: int, n_show: int = 4) -> plt.Figure:
    """Rows: images; columns: the image, then Grad-CAM and NormGrad per stage and combined."""
    adapter, images = batch.adapter, batch.images
    labels = batch.split.labels.to(images.device)
    masks, boxes = batch.split.masks.to(images.device), batch.split.boxes.to(images.device)
    n_stages = min(4, len(default_layers(adapter)))  # the registered stage methods go up to 4
    methods = stage_methods(n_stages)
    k = min(n_show, images.shape[0])
    fig, axes = plt.subplots(k, len(methods) + 1, figsize=(0.95 * (len(methods) + 1), 1.05 * k + 0.3), squeeze=False)
    for c, m in enumerate(methods, start=1):
        maps = in_chunks(class_explainer(m, adapter), images, labels, batch_size)
        pg = float(pointing_game(maps, masks).mean())
        epg = float(energy_pointing_game(maps, boxes).mean())
        shown = normalize_maps(maps[:k].cpu())
        for r in range(k):
            show(axes[r, c], images[r], shown[r], title=f"{m.replace('_stage', ' L')}\nPG {pg:.2f} EPG {epg:.2f}" if r == 0 else None)
    for r in range(k):
        show(axes[r, 0], images[r], title=f"{adapter.name}: {batch.split.class_names[r]}" if r == 0 else batch.split.class_names[r])
    fig.suptitle(f"Grad-CAM (gradcam L·) and NormGrad (normgrad L·) at each stage; PG / EPG over n = {images.shape[0]} images", fontsize=7)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 0.94))  # room for the suptitle
    return fig


def class_sensitivity_records(batch, methods: list[str], batch_size: int, rec: Recorder) -> None:
    """Top- vs bottom-class maps of every applicable method; records ``class_sensitivity`` etc."""
    adapter, images = batch.adapter, batch.images
    with torch.no_grad():
        logits = torch.cat([adapter(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]).float()
    for m in methods:
        if not applies(m, adapter):
            continue
        explain = class_explainer(m, adapter)
        result = class_sensitivity(images, logits, lambda x, c, explain=explain: in_chunks(explain, x, c, batch_size))
        correlation, constant = undefined_as_zero(result.correlation)
        rec.add(correlation, metric="class_sensitivity", method=m, model=adapter.name, dataset=batch.dataset)
        rec.add(constant, metric="class_sensitivity_constant_map", method=m, model=adapter.name, dataset=batch.dataset)
        rec.add(result.pointing_disagreement, metric="class_sensitivity_pointing_disagreement", method=m, model=adapter.name, dataset=batch.dataset)


def main(argv: list[str] | None = None) -> int:
    from shared.pipeline.io import eval_batch
    from shared.runtime import setup_from_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["layers", "class_sensitivity"])
    p.add_argument("--models", nargs="+", required=True, help="classifier checkpoints (.safetensors)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--methods", default=",".join(CLASS_SENSITIVITY_METHODS))
    p.add_argument("--out", required=True, help="layers: the figure (.png); class_sensitivity: the table (.md)")
    p.add_argument("--records", help="class_sensitivity: result records (.json)")
    p.add_argument("--config-json", required=True)
    args = p.parse_args(argv)
    cfg = json.loads(args.config_json)
    device = setup_from_config(cfg)
    n, bs = cfg["eval"]["n_images"], cfg["eval"]["batch_size"]
    if args.kind == "layers":
        batch = eval_batch(args.models[0], args.dataset, n, device)
        fig = layers_figure(batch, bs)
        save_figure(fig, args.out)
        plt.close(fig)
        return 0
    if not args.records:
        p.error("class_sensitivity writes result records: give --records reports/normgrad/class_sensitivity.json")
    methods = [m for m in args.methods.split(",") if m]
    rec = Recorder(cfg)
    for path in args.models:
        batch = eval_batch(path, args.dataset, n, device)
        if batch.adapter.task != "classifier":
            raise ValueError(f"{path} is an embedding model: class sensitivity needs a classifier's classes")
        class_sensitivity_records(batch, methods, bs, rec)
    write_records_and_table(
        rec.records, args.records, args.out, CLASS_SENSITIVITY_METRICS, methods,
        "Class sensitivity: Spearman correlation of the top- and bottom-class maps (lower = more class-sensitive) "
        "and share of images whose two maxima disagree (higher = more class-sensitive); constant maps count as correlation 0 (their share: last column)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
