"""Steps of dml_explain (Zhu et al.): the point-specific activation figure.

    python -m papers.dml_explain.figures point_specific --models data/models/embed_cosine.safetensors ... \
        --datasets data/datasets/<each model's dataset> ... --out figure=reports/dml_explain/point_specific.png \
        --config-json '{...}'

Per model, the first pairs of its evaluation subset (``ctx.eval_batch``: each query with its
positive reference): the query with a point (the centre of its class-defining part), the
point-specific activation D[u*, ·] on the reference, and the overall activation on the
reference. Maps are min–max normalised per image for display (one colour bar, ``shared.plotting``). The retrieval figure this paper
shares with sfam and simnet is the step in :mod:`shared.steps.retrieval`.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from papers.dml_explain.method import point_specific_maps  # noqa: E402
from shared.explain import build_explainer, normalize_maps  # noqa: E402
from shared.explain.pair import PairTarget  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.models import ModelAdapter  # noqa: E402
from shared.plotting import heatmap_colorbar, map_grid, row_label, show  # noqa: E402


def part_centres(boxes: torch.Tensor) -> torch.Tensor:
    """(y, x) pixel centre of each (x0, y0, x1, y1) box."""
    b = boxes.float()
    return torch.stack([(b[:, 1] + b[:, 3] - 1) / 2, (b[:, 0] + b[:, 2] - 1) / 2], dim=1)


def point_figure(adapters: list[ModelAdapter], batches: list, n: int = 3):
    """Per model and pair: the query with its point (centre of the class part), D[u*, ·] on the reference."""
    n = min(n, *(b.images.shape[0] for b in batches))
    fig, axes = map_grid(n * len(adapters), 3, panel=1.4, extra_width=1.0)
    titles = ("query and its point", "point-specific on reference", "overall on reference")
    for i, (adapter, batch) in enumerate(zip(adapters, batches)):
        if batch.reference_images is None or batch.split.boxes is None:
            raise SystemExit(
                f"error: point_specific needs an embedding model on a dataset with part boxes; "
                f"model {adapter.name!r} on {batch.dataset!r} is not one"
            )
        q, r = batch.images[:n], batch.reference_images[:n]
        points = part_centres(batch.split.boxes[:n]).to(q.device)
        target = PairTarget.from_images(adapter, r)
        point_maps = normalize_maps(point_specific_maps(adapter, q, target, points))
        overall = normalize_maps(build_explainer("dml_overall", adapter)(r, PairTarget.from_images(adapter, q)))
        for j in range(n):
            ax = axes[i * n + j]
            first = i == 0 and j == 0
            show(ax[0], q[j], title=titles[0] if first else None)
            row_label(ax[0], f"{adapter.name}\npair {j + 1}")
            ax[0].plot([float(points[j, 1])], [float(points[j, 0])], marker="x", color="white", markersize=6)
            show(ax[1], r[j], point_maps[j], title=titles[1] if first else None)
            show(ax[2], r[j], overall[j], title=titles[2] if first else None)
    heatmap_colorbar(fig, axes)
    return fig


def point_specific(ctx: StepContext) -> None:
    """Output ``figure``: the point-specific figure of every model of the step."""
    if not ctx.models:
        raise SystemExit("error: step point_specific needs at least one embedding model (--models)")
    batches = ctx.batches()
    fig = point_figure([b.adapter for b in batches], batches)
    save_figure(fig, ctx.output("figure"))
    plt.close(fig)


STEPS = {"point_specific": point_specific}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
