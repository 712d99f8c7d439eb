"""The experiment of "How explainable are adversarially-robust CNNs?" (Nourelahi et al., arXiv
2205.13042): the same attribution methods on a vanilla CNN and on its adversarially-robust
counterpart, scored with the same metrics.

The step ``compare`` (papers/robust_xai/paper.yaml, run through ``shared.figure_step.step_main``)::

    python -m papers.robust_xai.figures compare --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... --out records=reports/robust_xai/robust_xai.json \
        table=reports/robust_xai/explainability.md figure=reports/robust_xai/maps.png --config-json '{...}'

Per classifier: the vanilla model is the checkpoint; the robust model is a copy fine-tuned from it
by L-inf PGD adversarial training (:mod:`papers.robust_xai.method`; settings ``n_train``,
``epochs``, ``batch_size``, ``lr``, ``epsilon``, ``step_size``, ``pgd_steps``), deterministic from
the config's seed. Both are checked (records ``robust_xai@<kind>/clean_accuracy`` and
``pgd_accuracy``: PGD with ``eval_pgd_steps`` steps, no random start, at the same epsilon, per
image). Then each method of ``methods`` (registered, built with ``shared.pipeline.explain.build_for``
and the settings' ``method_settings``) explains the first ``n_images`` of the evaluation subset
for the ground-truth class on both models, and the maps are scored as
``shared.pipeline.score.score_maps`` scores them (each model kind with its own reference scores):
``deletion``, ``insertion`` (AUC of the class probability), ``pointing_game``, ``relevance_mass``
(against the object masks). Records ``{dataset}/{model}/{method}@{vanilla|robust}/{metric}`` with
per-image values (``extra.per_image``, the eval subset's order).
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
from shared.explain import ClassTarget, normalize_maps  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.pipeline.io import training_rows  # noqa: E402
from shared.plotting import Recorder, applies, heatmap_colorbar, map_grid, method_label, row_label, show  # noqa: E402

from papers.robust_xai.method import accuracy_per_image, adversarial_fine_tune, pgd  # noqa: E402

PAPER = "robust_xai"
KINDS = ("vanilla", "robust")
METRICS = ("deletion", "insertion", "pointing_game", "relevance_mass")
N_SHOW = 2
"""Images shown per model in the figure."""


def subset(batch, n: int | None):
    """The first ``n`` rows of an evaluation batch (all when ``n`` is None)."""
    if n is None or n >= batch.images.shape[0]:
        return batch
    split = batch.split
    rows = replace(
        split, images=split.images[:n], labels=split.labels[:n], masks=split.masks[:n], boxes=split.boxes[:n],
        image_ids=list(split.image_ids[:n]), objects=split.objects[:n], class_names=list(split.class_names[:n]),
        class_splits=None if split.class_splits is None else list(split.class_splits[:n]),
    )
    return replace(batch, split=rows, images=batch.images[:n], target=ClassTarget(rows.labels.to(batch.images.device)))


def score(batch, maps: torch.Tensor, eval_cfg: dict[str, Any], ref) -> dict[str, torch.Tensor]:
    """Per-image deletion, insertion, pointing game and relevance mass with the scores files' own
    functions (``shared.pipeline.score``; ``ref``: the model's reference scores)."""
    from shared.pipeline.score import deletion_insertion

    maps = maps.to(batch.images.device)
    masks = batch.split.masks.to(maps.device)
    return {
        **deletion_insertion(batch, maps, eval_cfg, ref),
        "pointing_game": metrics.pointing_game(maps, masks),
        "relevance_mass": metrics.relevance_mass_accuracy(maps, masks),
    }


def maps_figure(shown: list[tuple[str, torch.Tensor, list[str], dict[tuple[str, str], torch.Tensor]]]) -> plt.Figure:
    """Per model and image, one row per model kind: the image, then each method's map."""
    n_methods = max(len(methods) for _, _, methods, _ in shown)
    rows = sum(2 * images.shape[0] for _, images, _, _ in shown)
    fig, axes = map_grid(rows, 1 + n_methods, panel=1.0)
    r = 0
    for model, images, methods, maps in shown:
        for i in range(images.shape[0]):
            for kind in KINDS:
                show(axes[r, 0], images[i], None, title="image" if r == 0 else None)
                row_label(axes[r, 0], f"{model} #{i}\n{kind}")
                for c in range(n_methods):
                    ax = axes[r, 1 + c]
                    if c >= len(methods):
                        ax.axis("off")
                        continue
                    heat = normalize_maps(maps[(methods[c], kind)][i : i + 1])[0]
                    show(ax, images[i], heat, title=method_label(methods[c]) if r == 0 else None)
                r += 1
    heatmap_colorbar(fig, axes)
    fig.suptitle("Vanilla and adversarially fine-tuned (robust) model, same images, ground-truth class", fontsize=8)
    return fig


def compare(ctx: StepContext) -> None:
    """Fine-tune the robust copy per model, check it, explain both kinds, score; records, table, figure."""
    from shared.pipeline.explain import build_for, explain_in_batches
    from shared.pipeline.io import write_text
    from shared.pipeline.score import reference_scores
    from shared.pipeline.table import render
    from shared.results import write_records

    s = ctx.settings
    eval_cfg = {**ctx.eval, "seed": ctx.seed}
    epsilon = float(s["epsilon"])
    step_size = float(s["step_size"]) if s["step_size"] is not None else 2.5 * epsilon / int(s["pgd_steps"])
    chunk = int(ctx.eval["batch_size"])
    rec = Recorder(ctx.config)
    shown, training_notes, methods_run = [], [], []
    for i, path in enumerate(ctx.models):
        full = ctx.eval_batch(i)
        vanilla = full.adapter
        if s["models"] is not None and vanilla.name not in s["models"]:
            continue
        if vanilla.task != "classifier":
            raise ValueError(f"{path} is an embedding model: the paper compares classifiers (cross-entropy PGD)")
        rows = training_rows(path, ctx.datasets[i], s["n_train"])
        images, labels = rows.images.to(full.images.device), rows.labels.to(full.images.device)
        tuned = adversarial_fine_tune(
            vanilla, images, labels, epochs=int(s["epochs"]), batch_size=int(s["batch_size"]), lr=float(s["lr"]),
            epsilon=epsilon, step_size=step_size, pgd_steps=int(s["pgd_steps"]), seed=ctx.seed,
        )
        robust = tuned.model
        training = {"n_train": int(images.shape[0]), "epochs": int(s["epochs"]), "epsilon": epsilon, "step_size": step_size,
                    "pgd_steps": int(s["pgd_steps"]), "lr": float(s["lr"]), "history": tuned.history}
        batch = subset(full, s["n_images"])
        y = batch.split.labels.to(batch.images.device)
        eval_step = 2.5 * epsilon / int(s["eval_pgd_steps"])
        models = {"vanilla": vanilla, "robust": robust}
        for kind, model in models.items():
            adv = torch.cat([pgd(model, batch.images[k : k + chunk], y[k : k + chunk], epsilon, eval_step, int(s["eval_pgd_steps"])) for k in range(0, y.numel(), chunk)])
            for metric, values in (("clean_accuracy", accuracy_per_image(model, batch.images, y)), ("pgd_accuracy", accuracy_per_image(model, adv, y))):
                r = rec.add(values, metric=metric, method=f"{PAPER}@{kind}", model=vanilla.name, dataset=batch.dataset)
                if kind == "robust":
                    rec.records[-1] = replace(r, extra={**r.extra, "training": training})
        methods = [m for m in s["methods"] if applies(m, vanilla)]
        methods_run += [m for m in methods if m not in methods_run]
        shown_maps = {}
        for kind, model in models.items():
            kb = replace(batch, adapter=model)
            ref = reference_scores(kb, eval_cfg)
            for m in methods:
                explainer = build_for(m, model, ctx.datasets[i], (s["method_settings"] or {}).get(m))
                maps = explain_in_batches(explainer, kb.images, kb.target, chunk, desc=f"{m}@{kind}")
                for metric, values in score(kb, maps, eval_cfg, ref).items():
                    rec.add(values, metric=metric, method=f"{m}@{kind}", model=vanilla.name, dataset=batch.dataset)
                shown_maps[(m, kind)] = maps[:N_SHOW].cpu()
        shown.append((vanilla.name, batch.images[:N_SHOW].cpu(), methods, shown_maps))
        acc = {(r.method, r.metric): r.value for r in rec.records if r.model == vanilla.name and r.method.startswith(PAPER)}
        training_notes.append(
            f"- {vanilla.name}: {training['n_train']} training images, {training['epochs']} epoch(s), ε = {epsilon:.4f}, "
            f"{training['pgd_steps']} PGD steps of {step_size:.4f}; clean accuracy vanilla {acc[(PAPER + '@vanilla', 'clean_accuracy')]:.3f} "
            f"/ robust {acc[(PAPER + '@robust', 'clean_accuracy')]:.3f}; PGD-{int(s['eval_pgd_steps'])} accuracy vanilla "
            f"{acc[(PAPER + '@vanilla', 'pgd_accuracy')]:.3f} / robust {acc[(PAPER + '@robust', 'pgd_accuracy')]:.3f}"
        )
    write_records(rec.records, ctx.output("records"))
    order = [f"{m}@{k}" for m in methods_run for k in KINDS]
    md, table_csv = render(rec.records, list(METRICS), order, None, "Vanilla vs robust (PGD fine-tuned) model per method")
    acc_md, _ = render(rec.records, ["clean_accuracy", "pgd_accuracy"], [f"{PAPER}@{k}" for k in KINDS], None, "Accuracy on the evaluation images: clean and under PGD")
    write_text(ctx.output("table"), md + "\n" + acc_md + "\nAdversarial fine-tuning:\n\n" + "\n".join(training_notes) + "\n")
    write_text(Path(ctx.output("table")).with_suffix(".csv"), table_csv)
    fig = maps_figure(shown)
    save_figure(fig, ctx.output("figure"))
    plt.close(fig)


STEPS = {"compare": compare}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
