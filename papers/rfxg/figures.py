"""RFxG (Elisha et al., AAAI 2026): saliency maps in the four quadrants of the Reference-Frame ×
Granularity taxonomy, and each map's faithfulness under each quadrant's score.

The step ``quadrants`` (papers/rfxg/paper.yaml), on each classifier::

    python -m papers.rfxg.figures quadrants --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... \
        --out figure=reports/rfxg/quadrants.png records=reports/rfxg/quadrants.json table=reports/rfxg/faithfulness.md \
        --config-json '{...}'

Per evaluation image, c is its ground-truth class, c′ the highest-scoring other class, G(c) the
settings' group holding c and G′ the most probable other group. The quadrants' targets
(shared/explain/targets.py): ``pointwise_class`` y_c, ``contrastive_class`` y_c − y_c′,
``pointwise_group`` Σ_{G(c)} y, ``contrastive_group`` Σ_{G(c)} y − Σ_{G′} y. Each method explains
each quadrant; each map is then scored under every quadrant's probability (p_c, p_c − p_c′,
P(G), P(G) − P(G′)) by the authors' masking protocol (their metrics.py): the top α of the map's
pixels set to black, α = 0.1, …, 0.9, and ``faith_<quadrant>`` = the AUC over α of the score's
drop s(x) − s(x masked) (higher: the map found what the score rests on). Records
``{method}@{map quadrant}/faith_{score quadrant}`` with per-image values (extra.per_image, the
evaluation subset's order). README: how these relate to the authors' CCS / PGS / CGS / CGC.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from shared.explain import normalize_maps  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from papers.rfxg.method import QUADRANTS, masked_drop_auc, quadrant_targets  # noqa: E402
from shared.plotting import Recorder, applies, heatmap_colorbar, in_chunks, map_grid, method_label, row_label, show  # noqa: E402

SHORT = {"pointwise_class": "why c?", "contrastive_class": "why c, not c′?", "pointwise_group": "why G(c)?", "contrastive_group": "why G(c), not G′?"}


def quadrant_figure(shown: list[tuple[str, torch.Tensor, dict[str, torch.Tensor], str]], n_show: int) -> plt.Figure:
    """Per model and image (row): the image, then the method's map in each quadrant."""
    rows = sum(min(n_show, s[1].shape[0]) for s in shown)
    fig, axes = map_grid(rows, 1 + len(QUADRANTS), panel=1.0)
    r = 0
    for model, images, maps, method in shown:
        for i in range(min(n_show, images.shape[0])):
            show(axes[r, 0], images[i], None, "image" if r == 0 else None)
            for j, q in enumerate(QUADRANTS):
                show(axes[r, 1 + j], images[i], normalize_maps(maps[q][i : i + 1])[0], SHORT[q] if r == 0 else None)
            row_label(axes[r, 0], f"{model}\n{method_label(method)}")
            r += 1
    heatmap_colorbar(fig, axes)
    fig.suptitle("RFxG quadrants: pointwise / contrastive × class / group (c: true class, c′: runner-up, G′: most probable other group)", fontsize=7)
    return fig


def quadrants(ctx: StepContext) -> None:
    """Maps in the four quadrants per method and classifier, faithfulness under every quadrant's score."""
    from shared.explain.registry import build_explainer
    from shared.pipeline.io import write_text
    from shared.pipeline.table import render
    from shared.results import write_records

    s = ctx.settings  # every key has its config_schema default, but groups: the config's dataset's
    if not s.get("groups"):
        raise SystemExit(
            "error: rfxg needs the super-class grouping of the benchmark's classes: set papers.rfxg.groups in the "
            "config (a list of lists of class indices; config/default.yaml has its benchmark's)"
        )
    groups = [[int(k) for k in g] for g in s["groups"]]
    methods = list(s["methods"])
    alphas = [float(a) for a in s["alphas"]]
    overrides = {"integrated_gradients": {"steps": int(s["ig_steps"])}}
    n_show = int(s["figure_images"])
    bs = int(ctx.eval["batch_size"])
    max_batch = int(s["max_batch"])
    rec = Recorder(ctx.config)
    shown, used = [], []
    for i, path in enumerate(ctx.models):
        batch = ctx.eval_batch(i)
        adapter = batch.adapter
        if adapter.task != "classifier":
            raise ValueError(f"{path} is an embedding model: RFxG's quadrants explain class scores")
        images, labels = batch.images, batch.split.labels.to(batch.images.device)
        with torch.no_grad():
            logits = torch.cat([adapter(images[k : k + bs]) for k in range(0, images.shape[0], bs)])
        targets = quadrant_targets(logits, labels, groups)
        for m in methods:
            if not applies(m, adapter):
                continue
            explainer = build_explainer(m, adapter, **overrides.get(m, {}))
            maps = {}
            for q, t in targets.items():
                maps[q] = torch.cat([explainer(images[k : k + bs], t.subset(torch.arange(k, min(k + bs, len(t))))) for k in range(0, images.shape[0], bs)]).detach()
                faith = masked_drop_auc(adapter, images, maps[q], list(targets.values()), alphas, max_batch)
                for j, scored in enumerate(targets):
                    r = rec.add(faith[j], metric=f"faith_{scored}", method=f"{m}@{q}", model=adapter.name, dataset=batch.dataset)
                    r.extra.update({"groups": groups, "alphas": alphas, "map_quadrant": q, "score_quadrant": scored})
            if m == methods[0]:
                shown.append((adapter.name, images[:n_show].cpu(), {q: v[:n_show].cpu() for q, v in maps.items()}, m))
            if m not in used:
                used.append(m)
    write_records(rec.records, ctx.output("records"))
    rows = [f"{m}@{q}" for m in used for q in QUADRANTS]
    md, table_csv = render(rec.records, [f"faith_{q}" for q in QUADRANTS], rows, None,
                           "Faithfulness (AUC over α = 0.1..0.9 of the score's drop when the map's top α pixels are black; higher is better) of each method's map in each quadrant (rows) under each quadrant's score (columns)")
    write_text(ctx.output("table"), md)
    write_text(Path(ctx.output("table")).with_suffix(".csv"), table_csv)
    fig = quadrant_figure(shown, n_show)
    save_figure(fig, ctx.output("figure"))
    plt.close(fig)


STEPS = {"quadrants": quadrants}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
