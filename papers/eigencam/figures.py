"""Eigen-CAM's robustness experiment: localisation on FGSM-perturbed images (paper, Table III).

The step ``adversarial`` (declared in papers/eigencam/paper.yaml, run through
``shared.figure_step.step_main``), on each classifier's evaluation subset of the classification dataset::

    python -m papers.eigencam.figures adversarial --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... --methods eigencam gradcam gradcampp \
        --out table=reports/eigencam/adversarial.md records=reports/eigencam/adversarial.json \
              figure=reports/eigencam/adversarial.png --config-json '{...}'

FGSM (Goodfellow, Shlens & Szegedy, ICLR 2015): x' = clip_[0,1](x + ε · sign(∇_x CE(f(x), y))) with y
the true class, one step from the clean image, ε ∈ {0, 1, 2, 4, 8}/255 (0 = clean). Every method
explains the true class on x'; localisation is scored against the clean ground truth (the noise
moves no object). Result metric names carry ε in 1/255 units: ``wsol_fixed_fgsm4``,
``pointing_game_fgsm4``, ``energy_pointing_game_fgsm4``; ``wsol_fixed_drop_fgsm8`` is the
per-image loss of WSOL hits from clean to ε = 8/255 (paired, so its CI is that of the
difference); ``accuracy_fgsm4`` (method ``classifier``) is the classifier's accuracy on x'.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from shared.plotting import Recorder, applies, class_explainer, in_chunks, method_label  # noqa: E402
from shared.explain import check_images, frozen  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.metrics import cam_localisation, energy_pointing_game, pointing_game  # noqa: E402
from shared.models import ModelAdapter  # noqa: E402

EPSILONS_255 = (0, 1, 2, 4, 8)
"""Perturbation strengths in units of 1/255 (0 = the clean image)."""

LOCALISATION = ("wsol_fixed", "pointing_game", "energy_pointing_game")


def fgsm_direction(adapter: ModelAdapter, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """sign(∇_x CE(f(x), y)) for a batch (B, 3, H, W), parameters frozen.

    The loss is summed over the batch: in eval mode each image's loss depends on that image
    only, so the gradient of the sum is every image's own gradient.
    """
    check_images(images, adapter)
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be (B,) = ({images.shape[0]},), got {tuple(labels.shape)}")
    x = images.detach().clone().requires_grad_(True)
    with frozen(adapter), torch.enable_grad():
        loss = F.cross_entropy(adapter(x), labels.to(x.device), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.sign()


def fgsm(images: torch.Tensor, direction: torch.Tensor, epsilons: Sequence[float]) -> torch.Tensor:
    """x + ε · direction, clipped to [0, 1], for every ε: (E, B, 3, H, W)."""
    eps = torch.tensor([float(e) for e in epsilons], dtype=images.dtype, device=images.device)
    if bool((eps < 0).any()):
        raise ValueError(f"FGSM strengths must be >= 0, got {list(epsilons)}")
    return (images[None] + eps.view(-1, 1, 1, 1, 1) * direction[None]).clamp(0, 1)


def perturbed_batch(adapter: ModelAdapter, images: torch.Tensor, labels: torch.Tensor, epsilons_255: Sequence[int], batch_size: int) -> torch.Tensor:
    """FGSM images for every strength, (E, B, 3, H, W), the gradient taken in chunks of ``batch_size``."""
    direction = in_chunks(lambda x, y: fgsm_direction(adapter, x, y), images, labels, batch_size)
    return fgsm(images, direction.to(images.dtype), [e / 255 for e in epsilons_255])


def localisation_scores(maps: torch.Tensor, masks: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-image WSOL hits (CAM threshold 0.2, IoU ≥ 0.5), pointing game and energy pointing game."""
    return {
        "wsol_fixed": cam_localisation(maps, boxes),
        "pointing_game": pointing_game(maps, masks),
        "energy_pointing_game": energy_pointing_game(maps, boxes),
    }


def adversarial_run(batch, methods: list[str], epsilons_255: Sequence[int], batch_size: int, rec: Recorder) -> dict:
    """Scores of every method at every strength for one model; records added to ``rec``."""
    adapter, images = batch.adapter, batch.images
    labels = batch.split.labels.to(images.device)
    masks, boxes = batch.split.masks.to(images.device), batch.split.boxes.to(images.device)
    n = images.shape[0]
    noisy = perturbed_batch(adapter, images, labels, epsilons_255, batch_size).flatten(0, 1)  # (E·B, 3, H, W)
    every_label = labels.repeat(len(epsilons_255))
    with torch.no_grad():
        predicted = torch.cat([adapter(noisy[i : i + batch_size]).argmax(1) for i in range(0, noisy.shape[0], batch_size)])
    correct = (predicted == every_label).double().view(len(epsilons_255), n)
    model, dataset = adapter.name, batch.dataset
    for k, e in enumerate(epsilons_255):
        rec.add(correct[k], metric=f"accuracy_fgsm{e}", method="classifier", model=model, dataset=dataset)
    scores: dict[str, dict[str, torch.Tensor]] = {}
    for m in methods:
        if not applies(m, adapter):
            continue
        maps = in_chunks(class_explainer(m, adapter), noisy, every_label, batch_size).view(len(epsilons_255), n, *images.shape[-2:])
        per_eps = [localisation_scores(maps[k], masks, boxes) for k in range(len(epsilons_255))]
        scores[m] = {metric: torch.stack([s[metric] for s in per_eps]) for metric in LOCALISATION}  # (E, B)
        for metric in LOCALISATION:
            for k, e in enumerate(epsilons_255):
                rec.add(scores[m][metric][k], metric=f"{metric}_fgsm{e}", method=m, model=model, dataset=dataset)
                if e > 0:
                    drop = scores[m][metric][0] - scores[m][metric][k]
                    rec.add(drop, metric=f"{metric}_drop_fgsm{e}", method=m, model=model, dataset=dataset)
    return scores


AXIS_LABELS = {"wsol_fixed": "WSOL accuracy\n(normalised map > 0.2, IoU ≥ 0.5)", "pointing_game": "pointing game"}
"""The y-axis label of each measure the figure plots."""

FONTSIZE = 8
"""Smallest font size (pt) of the figure: ticks, labels, titles and the legend."""


def adversarial_figure(runs: dict[str, dict], epsilons_255: Sequence[int], records: dict) -> plt.Figure:
    """Per model (row): WSOL accuracy and pointing game vs ε, one line per method (bootstrap CI
    band) and the classifier's accuracy (dashed); one legend for the whole figure, below it."""
    fig, axes = plt.subplots(len(runs), 2, figsize=(7.0, 2.5 * len(runs) + 0.7), squeeze=False, layout="constrained")
    colours = plt.get_cmap("tab10")
    entries: dict[str, object] = {}
    for r, (model, scores) in enumerate(runs.items()):
        for c, metric in enumerate(("wsol_fixed", "pointing_game")):
            ax = axes[r, c]
            for k, m in enumerate(scores):
                recs = [records[(model, m, f"{metric}_fgsm{e}")] for e in epsilons_255]
                (line,) = ax.plot(list(epsilons_255), [x.value for x in recs], marker="o", markersize=3, color=colours(k), linewidth=1)
                ax.fill_between(list(epsilons_255), [x.ci_low for x in recs], [x.ci_high for x in recs], color=colours(k), alpha=0.15, linewidth=0)
                entries.setdefault(method_label(m), line)
            acc = [records[(model, "classifier", f"accuracy_fgsm{e}")].value for e in epsilons_255]
            (line,) = ax.plot(list(epsilons_255), acc, linestyle="--", color="0.5", linewidth=0.8)
            entries.setdefault("classifier accuracy", line)
            ax.set_xticks(list(epsilons_255))
            ax.set_xlabel("FGSM ε (×1/255)", fontsize=FONTSIZE)
            ax.set_ylabel(AXIS_LABELS[metric], fontsize=FONTSIZE)
            ax.set_ylim(-0.05, 1.05)
            ax.tick_params(labelsize=FONTSIZE)
            ax.set_title(model, fontsize=FONTSIZE + 1)
    fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncol=min(len(entries), 5), fontsize=FONTSIZE, frameon=False)
    fig.suptitle(f"Localisation under FGSM: mean over images, {_ci_text(records)}bootstrap CI bands", fontsize=FONTSIZE + 1)
    return fig


def _ci_text(records: dict) -> str:
    """The CI level of the records ("95 % "), from any record's ``extra.ci``; "" if none says."""
    for r in records.values():
        ci = getattr(r, "extra", {}).get("ci")
        if ci is not None:
            return f"{round(100 * float(ci))} % "
    return ""


def render_tables(records: list, methods: list[str], epsilons_255: Sequence[int]) -> tuple[str, str]:
    """Markdown (one table per measure) and a CSV of every record."""
    from shared.pipeline.table import render

    sections, csvs = [], []
    groups = [(f"{metric} under FGSM (columns: ε × 255)", [f"{metric}_fgsm{e}" for e in epsilons_255], methods) for metric in LOCALISATION]
    groups.append(("classifier accuracy under FGSM", [f"accuracy_fgsm{e}" for e in epsilons_255], ["classifier"]))
    groups.append(("loss from clean to ε = 8/255 (paired; lower = more robust)", [f"{m}_drop_fgsm{max(epsilons_255)}" for m in LOCALISATION], methods))
    for title, metrics, rows in groups:
        md, table_csv = render(records, metrics, rows, None, title)
        sections.append(md)
        csvs.append(table_csv)
    return "\n".join(sections), "".join(csvs)


def adversarial(ctx: StepContext) -> None:
    """Table III: localisation of every method at every FGSM strength, per classifier."""
    from shared.pipeline.io import write_text
    from shared.results import write_records

    table_path, records_path, figure_path = ctx.output("table"), ctx.output("records"), ctx.output("figure")
    methods = list(ctx.methods)
    epsilons = sorted(set(EPSILONS_255) | {0})
    rec = Recorder(ctx.config)
    runs = {}
    for i, path in enumerate(ctx.models):
        batch = ctx.eval_batch(i)
        if batch.adapter.task != "classifier":
            raise ValueError(f"{path} is an embedding model: FGSM on the true class needs a classifier")
        runs[batch.adapter.name] = adversarial_run(batch, methods, epsilons, ctx.eval["batch_size"], rec)
    write_records(rec.records, records_path)
    md, table_csv = render_tables(rec.records, methods, epsilons)
    write_text(table_path, md)
    write_text(Path(table_path).with_suffix(".csv"), table_csv)
    by = {(r.model, r.method, r.metric): r for r in rec.records}
    fig = adversarial_figure(runs, epsilons, by)
    save_figure(fig, figure_path)
    plt.close(fig)


STEPS = {"adversarial": adversarial}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
