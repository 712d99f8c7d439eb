"""T-TAME's experiment: train the attention head per classifier, explain the evaluation subset in
one forward pass, score the maps with the suite's own metric functions (paper, Tables on AD/IC at
100 / 50 / 15 % and ROAD).

The step ``train`` (declared in papers/ttame/paper.yaml, run through ``shared.figure_step.step_main``)::

    python -m papers.ttame.figures train --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... --methods gradcam gradcampp scorecam --maps-dir data/maps \
        --out records=reports/ttame/ttame.json table=reports/ttame/faithfulness.md \
              figure=reports/ttame/qualitative.png --config-json '{...}'

Per model: the head (:mod:`papers.ttame.method`) is trained on the first ``n_train`` images of the
model's training split (settings: ``n_train``, ``epochs``, ``batch_size``, ``lr``, ``n_layers``, ``cache_features``),
deterministically from the config's seed; then the maps of the evaluation subset's ground-truth
classes (the pipeline's targets, ``ClassTarget(labels)``) come from one forward pass and are
scored exactly as ``shared.pipeline.score.score_maps`` scores a shared method's maps:
``average_drop``, ``increase_in_confidence`` (map kept at 100 %), ``average_drop_50``,
``increase_in_confidence_50``, ``average_drop_15``, ``increase_in_confidence_15``,
``pointing_game``, ``relevance_mass``, and with setting ``road`` also ``road_morf`` / ``road_lerf``.
Records ``{dataset}/{model}/ttame/{metric}`` with per-image values (``extra.per_image``, the eval
subset's order) and the training curve (``extra.training``). The table puts T-TAME beside the
step's baseline methods, whose numbers are recomputed here from their shared maps with the same
functions (so they equal their scores files). The figure shows the first images, T-TAME's maps and
the first baseline's (Grad-CAM's) shared maps.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from shared import metrics  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.explain import normalize_maps  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.pipeline.io import training_rows  # noqa: E402
from shared.plotting import Recorder, applies, heatmap_colorbar, map_grid, method_label, row_label, show  # noqa: E402

from papers.ttame.method import train_head, ttame_maps  # noqa: E402

METHOD = "ttame"
FAITHFULNESS = (
    "average_drop",
    "increase_in_confidence",
    "average_drop_50",
    "increase_in_confidence_50",
    "average_drop_15",
    "increase_in_confidence_15",
)
LOCALISATION = ("pointing_game", "relevance_mass")
ROAD = ("road_morf", "road_lerf")
N_SHOW = 4
"""Images shown per model in the figure."""


def scores(batch, maps: torch.Tensor, eval_cfg: dict[str, Any], road: bool) -> dict[str, torch.Tensor]:
    """Per-image metrics of ``maps`` on ``batch``: the scores files' own functions
    (``shared.pipeline.score``), so T-TAME's numbers compare with the baselines'."""
    from shared.pipeline.score import drop_increase, road_metrics, score_fn_for

    maps = maps.to(batch.images.device)
    masks = batch.split.masks.to(maps.device)
    max_batch = int(eval_cfg["batch_size"])
    base = metrics.scores_in_chunks(batch.images, score_fn_for(batch), max_batch)
    out = {m: v for m, v in drop_increase(batch, maps, max_batch, base).items() if m in FAITHFULNESS}
    out["pointing_game"] = metrics.pointing_game(maps, masks)
    out["relevance_mass"] = metrics.relevance_mass_accuracy(maps, masks)
    if road:
        out.update(road_metrics(batch, maps, eval_cfg))
    return out


def qualitative_figure(shown: list[tuple[str, torch.Tensor, torch.Tensor, str, torch.Tensor | None]]) -> plt.Figure:
    """Per model two rows over its first images: T-TAME's map and the baseline's shared map."""
    fig, axes = map_grid(2 * len(shown), N_SHOW, panel=1.0)
    for r, (model, images, ours, baseline, theirs) in enumerate(shown):
        for c in range(N_SHOW):
            top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
            if c >= images.shape[0]:
                top.axis("off")
                bottom.axis("off")
                continue
            show(top, images[c], ours[c])
            if theirs is None:
                show(bottom, images[c], None)
            else:
                show(bottom, images[c], normalize_maps(theirs[c : c + 1])[0])
        row_label(axes[2 * r, 0], f"{model}\nT-TAME")
        row_label(axes[2 * r + 1, 0], f"{model}\n{method_label(baseline)}")
    heatmap_colorbar(fig, axes)
    fig.suptitle("T-TAME (trained head, one forward pass) and a shared baseline, ground-truth class", fontsize=8)
    return fig


def train(ctx: StepContext) -> None:
    """Train the head per model, explain, score; records, table and figure."""
    from shared.pipeline.io import write_text
    from shared.pipeline.table import render
    from shared.results import write_records

    settings = ctx.settings  # paper.yaml's config_schema: every key has a default
    eval_cfg = {**ctx.eval, "seed": ctx.seed}
    rec, baselines = Recorder(ctx.config), Recorder(ctx.config)
    shown = []
    for i, path in enumerate(ctx.models):
        batch = ctx.eval_batch(i)
        adapter = batch.adapter
        if settings["models"] is not None and adapter.name not in settings["models"]:
            continue
        if adapter.task != "classifier":
            raise ValueError(f"{path} is an embedding model: T-TAME trains a head against a classifier's predictions")
        images = training_rows(path, ctx.datasets[i], settings["n_train"]).images.to(batch.images.device)
        result = train_head(
            adapter, images, n_layers=int(settings["n_layers"]), epochs=int(settings["epochs"]),
            batch_size=int(settings["batch_size"]), lr=float(settings["lr"]), seed=ctx.seed,
            cache_features=bool(settings["cache_features"]),
        )
        labels = batch.split.labels.to(batch.images.device)
        chunk = int(ctx.eval["batch_size"])
        maps = torch.cat([ttame_maps(adapter, result.head, result.layers, batch.images[k : k + chunk], labels[k : k + chunk]) for k in range(0, labels.numel(), chunk)])
        training = {"layers": result.layers, "n_train": int(images.shape[0]), "epochs": int(settings["epochs"]), "history": result.history}
        for metric, values in scores(batch, maps, eval_cfg, bool(settings["road"])).items():
            r = rec.add(values, metric=metric, method=METHOD, model=adapter.name, dataset=batch.dataset)
            rec.records[-1] = replace(r, extra={**r.extra, "training": training})
        theirs = None
        for m in ctx.methods:
            if not applies(m, adapter) or not ctx.has_maps(adapter.name, m):
                continue  # a pair the profile leaves out (the rehearsal's Score-CAM): "not evaluable"
            their_maps = ctx.maps(adapter.name, m)
            theirs = their_maps if theirs is None else theirs
            for metric, values in scores(batch, their_maps, eval_cfg, False).items():
                baselines.add(values, metric=metric, method=m, model=adapter.name, dataset=batch.dataset)
        first = next((m for m in ctx.methods if applies(m, adapter) and ctx.has_maps(adapter.name, m)), "gradcam")
        shown.append((adapter.name, batch.images[:N_SHOW].cpu(), maps[:N_SHOW].cpu(), first, None if theirs is None else theirs[:N_SHOW].cpu()))
    write_records(rec.records, ctx.output("records"))
    columns = [*FAITHFULNESS, *LOCALISATION, *(ROAD if settings["road"] else ())]
    md, table_csv = render([*rec.records, *baselines.records], columns, [METHOD, *ctx.methods], None, "T-TAME and the baselines (AD/IC at 100 / 50 / 15 % of the map kept)")
    curves = ["", "Training loss per epoch (mean over steps: total = 1.5 CE + 2 area + 0.01 smoothness):", ""]
    for r in rec.records:
        if r.metric == "average_drop":
            t = r.extra["training"]
            curves.append(f"- {r.model} ({t['n_train']} images, layers {', '.join(t['layers'])}): " + ", ".join(f"{h['loss']:.3f}" for h in t["history"]))
    write_text(ctx.output("table"), md + "\n".join(curves) + "\n")
    write_text(Path(ctx.output("table")).with_suffix(".csv"), table_csv)
    fig = qualitative_figure(shown)
    save_figure(fig, ctx.output("figure"))
    plt.close(fig)


STEPS = {"train": train}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
