"""Deep Feature Factorization (Collins, Achanta & Süsstrunk, ECCV 2018): concepts by NMF of one
layer's activations across a set of images, and whether a concept co-localises a part.

The step ``concepts`` (papers/dff/paper.yaml), on each model's evaluation subset::

    python -m papers.dff.figures concepts --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... \
        --out figure=reports/dff/concepts.png records=reports/dff/concepts.json table=reports/dff/concepts.md \
        --config-json '{...}'

Per model: A (N, C, h, w) at the factored layer (``shared.concepts.concept_layer``: the settings'
``block``, or the topmost post-ReLU block), A ≈ W·H by NMF with k concepts over all N images at once
(``shared.concepts.nmf_concepts``; the masks are not used), each concept's heat-map per image bilinearly
upsampled. Against the ground-truth mask (classification: the object; retrieval: the head, the part
that defines the class) every concept gets a relevance mass and a pointing-game hit per image. The
concept that stands for the part is chosen on one half of the images (even positions) and scored on
the other (odd), and vice versa (cross-fitting): every image is scored with a concept chosen without
it, so a high value means *the same concept* covers the part across images, not that some concept
happens to on each image. Records (method / metric, per image in ``extra.per_image``):

* ``dff`` / ``relevance_mass``, ``pointing_game``: the concept chosen on the other half;
* ``dff_oracle`` / the same: the best concept of each image itself (selected on the image: an upper
  bound for context, never in a claim);
* ``chance`` / ``relevance_mass``: the mask's area share (a map uniform over the image);
  ``chance`` / ``pointing_game``: the share of pixels within the pointing-game tolerance of the mask
  (the hit rate of a uniformly random maximum).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from papers.dff.method import METRICS, dff_model  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.plotting import Recorder  # noqa: E402

METHODS = ("dff", "dff_oracle", "chance")
FONTSIZE = 8


def concept_colours(k: int) -> list[tuple[float, float, float]]:
    """k distinguishable colours for categories (concepts): tab10, or tab20 beyond ten."""
    cmap = plt.get_cmap("tab10" if k <= 10 else "tab20")
    return [cmap(j % cmap.N)[:3] for j in range(k)]


def colour_concepts(images: Tensor, maps: Tensor, opacity: float = 0.75) -> Tensor:
    """DFF's figure: each concept a colour (a qualitative colour map, :func:`concept_colours`; the
    authors' ``utils.show_heatmaps`` uses gist_rainbow, whose neighbouring hues are hard to tell apart),
    each heat-map divided by its maximum on that image (their ``Demo.ipynb``). Where the authors
    stack k translucent layers (fine for their k <= 4 sparse factors), every pixel here takes the
    colour of its strongest concept with opacity ``opacity`` × that concept's normalised value, which
    stays readable at k = 8 (the co-segmentation reading of DFF: argmax over factors). (N, 3, H, W)."""
    colours = torch.tensor(concept_colours(maps.shape[1]), dtype=images.dtype, device=images.device)
    norm = maps / maps.flatten(2).amax(dim=2).clamp_min(1e-12)[:, :, None, None]
    strength, which = norm.max(dim=1)  # (N, H, W)
    colour = colours[which].permute(0, 3, 1, 2)  # (N, 3, H, W)
    a = (opacity * strength)[:, None].to(images.dtype)
    return (images * (1 - a) + colour * a).clamp(0, 1)


def concepts_figure(runs: dict[str, dict], batches: dict[str, object], n_show: int) -> plt.Figure:
    """One row per model: the first ``n_show`` images with every concept coloured, the mask outlined."""
    rows = len(runs)
    fig, axes = plt.subplots(rows, n_show, figsize=(1.25 * n_show + 0.4, 1.3 * rows + 0.5), squeeze=False, layout="constrained")
    for r, (model, run) in enumerate(runs.items()):
        batch = batches[model]
        shown = colour_concepts(batch.images[:n_show], run["maps"][:n_show]).cpu()
        masks = batch.split.masks[:n_show].cpu()
        k = run["concepts"].k
        colours = concept_colours(k)
        for c in range(n_show):
            ax = axes[r, c]
            if c < shown.shape[0]:
                ax.imshow(shown[c].permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.contour(masks[c].numpy().astype(float), levels=[0.5], colors="white", linewidths=0.5)
                j = int(run["chosen"][c])
                ax.add_patch(plt.Rectangle((0, 0), 6, 6, color=colours[j], transform=ax.transData, clip_on=True))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"{model}\n{run['layer']}, k = {k}", fontsize=FONTSIZE)
    fig.suptitle("DFF concepts: each pixel in its strongest concept's colour (opacity: heat-map / its max)\n"
                 "white: the mask; corner square: the concept chosen for the part on the other half", fontsize=FONTSIZE)
    return fig


def concepts_step(ctx: StepContext) -> None:
    """Concept discovery and part co-localisation of DFF on every model (module docstring)."""
    from shared.pipeline.io import write_text
    from shared.pipeline.table import render
    from shared.results import write_records

    s = ctx.settings
    k, block, max_iter = int(s.get("k", 8)), s.get("block"), int(s.get("max_iter", 200))
    n_show = int(s.get("figure_images", 6))
    rec = Recorder(ctx.config)
    runs, batches = {}, {}
    for i, _ in enumerate(ctx.models):
        batch = ctx.eval_batch(i)
        model = batch.adapter.name
        run = dff_model(batch, k, block, ctx.seed, max_iter, ctx.eval["batch_size"])
        runs[model], batches[model] = run, batch
        for (method, metric), values in run["scores"].items():
            r = rec.add(values, metric=metric, method=method, model=model, dataset=batch.dataset)
            if method == "dff":
                r.extra.update({
                    "layer": run["layer"], "k": k, "chosen_on_halves": list(run["choice"]),
                    "same_concept_both_halves": run["choice"][0] == run["choice"][1],
                    "per_concept_mean": [round(float(v), 6) for v in run["per_concept"][metric].mean(dim=0)],
                    "nmf": run["concepts"].info,
                })
    write_records(rec.records, ctx.output("records"))
    md, table_csv = render(rec.records, list(METRICS), list(METHODS), None,
                           f"DFF: the part's concept (chosen on the other half of the images) vs chance; k = {k}")
    write_text(ctx.output("table"), md)
    from pathlib import Path

    write_text(Path(ctx.output("table")).with_suffix(".csv"), table_csv)
    fig = concepts_figure(runs, batches, n_show)
    save_figure(fig, ctx.output("figure"))
    plt.close(fig)


STEPS = {"concepts": concepts_step}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
