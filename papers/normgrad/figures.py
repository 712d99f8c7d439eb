"""Figures and the class-sensitivity table of "There and Back Again" (Rebuffi et al., CVPR 2020).

Steps (declared in papers/normgrad/paper.yaml, run through ``shared.figure_step.step_main``), on
each model's evaluation subset of the classification dataset::

    python -m papers.normgrad.figures class_sensitivity --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... --methods normgrad normgrad_meta gradcam gradcam_meta \
        --out table=reports/normgrad/class_sensitivity.md records=reports/normgrad/class_sensitivity.json \
        --config-json '{...}'
    python -m papers.normgrad.figures layers --models data/models/resnet.safetensors --datasets <its dataset> \
        --methods gradcam_b1 ... gradcam_b4 normgrad_b1 ... normgrad_b4 normgrad_combined --maps-dir data/maps \
        --out figure=reports/normgrad/layers.png --config-json '{...}'

``layers`` (paper Fig. 3): Grad-CAM and NormGrad at the output of every block of the ResNet
(``gradcam_b<k>``, ``normgrad_b<k>``: its stages) and NormGrad combined over the stages, one
column per method of the step, from the shared maps (``data/maps/<model>/<method>.safetensors``);
rows are the first test images; each column title gives the method's pointing game / energy
pointing game over the whole evaluation subset.
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

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from shared.plotting import Recorder, applies, class_explainer, in_chunks, show, undefined_as_zero, write_records_and_table  # noqa: E402
from shared.explain import normalize_maps  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.metrics import class_sensitivity, energy_pointing_game, pointing_game  # noqa: E402

CLASS_SENSITIVITY_METRICS = ["class_sensitivity", "class_sensitivity_pointing_disagreement", "class_sensitivity_constant_map"]


def column_title(method: str) -> str:
    """``gradcam_b2`` -> ``gradcam L2`` (the block variants); other names unchanged."""
    return re.sub(r"_b(\d+)$", r" L\1", method)


def layers_figure(batch, maps: dict[str, torch.Tensor], n_show: int = 4) -> plt.Figure:
    """Rows: images; columns: the image, then each method's map (Grad-CAM and NormGrad per block, combined).

    ``maps[method]``: the method's maps (N, H, W) over the whole evaluation subset of ``batch``
    (the shared maps); the column titles score all N, the panels show the first ``n_show``.
    """
    adapter, images = batch.adapter, batch.images
    masks, boxes = batch.split.masks.to(images.device), batch.split.boxes.to(images.device)
    methods = list(maps)
    k = min(n_show, images.shape[0])
    fig, axes = plt.subplots(k, len(methods) + 1, figsize=(0.95 * (len(methods) + 1), 1.05 * k + 0.3), squeeze=False)
    for c, m in enumerate(methods, start=1):
        method_maps = maps[m].to(images.device)
        pg = float(pointing_game(method_maps, masks).mean())
        epg = float(energy_pointing_game(method_maps, boxes).mean())
        shown = normalize_maps(method_maps[:k].cpu())
        for r in range(k):
            show(axes[r, c], images[r], shown[r], title=f"{column_title(m)}\nPG {pg:.2f} EPG {epg:.2f}" if r == 0 else None)
    for r in range(k):
        show(axes[r, 0], images[r], title=f"{adapter.name}: {batch.split.class_names[r]}" if r == 0 else batch.split.class_names[r])
    fig.suptitle(f"Grad-CAM (gradcam L·) and NormGrad (normgrad L·) at each stage; PG / EPG over n = {images.shape[0]} images", fontsize=7)
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 0.94))  # room for the suptitle
    return fig


def layers(ctx: StepContext, n_show: int = 4) -> None:
    """Fig. 3: the step's methods (per-block Grad-CAM and NormGrad, combined) on the step's one model, from the shared maps."""
    figure_path = ctx.output("figure")
    if len(ctx.models) != 1:
        raise ValueError(f"layers shows one model; the step lists {len(ctx.models)}")
    batch = ctx.eval_batch(0)
    name, n = Path(ctx.models[0]).stem, batch.images.shape[0]  # shared maps: data/maps/<checkpoint stem>/
    maps = {}
    for m in ctx.methods:
        if not applies(m, batch.adapter):
            continue
        maps[m] = ctx.maps(name, m)
        if maps[m].shape[0] != n:
            raise ValueError(
                f"{ctx.maps_dir / name / m}.safetensors holds {maps[m].shape[0]} maps but the evaluation subset has "
                f"{n} images: recompute the maps with this config's eval.n_images"
            )
    if not maps:
        raise ValueError(f"none of the methods {ctx.methods} applies to {batch.adapter.name}")
    fig = layers_figure(batch, maps, n_show)
    save_figure(fig, figure_path)
    plt.close(fig)


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


def class_sensitivity_step(ctx: StepContext) -> None:
    """Table 3: class sensitivity of every method of the step, per classifier."""
    table_path, records_path = ctx.output("table"), ctx.output("records")
    methods = list(ctx.methods)
    rec = Recorder(ctx.config)
    for i, path in enumerate(ctx.models):
        batch = ctx.eval_batch(i)
        if batch.adapter.task != "classifier":
            raise ValueError(f"{path} is an embedding model: class sensitivity needs a classifier's classes")
        class_sensitivity_records(batch, methods, ctx.eval["batch_size"], rec)
    write_records_and_table(
        rec.records, records_path, table_path, CLASS_SENSITIVITY_METRICS, methods,
        "Class sensitivity: Spearman correlation of the top- and bottom-class maps (lower = more class-sensitive) "
        "and share of images whose two maxima disagree (higher = more class-sensitive); constant maps count as correlation 0 (their share: last column)",
    )


STEPS = {"class_sensitivity": class_sensitivity_step, "layers": layers}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
