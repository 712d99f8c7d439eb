"""Step ``maps_grid``: the first images of each model's evaluation subset with every method's
shared map beside them (a paper's qualitative figure, e.g. Grad-CAM's Fig. 1).

    python -m shared.steps.maps_grid maps_grid --models data/models/resnet.safetensors ... \
        --datasets data/datasets/<each model's dataset> ... --methods gradcam eigencam ... \
        --maps-dir data/maps --out figure=reports/<paper>/qualitative.png --config-json '{...}'

The maps are the shared ones (``data/maps/<model>/<method>.safetensors``, declare ``maps: true``
on the step), never recomputed; a method not defined for a model gets a blank panel.
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
from shared.plotting import PANEL_FONTSIZE, applies, blank, heatmap_colorbar, map_grid, method_label, row_label, show  # noqa: E402


def model_key(ctx: StepContext, i: int) -> str:
    """The name model ``i``'s shared maps are filed under: its checkpoint's stem (``data/maps/<stem>/``)."""
    return Path(ctx.models[i]).stem


def shared_maps(ctx: StepContext, i: int, method: str, n: int) -> torch.Tensor:
    """The shared maps of ``method`` on model ``i`` (N, H, W), checked to cover its ``n`` evaluation images."""
    maps = ctx.maps(model_key(ctx, i), method)
    if maps.shape[0] != n:
        raise ValueError(
            f"{ctx.maps_dir / model_key(ctx, i) / method}.safetensors holds {maps.shape[0]} maps but the evaluation "
            f"subset has {n} images: recompute the maps with this config's eval.n_images"
        )
    return maps


def qualitative_figure(batches: list, methods: list[str], maps: dict[tuple[str, str], torch.Tensor], n_show: int = 3) -> plt.Figure:
    """Rows: (model, image); columns: the image, then each method's map (min–max normalised for display).

    ``maps[model name, method]``: at least the first ``n_show`` maps of the method on that model's
    evaluation subset; a missing key (a method not defined for the model) gets a blank panel.
    Each row is labelled on its left ("<model>" and the image's class), each column on top; one
    colour bar for all maps.
    """
    rows = [(b, i) for b in batches for i in range(min(n_show, b.images.shape[0]))]
    fig, axes = map_grid(len(rows), len(methods) + 1)
    shown = {key: normalize_maps(m[: min(n_show, m.shape[0])]) for key, m in maps.items()}
    for r, (b, i) in enumerate(rows):
        name = b.adapter.name
        show(axes[r, 0], b.images[i], title="image" if r == 0 else None)
        row_label(axes[r, 0], f"{name}\n{b.split.class_names[i]}")
        for c, m in enumerate(methods, start=1):
            title = method_label(m) if r == 0 else None
            if (name, m) in shown:
                show(axes[r, c], b.images[i], shown[name, m][i], title=title)
            else:
                blank(axes[r, c], f"{method_label(m)}\nnot defined\nfor {b.adapter.kind}")
                if title:
                    axes[r, c].set_title(title, fontsize=PANEL_FONTSIZE)
    heatmap_colorbar(fig, axes)
    return fig


def maps_grid(ctx: StepContext, n_show: int = 3) -> None:
    """The first ``n_show`` images of every model's evaluation subset, each method's shared map."""
    figure_path = ctx.output("figure")
    batches, maps = [], {}
    for i in range(len(ctx.models)):
        b = ctx.eval_batch(i)
        batches.append(b)
        for m in ctx.methods:
            if applies(m, b.adapter):
                maps[b.adapter.name, m] = shared_maps(ctx, i, m, b.images.shape[0])[: min(n_show, b.images.shape[0])]
    if not batches:
        raise ValueError("maps_grid needs at least one model: list the paper's model roles in the step's models")
    fig = qualitative_figure(batches, ctx.methods, maps, n_show)
    save_figure(fig, figure_path)
    plt.close(fig)


STEPS = {"maps_grid": maps_grid}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
