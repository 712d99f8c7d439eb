"""TraNCE's experiment: VAE concepts vs linear NMF concepts (ICE / DFF) on one layer of each CNN.

The step ``concepts`` (declared in papers/trance/paper.yaml, run through
``shared.figure_step.step_main``)::

    python -m papers.trance.figures concepts --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... --out records=reports/trance/concepts.json \
        table=reports/trance/faith.md figure=reports/trance/concepts.png \
        bessel=reports/trance/bessel.png --config-json '{...}'

Per model: the layer's activations on the first ``n_fit`` training images fit both explainers with
the same number of concepts k (``ctx.settings``): TraNCE's VAE (papers/trance/method.py) and NMF
(shared.concepts, as ICE / DFF). On the evaluation subset both encode the layer, reconstruct it and
replace it in the network (the approximated model); per image the step records, for method
``trance`` and ``nmf``: ``fidelity`` (the approximated model predicts the original's class),
``fidelity_prob`` (1 − total variation between the two class distributions), ``coherence``
(cosine of each concept's top-position feature with the concept's prototype, mean over concepts),
``faith`` (= coherence + fidelity) and ``reconstruction_fit`` (1 − ‖A − Â‖² / ‖A‖²). Figures: the
concepts' prototype images with their heat-maps, and the Bessel visualisation.
"""

from __future__ import annotations

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from papers.trance.method import (  # noqa: E402
    BESSEL_J1_FIRST_ZERO,
    bessel_transfer,
    coherence,
    concept_prototypes,
    explained_layer,
    faith,
    fidelity,
    fidelity_prob,
    fit_vae,
    logits_with_layer,
    reconstruction_fit,
    vae_concept_maps,
    vae_reconstruct,
)
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.pipeline.io import training_rows  # noqa: E402
from shared.plotting import Recorder  # noqa: E402

METHODS = ("trance", "nmf")
METRICS = ("fidelity", "fidelity_prob", "coherence", "faith", "reconstruction_fit")
FONTSIZE = 7


def run_model(ctx: StepContext, i: int, rec: Recorder) -> dict:
    """Fit both explainers on one model and record their per-image scores; what the figures need."""
    from shared.concepts import encode, layer_activations, nmf_concepts, reconstruct

    s = ctx.settings
    k, bs = int(s["k"]), int(ctx.eval["batch_size"])
    batch = ctx.eval_batch(i)
    adapter, images = batch.adapter, batch.images
    if adapter.task != "classifier":
        raise ValueError(f"{ctx.models[i]} is an embedding model: fidelity compares class predictions")
    layer = explained_layer(adapter, s.get("block"))
    times = {}
    t0 = time.perf_counter()
    fit = training_rows(ctx.models[i], ctx.datasets[i], int(s["n_fit"])).images.to(images.device)
    fit_acts = layer_activations(adapter, fit, layer, bs)
    acts = layer_activations(adapter, images, layer, bs)
    with torch.no_grad():
        logits = torch.cat([adapter(images[j : j + bs]) for j in range(0, images.shape[0], bs)])
    times["activations"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    vae = fit_vae(fit_acts, k, hidden=int(s["hidden"]), epochs=int(s["epochs"]), batch_size=int(s["vae_batch_size"]),
                  lr=float(s["lr"]), beta=float(s["beta"]), seed=ctx.seed)
    times["vae_fit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    nonneg = "refuse" if bool((fit_acts >= 0).all()) else "shift"
    nmf = nmf_concepts(fit_acts, k, seed=ctx.seed, max_iter=int(s["nmf_max_iter"]), nonnegative=nonneg)
    times["nmf_fit"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    out = {"layer": layer, "images": images, "labels": batch.split.labels, "maps": {}, "fit_images_n": int(fit_acts.shape[0])}
    for method in METHODS:
        if method == "trance":
            fit_maps, maps, rebuilt = vae_concept_maps(vae, fit_acts), vae_concept_maps(vae, acts), vae_reconstruct(vae, acts)
        else:
            fit_maps, maps = nmf.W, encode(acts, nmf, max_iter=int(s["nmf_max_iter"]))
            rebuilt = reconstruct(nmf, maps)
        approx = torch.cat([logits_with_layer(adapter, images[j : j + bs], layer, rebuilt[j : j + bs]) for j in range(0, images.shape[0], bs)])
        protos = concept_prototypes(fit_acts, fit_maps)
        scores = {
            "fidelity": fidelity(logits, approx),
            "fidelity_prob": fidelity_prob(logits, approx),
            "coherence": coherence(acts, maps, protos),
            "reconstruction_fit": reconstruction_fit(acts, rebuilt),
        }
        scores["faith"] = faith(scores["coherence"], scores["fidelity"])
        for metric in METRICS:
            rec.add(scores[metric], metric=metric, method=method, model=adapter.name, dataset=batch.dataset)
        out["maps"][method] = maps
    times["evaluate"] = time.perf_counter() - t0
    out["times"] = times
    out["vae_final_loss"] = vae.losses[-1]
    return out


def _prototypes(maps: torch.Tensor, n: int) -> torch.Tensor:
    """(k, n): for each concept, the images where it is strongest (its map's maximum), best first."""
    return maps.flatten(2).amax(dim=2).T.argsort(dim=1, descending=True, stable=True)[:, :n]


def _overlay(image: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """The image dimmed where ``heat`` (h, w) in [0, 1], upsampled, is low: (H, W, 3)."""
    from shared.explain.upsample import upsample

    up = upsample(heat[None].float(), tuple(image.shape[-2:]))[0].clamp(0, 1)
    return (image.permute(1, 2, 0) * (0.2 + 0.8 * up[..., None])).clamp(0, 1)


def _normalised(m: torch.Tensor) -> torch.Tensor:
    lo, hi = m.min(), m.max()
    return (m - lo) / (hi - lo) if hi > lo else torch.ones_like(m)


def concepts_figure(runs: dict[str, dict], n_protos: int) -> plt.Figure:
    """Rows: concepts; column groups: model × explainer, each the ``n_protos`` evaluation images
    where the concept is strongest, dimmed outside the concept's (min-max normalised) heat-map."""
    groups = [(model, method) for model in runs for method in METHODS]
    k = next(iter(runs.values()))["maps"]["trance"].shape[1]
    n_protos = min(n_protos, min(run["images"].shape[0] for run in runs.values()))
    ncols = len(groups) * n_protos
    fig, axes = plt.subplots(k, ncols, figsize=(0.62 * ncols + 0.4, 0.66 * k + 0.5), squeeze=False)
    for g, (model, method) in enumerate(groups):
        run = runs[model]
        maps = run["maps"][method]
        top = _prototypes(maps, n_protos)
        for j in range(k):
            for p in range(n_protos):
                ax = axes[j, g * n_protos + p]
                idx = int(top[j, p])
                ax.imshow(_overlay(run["images"][idx].cpu(), _normalised(maps[idx, j].cpu())).numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if p == 0 and g == 0:
                    ax.set_ylabel(f"c{j + 1}", fontsize=FONTSIZE)
                if j == 0 and p == 0:
                    ax.set_title(f"{model}: {'TraNCE (VAE)' if method == 'trance' else 'NMF (ICE/DFF)'}", fontsize=FONTSIZE, loc="left")
    fig.suptitle("Concept prototypes: the evaluation images where each concept is strongest, dimmed outside its heat-map", fontsize=FONTSIZE + 1)
    fig.subplots_adjust(left=0.03, right=0.995, top=0.93, bottom=0.01, wspace=0.05, hspace=0.08)
    return fig


def bessel_overlay(image: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The image where the Bessel map b (h, w) is positive, scaled by b; tinted blue where it is
    negative (depth |b| / |J₀(j₁,₁)|): (H, W, 3)."""
    from shared.explain.upsample import upsample

    up = upsample(b[None].float(), tuple(image.shape[-2:]))[0]
    pos = up.clamp(0, 1)
    neg = (-up).clamp(0, None) / 0.4028
    rgb = image.permute(1, 2, 0) * (0.15 + 0.85 * pos[..., None])
    blue = torch.tensor([0.15, 0.35, 0.95])
    return (rgb * (1 - 0.6 * neg[..., None]) + 0.6 * neg[..., None] * blue).clamp(0, 1)


def bessel_figure(runs: dict[str, dict], n_images: int) -> plt.Figure:
    """Top: the transfer b = J₀(j₁,₁(1 − ŝ)); below, per model and image, TraNCE's strongest
    concept in that image: the image, the concept map, its Bessel map and the overlay."""
    models = list(runs)
    n_images = min(n_images, min(run["images"].shape[0] for run in runs.values()))
    rows = 1 + len(models) * n_images
    fig = plt.figure(figsize=(5.2, 1.3 * rows + 1.0))
    grid = fig.add_gridspec(rows, 4, hspace=0.45, wspace=0.08, height_ratios=[1.6] + [1] * (rows - 1),
                            left=0.12, right=0.98, top=0.96, bottom=0.02)
    ax = fig.add_subplot(grid[0, :])
    s = torch.linspace(0, 1, 201, dtype=torch.float64)
    ax.plot(s.numpy(), torch.special.bessel_j0(BESSEL_J1_FIRST_ZERO * (1 - s)).numpy(), color="k", linewidth=1)
    ax.axhline(0, color="0.6", linewidth=0.6)
    ax.set_ylabel("J₀(j₁,₁(1 − ŝ))", fontsize=FONTSIZE)
    ax.tick_params(labelsize=FONTSIZE)
    ax.set_title("Bessel transfer of the normalised concept activation ŝ (x): + saw, − avoided", fontsize=FONTSIZE)
    r = 1
    for model in models:
        run = runs[model]
        maps = run["maps"]["trance"]
        for i in range(n_images):
            j = int(maps[i].flatten(1).amax(dim=1).argmax())
            b = bessel_transfer(maps[i, j].cpu())
            image = run["images"][i].cpu()
            panels = [
                (image.permute(1, 2, 0).numpy(), None, f"{model}: image {i}"),
                (_normalised(maps[i, j].cpu()).numpy(), "viridis", f"concept c{j + 1} (μ)"),
                (b.numpy(), "RdBu_r", "Bessel map"),
                (bessel_overlay(image, b).numpy(), None, "overlay"),
            ]
            for c, (data, cmap, title) in enumerate(panels):
                a = fig.add_subplot(grid[r, c])
                if cmap == "RdBu_r":
                    a.imshow(data, cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
                else:
                    a.imshow(data, cmap=cmap, interpolation="nearest")
                a.set_xticks([])
                a.set_yticks([])
                a.set_title(title, fontsize=FONTSIZE - 1)
            r += 1
    return fig


def concepts(ctx: StepContext) -> None:
    """VAE (TraNCE) vs NMF concepts per classifier: records, table, concept and Bessel figures."""
    from shared.pipeline.io import write_text
    from shared.pipeline.table import render
    from shared.results import write_records

    rec = Recorder(ctx.config)
    runs = {}
    for i in range(len(ctx.models)):
        run = run_model(ctx, i, rec)
        runs[ctx.eval_batch(i).adapter.name] = run
        print(f"{ctx.eval_batch(i).adapter.name}: layer {run['layer']}, {run['fit_images_n']} fitting images, "
              f"VAE loss {run['vae_final_loss']:.4f}, seconds " + ", ".join(f"{k} {v:.2f}" for k, v in run["times"].items()))
    write_records(rec.records, ctx.output("records"))
    md, table_csv = render(rec.records, list(METRICS), list(METHODS), None,
                           f"TraNCE (VAE) vs NMF (ICE / DFF) concepts, k = {int(ctx.settings['k'])}: Faith = Coherence + Fidelity")
    table_path = ctx.output("table")
    write_text(table_path, md)
    write_text(str(table_path).rsplit(".", 1)[0] + ".csv", table_csv)
    fig = concepts_figure(runs, int(ctx.settings["figure_prototypes"]))
    save_figure(fig, ctx.output("figure"))
    plt.close(fig)
    fig = bessel_figure(runs, int(ctx.settings["figure_images"]))
    save_figure(fig, ctx.output("bessel"))
    plt.close(fig)


STEPS = {"concepts": concepts}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
