"""Figures of the Grad-CAM paper, with every method of the four CAM-family papers beside it.

Steps (declared in papers/gradcam/paper.yaml, run through ``shared.figure_step.step_main``)::

    python -m papers.gradcam.figures qualitative --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... --methods gradcam guided_gradcam ... --maps-dir data/maps \
        --out figure=reports/gradcam/qualitative.png --config-json '{...}'
    python -m papers.gradcam.figures pairs --models ... --datasets <the pairs dataset, once per model> ... \
        --methods gradcam guided_gradcam gradcampp eigencam normgrad \
        --out figure=reports/gradcam/class_discriminative.png table=reports/gradcam/class_discriminativeness.md \
              records=reports/gradcam/pairs.json --config-json '{...}'
    python -m papers.gradcam.figures sanity --models data/models/resnet.safetensors --datasets <its dataset> \
        --methods ... --out figure=reports/gradcam/sanity.png records=reports/gradcam/sanity.json --config-json '{...}'

Images are the pipeline's evaluation subset (first ``eval.n_images`` test images of the model's
dataset; for pairs, the first ``eval.n_images`` images of the pairs dataset whose two classes the
classifier knows). ``qualitative`` shows the first three images of each classifier's evaluation
subset with the shared maps (``data/maps/<model>/<method>.safetensors``, computed once by the
explain job; a method not defined for a model gets a blank panel). Maps are min–max normalised
per image for display only (``shared.explain.normalize_maps``); the numbers use the raw maps.
Records: ``pairs.json`` (``mass_on_object``, ``mass_on_other``, ``mass_object_minus_other`` on the
pairs dataset) and ``sanity.json`` (``randomised_spearman_<block>``, ``randomised_ssim_<block>``,
``randomised_constant_map_<block>``: a map made constant by randomisation has an undefined rank
correlation, counted as 0).
"""

from __future__ import annotations


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from shared.plotting import (  # noqa: E402
    Recorder,
    applies,
    class_explainer,
    heatmap_colorbar,
    in_chunks,
    map_grid,
    method_label,
    row_label,
    show,
    undefined_as_zero,
    write_records_and_table,
)
from shared.data import load_split, read_meta  # noqa: E402
from shared.explain import normalize_maps  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.steps.maps_grid import qualitative_figure, shared_maps  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.metrics import bootstrap_ci, cascading_randomisation  # noqa: E402
from shared.models import ModelAdapter  # noqa: E402

PAIR_METRICS = ["mass_on_object", "mass_on_other", "mass_object_minus_other"]


# ---------------------------------------------------------------- qualitative grid (Fig. 1)


def qualitative(ctx: StepContext, n_show: int = 3) -> None:
    """Fig. 1: the first ``n_show`` images of each classifier's evaluation subset, every method's shared map."""
    figure_path = ctx.output("figure")
    batches, maps = [], {}
    for i in range(len(ctx.models)):
        b = ctx.eval_batch(i)
        if b.adapter.task != "classifier":
            continue
        batches.append(b)
        k = min(n_show, b.images.shape[0])
        for m in ctx.methods:
            if applies(m, b.adapter):
                maps[b.adapter.name, m] = shared_maps(ctx, i, m, b.images.shape[0])[:k]
    if not batches:
        raise ValueError("qualitative needs at least one classifier among --models")
    fig = qualitative_figure(batches, ctx.methods, maps, n_show)
    save_figure(fig, figure_path)
    plt.close(fig)


# ---------------------------------------------------------------- class discriminativeness (Fig. 1 c, i)


def pair_partners(image_ids: list[str]) -> torch.Tensor:
    """For each row of a two-object split, the index of the other row of the same image."""
    codes = {k: i for i, k in enumerate(dict.fromkeys(image_ids))}
    ids = torch.tensor([codes[k] for k in image_ids])
    same = (ids[:, None] == ids[None, :]) & ~torch.eye(ids.numel(), dtype=torch.bool)
    counts = same.sum(1)
    if bool((counts != 1).any()):
        bad = sorted({image_ids[i] for i in torch.nonzero(counts != 1).flatten().tolist()})[:5]
        raise ValueError(f"every image of a pair split must have exactly two objects; these do not: {bad}")
    return same.float().argmax(1)


def object_mass_shares(maps: torch.Tensor, own: torch.Tensor, other: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Share of each map's positive mass on the explained object and on the other object.

    ``maps`` (B, H, W) raw; ``own``/``other`` (B, H, W) bool object masks. Negative values are
    clipped (a map's evidence is its positive part); a map with no positive mass scores 0, 0.
    Returns two (B,) float64 tensors in [0, 1]; their sum is ≤ 1 (the rest is background).
    """
    if maps.shape != own.shape or maps.shape != other.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(own.shape)}, {tuple(other.shape)} must have the same shape")
    pos = maps.clamp_min(0).double().flatten(1)
    total = pos.sum(1)
    safe = total.clamp_min(1e-300)
    on = torch.where(total > 0, (pos * own.flatten(1)).sum(1) / safe, torch.zeros_like(total))
    off = torch.where(total > 0, (pos * other.flatten(1)).sum(1) / safe, torch.zeros_like(total))
    return on, off


def load_pairs(adapter: ModelAdapter, dataset_dir: str, n_images: int, device: torch.device):
    """The first ``n_images`` pair images whose two classes the classifier knows, labels in its indexing."""
    split = load_split(dataset_dir, "test", limit=n_images)
    known = adapter.classes or split.classes
    n_logits = getattr(adapter.model, "num_classes", None)
    if n_logits is not None and n_logits != len(known):
        # e.g. paper-scale: ImageNet classifiers (1000 logits) whose checkpoints name Imagenette's
        # 10 classes; VOC pair images would need a VOC -> ImageNet class mapping (not implemented)
        raise ValueError(
            f"{adapter.name} has {n_logits} outputs but {len(known)} class names, so the classes of "
            f"{dataset_dir} cannot be matched to its logits by name; class discriminativeness needs a "
            f"classifier trained on the pairs dataset's classes (as in the default benchmark)"
        )
    index = {name: i for i, name in enumerate(known)}
    partner = pair_partners(split.image_ids)
    ok = torch.tensor([n in index for n in split.class_names])
    keep = ok & ok[partner]
    if not bool(keep.any()):
        raise ValueError(
            f"no pair image of {dataset_dir} has both classes among the classifier's {known}; "
            f"generate the pairs dataset with the classifier's classes (its n_classes in the config's datasets section)"
        )
    rows = torch.nonzero(keep).flatten()
    labels = torch.tensor([index[split.class_names[i]] for i in rows.tolist()])
    remap = torch.full((len(split.image_ids),), -1, dtype=torch.long)
    remap[rows] = torch.arange(rows.numel())
    return {
        "images": split.images[rows].to(device),
        "labels": labels.to(device),
        "masks": split.masks[rows],
        "other_masks": split.masks[partner[rows]],
        "partner": remap[partner[rows]],
        "class_names": [split.class_names[i] for i in rows.tolist()],
    }


def pairs_figure(adapter: ModelAdapter, pairs: dict, maps: dict[str, torch.Tensor], shares: dict, methods: list[str], n_show: int = 3) -> plt.Figure:
    """Rows: pair images; columns: the image, then per method its map for each object's class."""
    first_rows = [i for i in range(pairs["labels"].numel()) if int(pairs["partner"][i]) > i][:n_show]
    fig, axes = map_grid(len(first_rows), 1 + 2 * len(methods), extra_height=0.6 + 0.2 * len(first_rows))  # per-panel titles
    for r, i in enumerate(first_rows):
        j = int(pairs["partner"][i])
        show(axes[r, 0], pairs["images"][i], title=f"image ({adapter.name})" if r == 0 else None)
        row_label(axes[r, 0], f"{pairs['class_names'][i]} + {pairs['class_names'][j]}")
        for c, m in enumerate(methods):
            for s, row in enumerate((i, j)):
                on, off = shares[m][0][row], shares[m][1][row]
                title = f"{pairs['class_names'][row]}: {on:.2f} / {off:.2f}"
                if r == 0:
                    title = f"{method_label(m)}\n{title}"
                show(axes[r, 1 + 2 * c + s], pairs["images"][row], normalize_maps(maps[m][row : row + 1])[0], title=title)
    heatmap_colorbar(fig, axes)
    fig.suptitle(
        "Each map explains one class (named above it): share of the map's positive mass on that class's object / on the other object",
        fontsize=8,
    )
    return fig


def pairs(ctx: StepContext) -> None:
    """Fig. 1 (c, i), quantified: map mass on the explained vs the other object, per classifier and method."""
    from shared.models import load_checkpoint

    figure_path, table_path, records_path = ctx.output("figure"), ctx.output("table"), ctx.output("records")
    rec = Recorder(ctx.config)
    figure_done = False
    datasets = []
    for path, dataset_dir in zip(ctx.models, ctx.datasets):
        adapter = load_checkpoint(path, device=ctx.device).explain_mode()
        if adapter.task != "classifier":
            continue
        dataset = read_meta(dataset_dir)["name"]
        datasets.append(dataset)
        pair_data = load_pairs(adapter, dataset_dir, ctx.eval["n_images"], ctx.device)
        methods = [m for m in ctx.methods if applies(m, adapter)]
        maps, shares = {}, {}
        for m in methods:
            maps[m] = in_chunks(class_explainer(m, adapter), pair_data["images"], pair_data["labels"], ctx.eval["batch_size"]).cpu()
            on, off = object_mass_shares(maps[m], pair_data["masks"], pair_data["other_masks"])
            shares[m] = (on, off)
            for metric, values in zip(PAIR_METRICS, (on, off, on - off)):
                rec.add(values, metric=metric, method=m, model=adapter.name, dataset=dataset)
        if not figure_done:  # the paper's figure: the first model given (the ResNet)
            fig = pairs_figure(adapter, pair_data, maps, shares, [m for m in ctx.methods if m in maps])
            save_figure(fig, figure_path)
            plt.close(fig)
            figure_done = True
    if not figure_done:
        raise ValueError("pairs needs at least one classifier among --models")
    write_records_and_table(
        rec.records, records_path, table_path, PAIR_METRICS, ctx.methods,
        f"Share of positive map mass on the explained object and on the other object ({', '.join(dict.fromkeys(datasets))})",
    )


# ---------------------------------------------------------------- sanity check (Adebayo et al. 2018)


def randomisation_layers(adapter: ModelAdapter) -> list[str]:
    """The model's top-level parameterised blocks, from the output towards the input ("model.<name>")."""
    names = [n for n, child in adapter.model.named_children() if any(True for _ in child.parameters())]
    if not names:
        raise ValueError(f"model {adapter.name!r} has no parameterised top-level modules to randomise")
    return [f"model.{n}" for n in reversed(names)]


def sanity_curves(adapter: ModelAdapter, images: torch.Tensor, methods: list[str], batch_size: int, seed: int):
    """Per method: original maps and cascading-randomisation steps (Spearman, SSIM per image)."""
    with torch.no_grad():
        predicted = torch.cat([adapter(images[i : i + batch_size]).argmax(1) for i in range(0, images.shape[0], batch_size)])
    layers = randomisation_layers(adapter)
    out = {}
    for m in methods:

        def explain(model: nn.Module, m: str = m) -> torch.Tensor:
            return in_chunks(class_explainer(m, model), images, predicted, batch_size)  # type: ignore[arg-type]

        out[m] = cascading_randomisation(adapter, layers, explain, seed=seed, keep_maps=True)
    return layers, out


def sanity_figure(adapter: ModelAdapter, images: torch.Tensor, layers: list[str], curves: dict, ci: float, n_resamples: int, seed: int) -> plt.Figure:
    """Top: Spearman and SSIM vs randomisation step (mean, bootstrap CI); bottom: maps of image 0,
    one row per method (labelled on the left), one column per step (labelled on top: the block
    randomised last, every block above it already randomised), one colour bar."""
    methods = list(curves)
    steps = ["original", *[name.removeprefix("model.") for name in layers]]
    panel = 0.95
    fig = plt.figure(figsize=(max(7.0, panel * len(steps) + 1.3), 3.0 + panel * len(methods) + 0.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[3.0, panel * len(methods) + 0.5])
    colours = plt.get_cmap("tab10")
    axes = top.subplots(1, 2)
    for ax, (key, label) in zip(axes, (("spearman", "Spearman ρ"), ("ssim", "SSIM"))):
        for k, m in enumerate(methods):
            _, rsteps = curves[m]
            stats = [bootstrap_ci(undefined_as_zero(getattr(s, key))[0], n_resamples=n_resamples, ci=ci, seed=seed) for s in rsteps]
            x = list(range(len(steps)))
            mean = [1.0] + [s.value for s in stats]
            lo = [1.0] + [s.low for s in stats]
            hi = [1.0] + [s.high for s in stats]
            ax.plot(x, mean, marker="o", markersize=3, color=colours(k), label=method_label(m), linewidth=1)
            ax.fill_between(x, lo, hi, color=colours(k), alpha=0.2, linewidth=0)
        ax.set_xticks(range(len(steps)))
        ax.set_xticklabels(steps, rotation=45, fontsize=8)
        ax.set_xlabel("randomised from the top down to block", fontsize=8)
        ax.set_ylabel(f"{label}\nwith the original map", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.axhline(0, color="0.7", linewidth=0.5)
    handles, labels = axes[0].get_legend_handles_labels()
    top.legend(handles, labels, fontsize=8, loc="outside right center", frameon=False)
    top.suptitle(f"Cascading randomisation from the top ({adapter.name}): mean over images, {int(100 * ci)} % bootstrap CI", fontsize=9)
    grid = bottom.subplots(len(methods), len(steps), squeeze=False)
    for r, m in enumerate(methods):
        original, rsteps = curves[m]
        panels = [original[:1], *[s.maps[:1] for s in rsteps]]
        for c, maps in enumerate(panels):
            show(grid[r, c], images[0], normalize_maps(maps.cpu())[0], title=steps[c] if r == 0 else None)
        row_label(grid[r, 0], method_label(m))
    heatmap_colorbar(bottom, grid)
    bottom.suptitle("Maps of the first image; column: the block randomised last (every block left of it too)", fontsize=8)
    return fig


def sanity(ctx: StepContext) -> None:
    """Adebayo et al. 2018: cascading randomisation of the step's one model, from the top."""
    if len(ctx.models) != 1:
        raise ValueError(f"sanity randomises one model; the step lists {len(ctx.models)}")
    figure_path, records_path = ctx.output("figure"), ctx.output("records")
    batch = ctx.eval_batch(0)
    adapter = batch.adapter
    methods = [m for m in ctx.methods if applies(m, adapter)]
    seed = int(ctx.config.get("seed", 0))
    layers, curves = sanity_curves(adapter, batch.images, methods, ctx.eval["batch_size"], seed)
    rec = Recorder(ctx.config)
    for m, (_, rsteps) in curves.items():
        for s in rsteps:
            short = s.layer.removeprefix("model.").replace(".", "_")
            spearman, constant = undefined_as_zero(s.spearman)
            rec.add(spearman, metric=f"randomised_spearman_{short}", method=m, model=adapter.name, dataset=batch.dataset)
            rec.add(undefined_as_zero(s.ssim)[0], metric=f"randomised_ssim_{short}", method=m, model=adapter.name, dataset=batch.dataset)
            rec.add(constant, metric=f"randomised_constant_map_{short}", method=m, model=adapter.name, dataset=batch.dataset)
    from shared.results import write_records

    write_records(rec.records, records_path)
    fig = sanity_figure(adapter, batch.images.cpu(), layers, curves, float(ctx.eval["ci"]), int(ctx.eval["bootstrap"]), seed)
    save_figure(fig, figure_path)
    plt.close(fig)


# ---------------------------------------------------------------- entry point

STEPS = {"qualitative": qualitative, "pairs": pairs, "sanity": sanity}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
