"""NAFlow step: the layer-by-layer flow on the plain CNN for several test images, beside Grad-CAM.

    python -m papers.naflow.figures flow --models data/models/plaincnn.safetensors \
        --datasets data/datasets/<its dataset> --methods naflow_b1 ... naflow_b5 gradcam_b1 ... gradcam_b5 \
        --maps-dir data/maps --out figure=reports/naflow/flow.png --config-json '{...}'

Rows: per image (the first :data:`N_SHOW` of the model's evaluation subset), NAFlow (top) and
Grad-CAM at the same layer (bottom); columns: the conv blocks' outputs from the last (where the
flow starts) down to the first. The maps are the shared maps ``naflow_b<k>`` and ``gradcam_b<k>``
(``ctx.maps``, computed once by the per-model explain job; the step declares them with
``maps: true``), for every block k whose two methods the step lists. Each map is min–max
normalised for display; one colour bar (``shared.plotting``).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from shared.explain import normalize_maps  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.plotting import heatmap_colorbar, map_grid, row_label, show  # noqa: E402

N_SHOW = 4
"""Images in the flow figure (two rows each)."""

BLOCK = re.compile(r"^(naflow|gradcam)_b(\d+)$")


def flow_blocks(methods: list[str]) -> list[int]:
    """The blocks k for which both ``naflow_b<k>`` and ``gradcam_b<k>`` are listed, top to bottom."""
    found: dict[str, set[int]] = {"naflow": set(), "gradcam": set()}
    for m in methods:
        match = BLOCK.match(m)
        if match:
            found[match.group(1)].add(int(match.group(2)))
    return sorted(found["naflow"] & found["gradcam"], reverse=True)


def flow_figure(images, rows: list, n: int):
    """Per image two rows, NAFlow then Grad-CAM (labelled on the left); one column per block
    (``rows``: (k, NAFlow maps, Grad-CAM maps) from the last block down); one colour bar."""
    fig, axes = map_grid(2 * n, len(rows) + 1, panel=1.3, extra_height=0.5)
    for i in range(n):
        for r, name in ((2 * i, "NAFlow"), (2 * i + 1, "Grad-CAM")):
            show(axes[r, 0], images[i].cpu(), title="image" if r == 0 else None)
            row_label(axes[r, 0], f"image {i + 1}\n{name}")
            for j, (k, nf, gc) in enumerate(rows):
                maps = nf if name == "NAFlow" else gc
                show(axes[r, j + 1], images[i].cpu(), maps[i].cpu(), title=f"block {k}" if r == 0 else None)
    heatmap_colorbar(fig, axes)
    fig.suptitle("NAFlow vs Grad-CAM at the same layers, from the last block down", fontsize=9)
    return fig


def flow(ctx: StepContext) -> None:
    """Output ``figure``: NAFlow vs Grad-CAM at every block, read from the shared maps."""
    if len(ctx.models) != 1:
        raise SystemExit(f"error: step flow explains one plain CNN, got {len(ctx.models)} models: {' '.join(ctx.models)}")
    blocks = flow_blocks(ctx.methods)
    if not blocks:
        raise SystemExit("error: step flow needs naflow_b<k> and gradcam_b<k> for at least one block k in the step's methods")
    model = Path(ctx.models[0]).stem  # data/maps/<model>/...
    images = ctx.eval_batch(0).images
    n = min(N_SHOW, images.shape[0])
    images = images[:n]
    rows = []
    for k in blocks:
        nf, gc = (ctx.maps(model, f"{name}_b{k}") for name in ("naflow", "gradcam"))
        for name, maps in (("naflow", nf), ("gradcam", gc)):
            if maps.shape[0] < n or tuple(maps.shape[-2:]) != tuple(images.shape[-2:]):
                raise SystemExit(
                    f"error: the maps of {name}_b{k} on {model} have shape {tuple(maps.shape)}; expected at least "
                    f"{n} maps of {tuple(images.shape[-2:])} (recompute them with the current config)"
                )
        rows.append((k, normalize_maps(nf[:n]), normalize_maps(gc[:n])))
    fig = flow_figure(images, rows, n)
    save_figure(fig, ctx.output("figure"))
    plt.close(fig)


STEPS = {"flow": flow}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
