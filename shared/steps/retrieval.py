"""Step ``retrieval`` of the metric-learning papers (dml_explain, sfam, simnet): a query, its top
retrieved images and each method's maps on both sides of every (query, retrieved) pair.

    python -m shared.steps.retrieval retrieval --models data/models/embed_cosine.safetensors ... \
        --datasets data/datasets/<each model's dataset> ... --methods sfam gradcam_similarity simnet dml_overall \
        --out figure=reports/<paper>/retrieval.png --config-json '{...}'

Per model (one block of rows each): the query and its top ``k`` retrieved images, then per method
its maps on the query side and on the retrieved side. The images are the model's evaluation
subset (``ctx.eval_batch``: unseen test classes); the gallery searched is that subset, without the
query itself. The maps explain the similarity of each retrieved pair, not the pipeline's
(query, positive reference) pairs, so they are computed here rather than read from ``data/maps``.
Maps are min–max normalised per image for display (one colour bar, ``shared.plotting``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from shared.explain import build_explainer, normalize_maps  # noqa: E402
from shared.explain.pair import explain_both_sides  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.models import ModelAdapter  # noqa: E402
from shared.plotting import applies, blank, heatmap_colorbar, map_grid, method_label, show  # noqa: E402


def similarities(adapter: ModelAdapter, queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """(Q, G) similarity of every query to every gallery image, in the model's metric."""
    with torch.no_grad():
        fq, fg = adapter(queries).float(), adapter(gallery).float()
    if adapter.metric == "cosine":
        return F.normalize(fq, dim=1) @ F.normalize(fg, dim=1).T
    return -torch.cdist(fq, fg).square()


def retrieval_panel(
    axes, adapter: ModelAdapter, images: torch.Tensor, labels: torch.Tensor, query: int, methods: list[str], k: int
) -> None:
    """Rows: retrieved images, then per method its maps on the query side and the retrieved side."""
    sims = similarities(adapter, images[query : query + 1], images)[0]
    sims[query] = -float("inf")  # the query itself is not a result
    top = sims.topk(k).indices
    q = images[query : query + 1].expand(k, -1, -1, -1)
    refs = images[top]
    show(axes[0, 0], images[query], title=f"{adapter.name}\nquery (class {int(labels[query])})")
    for j, idx in enumerate(top.tolist()):
        mark = "=" if int(labels[idx]) == int(labels[query]) else "≠"
        show(axes[0, j + 1], images[idx], title=f"#{j + 1} s={sims[idx]:.2f} {mark}")
    for m, name in enumerate(methods):
        rows = (1 + 2 * m, 2 + 2 * m)
        if not applies(name, adapter):
            for row in rows:
                blank(axes[row, 0], f"{method_label(name)}\nnot defined")
                for j in range(k):
                    blank(axes[row, j + 1], "")
            continue
        q_maps, r_maps = explain_both_sides(build_explainer(name, adapter), adapter, q, refs)
        q_maps, r_maps = normalize_maps(q_maps), normalize_maps(r_maps)
        for side, maps, row in (("query", q_maps, rows[0]), ("retrieved", r_maps, rows[1])):
            blank(axes[row, 0], f"{method_label(name)}\n{side} side")
            for j in range(k):
                show(axes[row, j + 1], (q if side == "query" else refs)[j], maps[j])


def retrieval_figure(adapters: list[ModelAdapter], batches: list, methods: list[str], k: int = 4, query: int = 0):
    """One block of ``1 + 2 * len(methods)`` rows per model (see :func:`retrieval_panel`)."""
    n = min(b.images.shape[0] for b in batches)
    if n < 2 or not 0 <= query < n:
        raise SystemExit(f"error: retrieval needs query {query} and at least one other image in each model's evaluation subset; eval.n_images gives {n}")
    k = min(k, n - 1)  # the gallery is the subset without the query
    rows = 1 + 2 * len(methods)
    fig, axes = map_grid(rows * len(adapters), k + 1, panel=1.3)
    for i, (adapter, batch) in enumerate(zip(adapters, batches)):
        retrieval_panel(axes[i * rows : (i + 1) * rows], adapter, batch.images, batch.split.labels, query, methods, k)
    heatmap_colorbar(fig, axes)
    return fig


def retrieval(ctx: StepContext) -> None:
    """Output ``figure``: the retrieval figure of every model of the step, with the step's methods."""
    if not ctx.models:
        raise SystemExit("error: step retrieval needs at least one embedding model (--models)")
    if not ctx.methods:
        raise SystemExit("error: step retrieval needs the methods to show (the step's methods in paper.yaml)")
    batches = ctx.batches()
    fig = retrieval_figure([b.adapter for b in batches], batches, ctx.methods)
    save_figure(fig, ctx.output("figure"))
    plt.close(fig)


STEPS = {"retrieval": retrieval}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
