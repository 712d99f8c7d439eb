"""DAAM steps: the block-by-block flow for several test images (supervised and self-supervised).

    python -m papers.daam.figures flow --models data/models/vit.safetensors --datasets data/datasets/<its dataset> \
        --out figure=reports/daam/flow.png --config-json '{...}'
    python -m papers.daam.figures flow_ssl --models ... --datasets ... --out figure=reports/daam/flow_ssl.png \
        --config-json '{...}'

Rows: images (the first :data:`N_SHOW` of the ViT's evaluation subset, ``ctx.eval_batch``);
columns: the per-block maps M_l (each divided by its maximum), then the accumulated maps D_l
shown with the authors' display mapping; one colour bar (``shared.plotting``). The per-block
maps M_l are not a registered method's output (``daam_b<k>`` is D_k), so the flow is computed
here, in one pass per figure. The self-supervised flow builds its k-NN
memory bank from the training split of the model's dataset.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from papers.daam.method import DAAM, DAAMSelfSupervised, display_mapping  # noqa: E402
from shared.explain import upsample  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.plotting import heatmap_colorbar, map_grid, show  # noqa: E402

N_SHOW = 6
"""Images (rows) in each flow figure."""


def per_map_max(maps: torch.Tensor) -> torch.Tensor:
    """Each map of (..., H, W) divided by its maximum, negatives clipped: [0, 1] (an all-non-positive map is 0)."""
    top = maps.flatten(-2).amax(dim=-1)[..., None, None]
    return torch.where(top > 0, maps.clamp_min(0) / top.clamp_min(1e-12), torch.zeros_like(maps)).clamp(0, 1)


def flow_figure(images: torch.Tensor, block_maps: torch.Tensor, accumulated: torch.Tensor, title: str):
    """A grid: per image, the input, M_1 … M_L (each ÷ its maximum), then D_1 … D_L (display-mapped); one colour bar."""
    n, depth = block_maps.shape[:2]
    size = tuple(images.shape[-2:])
    shown_m = per_map_max(upsample(block_maps.flatten(0, 1), size).reshape(n, depth, *size))
    shown_d = per_map_max(upsample(display_mapping(accumulated).flatten(0, 1), size).reshape(n, depth, *size))
    fig, axes = map_grid(n, 1 + 2 * depth, panel=1.3, extra_height=0.4)
    for i in range(n):
        show(axes[i, 0], images[i].cpu(), title="image" if i == 0 else None)
        for l in range(depth):
            show(axes[i, 1 + l], images[i].cpu(), shown_m[i, l].cpu(), title=f"M{l + 1}" if i == 0 else None)
            show(axes[i, 1 + depth + l], images[i].cpu(), shown_d[i, l].cpu(), title=f"D{l + 1}" if i == 0 else None)
    heatmap_colorbar(fig, axes)
    fig.suptitle(title, fontsize=9)
    return fig


def _vit_batch(ctx: StepContext):
    """The step's one model (the ViT): its first :data:`N_SHOW` evaluation images and their targets."""
    if len(ctx.models) != 1:
        raise SystemExit(f"error: step {ctx.step!r} explains one model (the ViT), got {len(ctx.models)}: {' '.join(ctx.models)}")
    batch = ctx.eval_batch(0)
    idx = torch.arange(min(N_SHOW, batch.images.shape[0]), device=batch.images.device)
    return batch, batch.images[idx], batch.target.subset(idx)


def _write(ctx: StepContext, images: torch.Tensor, flow, title: str) -> None:
    fig = flow_figure(images, flow.block_maps, flow.accumulated, title)
    save_figure(fig, ctx.output("figure"))
    plt.close(fig)


def flow(ctx: StepContext) -> None:
    """Output ``figure``: the supervised flow (weights from the target class's gradient)."""
    batch, images, target = _vit_batch(ctx)
    _write(ctx, images, DAAM(batch.adapter).flow(images, target), "DAAM (supervised): per-block maps M_l and accumulated maps D_l")


def flow_ssl(ctx: StepContext) -> None:
    """Output ``figure``: the self-supervised flow (k-NN memory bank of the training split)."""
    batch, images, _ = _vit_batch(ctx)
    result = DAAMSelfSupervised(batch.adapter, dataset=ctx.datasets[0]).flow(images, None)
    _write(ctx, images, result, "DAAM (self-supervised weights from a k-NN memory bank of class-token embeddings)")


STEPS = {"flow": flow, "flow_ssl": flow_ssl}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
