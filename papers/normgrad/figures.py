"""Figures and the class-sensitivity table of "There and Back Again" (Rebuffi et al., CVPR 2020).

Steps (declared in papers/normgrad/paper.yaml, run through ``shared.figure_step.step_main``), on
each model's evaluation subset of the classification dataset::

    python -m papers.normgrad.figures class_sensitivity --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... --methods normgrad normgrad_meta gradcam gradcam_meta \
        --out table=reports/normgrad/class_sensitivity.md records=reports/normgrad/class_sensitivity.json \
        --config-json '{...}'
    python -m papers.normgrad.figures layers --models data/models/resnet.safetensors --datasets <its dataset> \
        --methods gradcam_b1 ... gradcam_b4 normgrad_b1 ... normgrad_b4 normgrad_combined --maps-dir data/maps \
        --out figure=reports/normgrad/layers.png --config-json '{...}'

``layers`` (paper Fig. 3): Grad-CAM and NormGrad at the output of every block of the ResNet
(``gradcam_b<k>``, ``normgrad_b<k>``: its stages) and NormGrad combined over the stages, one
column per method of the step, from the shared maps (``data/maps/<model>/<method>.safetensors``);
rows are the first test images; each column title gives the method's pointing game / energy
pointing game over the whole evaluation subset.
``class_sensitivity`` (paper Table 3): for each image, maps for the highest- and the
lowest-scoring class (``shared.metrics.class_sensitivity``); the record ``class_sensitivity`` is
the mean Spearman correlation between the two (lower = more class-sensitive), and
``class_sensitivity_pointing_disagreement`` the share of images whose two maxima lie farther
apart than the pointing-game tolerance (higher = more class-sensitive). A constant map (e.g.
Grad-CAM's ReLU zeroes the whole map of a class with no positive evidence) has no ranking: its
Spearman correlation is undefined, and the image is excluded, as the authors do (TorchRay
``normgrad`` branch, examples/class_selectivity.py line 225: the mean over ``np.isfinite``
correlations). Per-image values go to ``Recorder.add`` with NaN on excluded images (images stay
aligned across methods; the record counts them in ``extra.excluded``); the share of such images
is the record ``class_sensitivity_constant_map``. The meta methods of the step (``normgrad_meta``,
``gradcam_meta``) are also run at every learning rate of :data:`META_LRS` (records
``class_sensitivity_lr<lr>`` and ``class_sensitivity_constant_map_lr<lr>``, e.g. ``_lr1e-2``),
each image's per-parameter gradient computed once for all of them
(:func:`papers.normgrad.meta.meta_layer_signals_sweep`). The table lists every (model, method,
lr) with the number of images used and excluded; the optional output ``sweep`` is the figure:
class sensitivity against the learning rate, one line per meta method, its method without the
meta step as a horizontal line, 95 % bootstrap CIs as bands.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from papers.normgrad.meta import DEFAULT_META_LR, meta_layer_signals_sweep  # noqa: E402
from papers.normgrad.method import MetaStepMixin  # noqa: E402
from shared.plotting import Recorder, applies, heatmap_colorbar, in_chunks, map_grid, row_label, show  # noqa: E402
from shared.explain import ClassTarget, build_explainer, normalize_maps  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.metrics import class_sensitivity, energy_pointing_game, pointing_game  # noqa: E402
from shared.pipeline.table import fmt  # noqa: E402

CLASS_SENSITIVITY_METRICS = ["class_sensitivity", "class_sensitivity_pointing_disagreement", "class_sensitivity_constant_map"]

#: Learning rates of the meta-step sweep: the authors' list (TorchRay ``normgrad`` branch,
#: examples/class_selectivity.py lines 283-289) and the one they ran, 2.5e-3 (lines 75, 295),
#: our default (``papers.normgrad.meta.DEFAULT_META_LR``).
META_LRS: tuple[float, ...] = (1e-2, 5e-3, 2.5e-3, 1e-3, 5e-4, 1e-4)


def lr_tag(lr: float) -> str:
    """``0.01`` -> ``1e-2``, ``0.0025`` -> ``2.5e-3`` (the suffix of the sweep's metric names)."""
    mantissa, exponent = f"{float(lr):e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def sweep_metric(lr: float, metric: str = "class_sensitivity") -> str:
    """The record metric of ``metric`` at meta-step learning rate ``lr``: ``class_sensitivity_lr1e-2``."""
    return f"{metric}_lr{lr_tag(lr)}"


def column_title(method: str) -> str:
    """``gradcam_b2`` -> ``gradcam L2`` (the block variants); other names unchanged."""
    return re.sub(r"_b(\d+)$", r" L\1", method)


def layers_figure(batch, maps: dict[str, torch.Tensor], n_show: int = 4) -> plt.Figure:
    """Rows: images; columns: the image, then each method's map (Grad-CAM and NormGrad per block, combined).

    ``maps[method]``: the method's maps (N, H, W) over the whole evaluation subset of ``batch``
    (the shared maps); the column titles score all N, the panels show the first ``n_show``.
    """
    adapter, images = batch.adapter, batch.images
    masks, boxes = batch.split.masks.to(images.device), batch.split.boxes.to(images.device)
    methods = list(maps)
    k = min(n_show, images.shape[0])
    fig, axes = map_grid(k, len(methods) + 1, extra_height=0.5)
    for c, m in enumerate(methods, start=1):
        method_maps = maps[m].to(images.device)
        pg = float(pointing_game(method_maps, masks).mean())
        epg = float(energy_pointing_game(method_maps, boxes).mean())
        shown = normalize_maps(method_maps[:k].cpu())
        for r in range(k):
            show(axes[r, c], images[r], shown[r], title=f"{column_title(m)}\nPG {pg:.2f} EPG {epg:.2f}" if r == 0 else None)
    for r in range(k):
        show(axes[r, 0], images[r], title=f"image ({adapter.name})" if r == 0 else None)
        row_label(axes[r, 0], batch.split.class_names[r])
    heatmap_colorbar(fig, axes)
    fig.suptitle(
        "Grad-CAM (gradcam L·) and NormGrad (normgrad L·) at each stage\n"
        f"PG / EPG: pointing game / energy pointing game over n = {images.shape[0]} images",
        fontsize=8,
    )
    return fig


def layers(ctx: StepContext, n_show: int = 4) -> None:
    """Fig. 3: the step's methods (per-block Grad-CAM and NormGrad, combined) on the step's one model, from the shared maps."""
    figure_path = ctx.output("figure")
    if len(ctx.models) != 1:
        raise ValueError(f"layers shows one model; the step lists {len(ctx.models)}")
    batch = ctx.eval_batch(0)
    name, n = Path(ctx.models[0]).stem, batch.images.shape[0]  # shared maps: data/maps/<checkpoint stem>/
    maps = {}
    for m in ctx.methods:
        if not applies(m, batch.adapter):
            continue
        maps[m] = ctx.maps(name, m)
        if maps[m].shape[0] != n:
            raise ValueError(
                f"{ctx.maps_dir / name / m}.safetensors holds {maps[m].shape[0]} maps but the evaluation subset has "
                f"{n} images: recompute the maps with this config's eval.n_images"
            )
    if not maps:
        raise ValueError(f"none of the methods {ctx.methods} applies to {batch.adapter.name}")
    fig = layers_figure(batch, maps, n_show)
    save_figure(fig, figure_path)
    plt.close(fig)


def _lookup(pairs: list[tuple[torch.Tensor, torch.Tensor]]):
    """``explain(images, classes)`` returning precomputed maps: those of the pair whose classes
    equal ``classes`` (the top- and the bottom-class maps of the whole evaluation subset)."""

    def explain(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        for c, maps in pairs:
            if torch.equal(c.to(classes.device), classes):
                return maps
        raise KeyError("no precomputed maps for these classes")

    return explain


def _add(rec: Recorder, values: torch.Tensor, **ident: str) -> None:
    """``rec.add`` unless the metric is undefined on every image (then no record: the table says so)."""
    if bool(torch.isfinite(values).any()):
        rec.add(values, **ident)


def _record_pair(rec: Recorder, result, *, method: str, model: str, dataset: str, lr: float | None, pointing: bool) -> None:
    """Records of one (method, lr): correlation (NaN = constant map, excluded) and the constant-map indicator."""
    constant = torch.isnan(result.correlation)
    ident = {"method": method, "model": model, "dataset": dataset}
    name = (lambda m: m) if lr is None else (lambda m: sweep_metric(lr, m))
    _add(rec, result.correlation, metric=name("class_sensitivity"), **ident)
    rec.add(constant.double(), metric=name("class_sensitivity_constant_map"), **ident)
    if pointing:  # a constant map has no maximum either: excluded as for the correlation
        disagreement = torch.where(constant, torch.full_like(result.pointing_disagreement, float("nan")), result.pointing_disagreement)
        _add(rec, disagreement, metric="class_sensitivity_pointing_disagreement", **ident)


def class_sensitivity_records(batch, methods: list[str], batch_size: int, rec: Recorder, lrs: tuple[float, ...] = META_LRS) -> None:
    """Top- vs bottom-class maps of every applicable method; records ``class_sensitivity`` etc.

    A meta method (``MetaStepMixin`` with ``meta=True``) is also run at every lr of ``lrs``
    (records ``class_sensitivity_lr<lr>``); its own record ``class_sensitivity`` is its run at
    its own lr. Meta methods explaining the same layer share one meta step per lr.
    """
    adapter, images = batch.adapter, batch.images
    model, dataset = adapter.name, batch.dataset
    with torch.no_grad():
        logits = torch.cat([adapter(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]).float()
    top, bottom = torch.argmax(logits, dim=1), torch.argmin(logits, dim=1)
    explainers = {m: build_explainer(m, adapter) for m in methods if applies(m, adapter)}
    meta = {m: e for m, e in explainers.items() if isinstance(e, MetaStepMixin) and e.meta}
    for m, e in explainers.items():
        if m in meta:
            continue

        def explain(x: torch.Tensor, c: torch.Tensor, e=e) -> torch.Tensor:
            return in_chunks(lambda xs, cs: e(xs, ClassTarget(cs.to(xs.device))), x, c, batch_size)

        result = class_sensitivity(images, logits, explain)
        _record_pair(rec, result, method=m, model=model, dataset=dataset, lr=None, pointing=True)
    if not meta:
        return
    size = tuple(images.shape[-2:])
    by_layer: dict[str, list[str]] = {}
    for m, e in meta.items():
        by_layer.setdefault(e.layer, []).append(m)
    for layer, group in by_layer.items():
        run = sorted({float(x) for x in lrs} | {float(meta[m].lr) for m in group}, reverse=True)
        # maps[(method, lr, which)]: chunks of (B, H, W); which 0 = top class, 1 = bottom class
        maps: dict[tuple[str, float, int], list[torch.Tensor]] = {}
        for i in range(0, images.shape[0], batch_size):
            x = images[i : i + batch_size]
            for which, classes in enumerate((top, bottom)):
                signals = meta_layer_signals_sweep(adapter, x, ClassTarget(classes[i : i + batch_size].to(x.device)), [layer], run)
                for lr, (A, G) in zip(run, signals):
                    for m in group:
                        maps.setdefault((m, lr, which), []).append(meta[m].map_from_signals(A[0], G[0], size).detach().float())
        for m in group:
            own = float(meta[m].lr)
            for lr in run:
                pairs = [(top, torch.cat(maps[(m, lr, 0)])), (bottom, torch.cat(maps[(m, lr, 1)]))]
                result = class_sensitivity(images, logits, _lookup(pairs))
                if lr in {float(x) for x in lrs}:
                    _record_pair(rec, result, method=m, model=model, dataset=dataset, lr=lr, pointing=False)
                if lr == own:
                    _record_pair(rec, result, method=m, model=model, dataset=dataset, lr=None, pointing=True)


def base_method(method: str) -> str:
    """The method without the meta step: ``normgrad_meta`` -> ``normgrad``."""
    return method.removesuffix("_meta")


def sweep_table(records, methods: list[str], lrs: tuple[float, ...] = META_LRS) -> str:
    """Markdown: one row per (model, method, lr), with the images used and the constant maps excluded."""
    by = {(r.dataset, r.model, r.method, r.metric): r for r in records}
    rows = sorted({(r.dataset, r.model) for r in records})
    title = (
        "**Class sensitivity against the meta step's learning rate (lower = more class-sensitive); images where "
        "the top- or the bottom-class map is constant are excluded (correlation undefined), as the authors do**"
    )
    lines = [
        title,
        "",
        "| dataset | model | method | lr | class_sensitivity ↓ | images used | constant maps (excluded) |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(d: str, mo: str, me: str, lr_text: str, metric: str, constant_metric: str) -> None:
        r, c = by.get((d, mo, me, metric)), by.get((d, mo, me, constant_metric))
        if r is None and c is None:
            return
        n_all = c.n if c is not None else r.n
        excluded = round(c.value * c.n) if c is not None else int(r.extra.get("excluded", 0))
        value = fmt(r) if r is not None else "undefined on every image"
        lines.append(f"| {d} | {mo} | {me} | {lr_text} | {value} | {n_all - excluded} | {excluded} |")

    for d, mo in rows:
        for me in methods:
            if (d, mo, me, "class_sensitivity_constant_map") not in by:
                continue
            if not me.endswith("_meta"):
                row(d, mo, me, "no meta step", "class_sensitivity", "class_sensitivity_constant_map")
                continue
            for lr in lrs:
                row(d, mo, me, lr_tag(lr), sweep_metric(lr), sweep_metric(lr, "class_sensitivity_constant_map"))
    lines += ["", f"Mean over the images used, with a 95 % bootstrap CI; the default lr of the meta methods is {lr_tag(DEFAULT_META_LR)}."]
    return "\n".join(lines) + "\n"


def sweep_figure(records, methods: list[str], lrs: tuple[float, ...] = META_LRS) -> plt.Figure:
    """Class sensitivity against the meta step's learning rate, one panel per model (log x axis).

    One line per meta method (CI band), its method without the meta step as a horizontal
    dashed line (CI band), the default lr as a dotted vertical line.
    """
    by = {(r.dataset, r.model, r.method, r.metric): r for r in records}
    panels = sorted({(r.dataset, r.model) for r in records})
    meta_methods = [m for m in methods if m.endswith("_meta")]
    colours = {m: f"C{i}" for i, m in enumerate(meta_methods)}
    fig, axes = plt.subplots(1, len(panels), figsize=(max(3.1 * len(panels), 5.0), 3.2), squeeze=False, sharey=True)
    xs = sorted(lrs)
    for ax, (d, mo) in zip(axes[0], panels):
        for m in meta_methods:
            pts = [(lr, by.get((d, mo, m, sweep_metric(lr)))) for lr in xs]
            pts = [(lr, r) for lr, r in pts if r is not None]
            if not pts:
                continue
            lx = [lr for lr, _ in pts]
            ax.plot(lx, [r.value for _, r in pts], "o-", color=colours[m], ms=3, lw=1.2, label=f"{m}")
            ax.fill_between(lx, [r.ci_low for _, r in pts], [r.ci_high for _, r in pts], color=colours[m], alpha=0.2, lw=0)
            for lr, r in pts:
                excluded = int(r.extra.get("excluded", 0))
                if excluded:
                    ax.annotate(str(excluded), (lr, r.value), textcoords="offset points", xytext=(0, 4), fontsize=5, color=colours[m], ha="center")
            base = by.get((d, mo, base_method(m), "class_sensitivity"))
            if base is not None:
                ax.axhline(base.value, color=colours[m], ls="--", lw=1, label=f"{base_method(m)} (no meta)")
                ax.axhspan(base.ci_low, base.ci_high, color=colours[m], alpha=0.08, lw=0)
        ax.axvline(DEFAULT_META_LR, color="0.5", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(f"{d} / {mo}", fontsize=7)
        ax.set_xlabel("meta-step learning rate", fontsize=7)
        ax.tick_params(labelsize=6)
    axes[0, 0].set_ylabel("Spearman ρ(top, bottom class map) ↓", fontsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, fontsize=6, loc="lower center", ncol=max(1, len(handles)), frameon=False)
    fig.suptitle(
        "Class sensitivity against the meta step's learning rate\n"
        f"bands: 95 % CI; small numbers: images with a constant map (excluded); dotted: default lr {lr_tag(DEFAULT_META_LR)}",
        fontsize=7,
    )
    fig.tight_layout(pad=0.4, rect=(0, 0.07, 1, 0.9))
    return fig


def class_sensitivity_step(ctx: StepContext) -> None:
    """Table 3: class sensitivity of every method of the step, per classifier, and the meta-step lr sweep."""
    from shared.pipeline.io import write_text
    from shared.pipeline.table import render
    from shared.results import write_records

    table_path, records_path = ctx.output("table"), ctx.output("records")
    methods = list(ctx.methods)
    # the sweep's learning rates: the authors' (META_LRS) unless the config's papers.normgrad.meta_lrs
    # says otherwise (the paper-scale rehearsal runs one: every code path, a sixth of the time)
    lrs = tuple(float(x) for x in ctx.settings.get("meta_lrs", META_LRS))
    rec = Recorder(ctx.config)
    for i, path in enumerate(ctx.models):
        batch = ctx.eval_batch(i)
        if batch.adapter.task != "classifier":
            raise ValueError(f"{path} is an embedding model: class sensitivity needs a classifier's classes")
        class_sensitivity_records(batch, methods, ctx.eval["batch_size"], rec, lrs)
    write_records(rec.records, records_path)
    main = [r for r in rec.records if r.metric in CLASS_SENSITIVITY_METRICS]
    md, table_csv = render(
        main, CLASS_SENSITIVITY_METRICS, methods, None,
        "Class sensitivity: Spearman correlation of the top- and bottom-class maps (lower = more class-sensitive) "
        "and share of images whose two maxima disagree (higher = more class-sensitive), over the images where neither "
        f"map is constant; share of images with a constant map (excluded; last column); meta step at lr {lr_tag(DEFAULT_META_LR)}",
    )
    write_text(table_path, md + "\n" + sweep_table(rec.records, methods, lrs))
    write_text(Path(table_path).with_suffix(".csv"), table_csv)
    if "sweep" in ctx.outputs:
        fig = sweep_figure(rec.records, methods, lrs)
        save_figure(fig, ctx.output("sweep"))
        plt.close(fig)


STEPS = {"class_sensitivity": class_sensitivity_step, "layers": layers}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
