"""ICE's fidelity experiment: the approximated model (a layer replaced by its concept reconstruction)
against the number of concepts k, for NMF (NCAVs), PCA and k-means (ACE's clustering).

The step ``fidelity`` (papers/ice/paper.yaml), on each classifier::

    python -m papers.ice.figures fidelity --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... \
        --out figure=reports/ice/fidelity.png records=reports/ice/fidelity.json table=reports/ice/fidelity.md \
        --config-json '{...}'

Concepts are fitted on the first ``n_fit`` images of the model's training split and evaluated on
its evaluation subset (held out). Records (method ``ice_<reducer>``, per image in
``extra.per_image``, image order of the evaluation subset): ``agreement_k<k>``, ``accuracy_k<k>``,
``fidelity_error_k<k>`` for every k of the sweep; the same at the settings' main ``k`` without the
suffix (``agreement``, ...), and at the sweep's smallest and largest k as ``<metric>_kmin`` /
``<metric>_kmax`` (claim keys that do not change with the sweep); ``classifier`` / ``accuracy``:
the original model's accuracy on the same images.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from papers.ice.method import REDUCERS, ice_fidelity  # noqa: E402
from shared.concepts import concept_layer  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.pipeline.io import training_rows  # noqa: E402
from shared.plotting import Recorder  # noqa: E402

FIDELITY = ("agreement", "accuracy", "fidelity_error")
LABELS = {"agreement": "agreement with the model", "accuracy": "accuracy", "fidelity_error": "fidelity error (authors' code)"}
NAMES = {"nmf": "NMF (NCAV)", "pca": "PCA", "kmeans": "k-means (ACE)"}
FONTSIZE = 8


def fidelity_figure(records: dict, models: list[str], ks: list[int]) -> plt.Figure:
    """Per model (row): agreement, accuracy and fidelity error vs k, one line per reducer (bootstrap CI band)."""
    fig, axes = plt.subplots(len(models), 3, figsize=(7.2, 2.2 * len(models) + 0.6), squeeze=False, layout="constrained")
    colours = plt.get_cmap("tab10")
    handles = {}
    for r, model in enumerate(models):
        for c, metric in enumerate(FIDELITY):
            ax = axes[r, c]
            for j, red in enumerate(REDUCERS):
                recs = [records.get((model, f"ice_{red}", f"{metric}_k{k}")) for k in ks]
                if any(x is None for x in recs):
                    continue
                (line,) = ax.plot(ks, [x.value for x in recs], marker="o", markersize=3, linewidth=1, color=colours(j))
                ax.fill_between(ks, [x.ci_low for x in recs], [x.ci_high for x in recs], color=colours(j), alpha=0.15, linewidth=0)
                handles.setdefault(NAMES[red], line)
            if metric == "accuracy":
                acc = records[(model, "classifier", "accuracy")].value
                handles.setdefault("the model", ax.axhline(acc, linestyle="--", color="0.5", linewidth=0.8))
            ax.set_xscale("log", base=2)
            ax.set_xticks(ks, [str(k) for k in ks])
            ax.set_xlabel("concepts k", fontsize=FONTSIZE)
            ax.set_ylabel(LABELS[metric], fontsize=FONTSIZE)
            ax.tick_params(labelsize=FONTSIZE)
            ax.set_title(model, fontsize=FONTSIZE + 1)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles), fontsize=FONTSIZE, frameon=False)
    fig.suptitle("ICE: the approximated model (layer replaced by W·H) on held-out images vs k; mean, 95 % bootstrap CI", fontsize=FONTSIZE + 1)
    return fig


def fidelity_step(ctx: StepContext) -> None:
    """Fidelity of the approximated model vs k for every reducer, per classifier (module docstring)."""
    from shared.pipeline.io import write_text
    from shared.pipeline.table import render
    from shared.results import write_records

    s = ctx.settings
    ks = sorted({int(k) for k in s.get("ks", [2, 4, 8, 16])} | {int(s.get("k", 8))})
    k_main, block = int(s.get("k", 8)), s.get("block")
    n_fit, max_iter = int(s.get("n_fit", 128)), int(s.get("max_iter", 200))
    bs = ctx.eval["batch_size"]
    rec = Recorder(ctx.config)
    models = []
    for i, path in enumerate(ctx.models):
        batch = ctx.eval_batch(i)
        adapter = batch.adapter
        if adapter.task != "classifier":
            raise ValueError(f"{path} is an embedding model: ICE's fidelity compares class predictions")
        model, dataset = adapter.name, batch.dataset
        models.append(model)
        train = training_rows(path, ctx.datasets[i], n_fit).images.to(batch.images.device)
        layer = concept_layer(adapter, train[:bs], block)
        labels = batch.split.labels.to(batch.images.device)
        run = ice_fidelity(adapter, train, batch.images, labels, layer, ks, ctx.seed, max_iter, bs)
        rec.add(run["model_accuracy"], metric="accuracy", method="classifier", model=model, dataset=dataset)
        for (red, k), scores in run["scores"].items():
            for metric, values in scores.items():
                names = [f"{metric}_k{k}"]
                names += [metric] if k == k_main else []
                names += [f"{metric}_kmin"] if k == ks[0] else []
                names += [f"{metric}_kmax"] if k == ks[-1] else []
                for name in names:
                    r = rec.add(values, metric=name, method=f"ice_{red}", model=model, dataset=dataset)
                    r.extra.update({"layer": layer, "k": k, "n_fit_images": int(train.shape[0]),
                                    "concept_info": run["concepts"][(red, k)].info})
    write_records(rec.records, ctx.output("records"))
    methods = [f"ice_{r}" for r in REDUCERS]
    sections, csvs = [], []
    for metric in FIDELITY:
        md, table_csv = render(rec.records, [f"{metric}_k{k}" for k in ks], methods,
                               None, f"{LABELS[metric]} of the approximated model vs k (held-out images)")
        sections.append(md)
        csvs.append(table_csv)
    md, table_csv = render(rec.records, ["accuracy"], ["classifier"], None, "the original model's accuracy on the same images")
    sections.append(md)
    csvs.append(table_csv)
    write_text(ctx.output("table"), "\n".join(sections))
    write_text(Path(ctx.output("table")).with_suffix(".csv"), "".join(csvs))
    by = {(r.model, r.method, r.metric): r for r in rec.records}
    fig = fidelity_figure(by, models, ks)
    save_figure(fig, ctx.output("figure"))
    plt.close(fig)


STEPS = {"fidelity": fidelity_step}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
