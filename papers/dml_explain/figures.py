"""Figures of the metric-learning papers (dml_explain, sfam, simnet): retrieval and point-specific maps.

    python -m papers.dml_explain.figures retrieval --models data/models/embed_cosine.safetensors ... \
        --dataset data/datasets/parts --methods sfam,gradcam_similarity,simnet,dml_overall \
        --out reports/dml_explain/retrieval.png --config-json '{...}'
    python -m papers.dml_explain.figures point --models ... --dataset ... --out ... --config-json '{...}'

The images and pairs are the pipeline's evaluation subset (``shared.pipeline.io.eval_batch``):
unseen `parts` test classes; the gallery searched for retrieval is that subset.
"""

from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from papers.dml_explain.method import point_specific_maps  # noqa: E402
from shared.explain import build_explainer, normalize_maps  # noqa: E402
from shared.explain.pair import PairTarget, explain_both_sides  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.models import ModelAdapter  # noqa: E402


def similarities(adapter: ModelAdapter, queries: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """(Q, G) similarity of every query to every gallery image, in the model's metric."""
    with torch.no_grad():
        fq, fg = adapter(queries).float(), adapter(gallery).float()
    if adapter.metric == "cosine":
        return F.normalize(fq, dim=1) @ F.normalize(fg, dim=1).T
    return -torch.cdist(fq, fg).square()


def _show(ax, image: torch.Tensor, heat: torch.Tensor | None = None, title: str | None = None) -> None:
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
    if heat is not None:
        ax.imshow(heat.cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
    if title:
        ax.set_title(title, fontsize=6)
    ax.set_xticks([])
    ax.set_yticks([])


def retrieval_panel(
    axes, adapter: ModelAdapter, images: torch.Tensor, labels: torch.Tensor, query: int, methods: list[str], k: int
) -> None:
    """Rows: retrieved images, then per method its maps on the query side and the retrieved side."""
    sims = similarities(adapter, images[query : query + 1], images)[0]
    sims[query] = -float("inf")  # the query itself is not a result
    top = sims.topk(k).indices
    q = images[query : query + 1].expand(k, -1, -1, -1)
    refs = images[top]
    _show(axes[0, 0], images[query], title=f"{adapter.name}\nquery (class {int(labels[query])})")
    for j, idx in enumerate(top.tolist()):
        mark = "=" if int(labels[idx]) == int(labels[query]) else "≠"
        _show(axes[0, j + 1], images[idx], title=f"#{j + 1} s={sims[idx]:.2f} {mark}")
    for m, name in enumerate(methods):
        q_maps, r_maps = explain_both_sides(build_explainer(name, adapter), adapter, q, refs)
        q_maps, r_maps = normalize_maps(q_maps), normalize_maps(r_maps)
        for side, maps, row in (("query", q_maps, 1 + 2 * m), ("retrieved", r_maps, 2 + 2 * m)):
            axes[row, 0].axis("off")
            axes[row, 0].text(0.5, 0.5, f"{name}\n{side} side", ha="center", va="center", fontsize=6)
            for j in range(k):
                _show(axes[row, j + 1], (q if side == "query" else refs)[j], maps[j])


def retrieval_figure(adapters: list[ModelAdapter], batches: list, methods: list[str], k: int = 4, query: int = 0):
    rows = 1 + 2 * len(methods)
    fig, axes = plt.subplots(rows * len(adapters), k + 1, figsize=(1.3 * (k + 1), 1.3 * rows * len(adapters)), squeeze=False)
    for i, (adapter, batch) in enumerate(zip(adapters, batches)):
        retrieval_panel(axes[i * rows : (i + 1) * rows], adapter, batch.images, batch.split.labels, query, methods, k)
    fig.tight_layout()
    return fig


def part_centres(boxes: torch.Tensor) -> torch.Tensor:
    """(y, x) pixel centre of each (x0, y0, x1, y1) box."""
    b = boxes.float()
    return torch.stack([(b[:, 1] + b[:, 3] - 1) / 2, (b[:, 0] + b[:, 2] - 1) / 2], dim=1)


def point_figure(adapters: list[ModelAdapter], batches: list, n: int = 3):
    """Per model and pair: the query with its point (centre of the class part), D[u*, ·] on the reference."""
    fig, axes = plt.subplots(n * len(adapters), 3, figsize=(4.2, 1.4 * n * len(adapters)), squeeze=False)
    for i, (adapter, batch) in enumerate(zip(adapters, batches)):
        q, r = batch.images[:n], batch.reference_images[:n]
        points = part_centres(batch.split.boxes[:n]).to(q.device)
        target = PairTarget.from_images(adapter, r)
        point_maps = normalize_maps(point_specific_maps(adapter, q, target, points))
        overall = normalize_maps(build_explainer("dml_overall", adapter)(r, PairTarget.from_images(adapter, q)))
        for j in range(n):
            ax = axes[i * n + j]
            _show(ax[0], q[j], title=f"{adapter.name}: query point" if j == 0 else None)
            ax[0].plot([float(points[j, 1])], [float(points[j, 0])], marker="x", color="white", markersize=6)
            _show(ax[1], r[j], point_maps[j], title="point-specific on reference" if j == 0 else None)
            _show(ax[2], r[j], overall[j], title="overall on reference" if j == 0 else None)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    from shared.pipeline.io import eval_batch
    from shared.runtime import setup_from_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["retrieval", "point"])
    p.add_argument("--models", nargs="+", required=True, help="embedding checkpoints (.safetensors)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--methods", default="sfam,gradcam_similarity,simnet,dml_overall")
    p.add_argument("--out", required=True)
    p.add_argument("--config-json", required=True)
    args = p.parse_args(argv)
    cfg = json.loads(args.config_json)
    device = setup_from_config(cfg)
    batches = [eval_batch(m, args.dataset, cfg["eval"]["n_images"], device) for m in args.models]
    adapters = [b.adapter for b in batches]
    if args.kind == "retrieval":
        fig = retrieval_figure(adapters, batches, [m for m in args.methods.split(",") if m])
    else:
        fig = point_figure(adapters, batches)
    save_figure(fig, args.out)
    plt.close(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
