"""Figures of the Grad-CAM paper, with every method of the four CAM-family papers beside it.

Steps (declared in papers/gradcam/paper.yaml, run through ``shared.figure_step.step_main``)::

    python -m papers.gradcam.figures qualitative --models data/models/resnet.safetensors ... \
        --datasets <each model's dataset> ... --methods gradcam guided_gradcam ... --maps-dir data/maps \
        --out figure=reports/gradcam/qualitative.png --config-json '{...}'
    python -m papers.gradcam.figures pairs --models ... --datasets <the pairs dataset, once per model> ... \
        --methods gradcam guided_gradcam gradcampp eigencam normgrad \
        --out figure=reports/gradcam/class_discriminative.png table=reports/gradcam/class_discriminativeness.md \
              records=reports/gradcam/pairs.json --config-json '{...}'
    python -m papers.gradcam.figures pointing --models ... --datasets <the pairs dataset, once per model> ... \
        --methods gradcam guided_gradcam gradcampp eigencam normgrad \
        --out table=reports/gradcam/pointing_pairs.md records=reports/gradcam/pointing_pairs.json --config-json '{...}'
    python -m papers.gradcam.figures sanity --models data/models/resnet.safetensors --datasets <its dataset> \
        --methods ... --out figure=reports/gradcam/sanity.png records=reports/gradcam/sanity.json --config-json '{...}'

Images are the pipeline's evaluation subset (first ``eval.n_images`` test images of the model's
dataset; for pairs, of the first ``eval.n_images`` images of the pairs dataset those whose two
classes the classifier knows; for pointing, the first ``eval.n_images`` images of the pairs
dataset). A classifier is matched to the pairs dataset's classes by name, unless its label space
is ImageNet-1k (:func:`classifier_label_space`) and the dataset's classes are PASCAL VOC's: then
each VOC class is explained at its mapped ImageNet class (``shared.data.voc_imagenet``), and
``pairs`` takes the first ``eval.n_images`` images with objects of exactly two mapped classes
(:func:`load_mapped_pairs`; what it leaves out is counted in the table's caption and the records'
``extra.selection``). ``qualitative`` shows the first three images of each classifier's evaluation
subset with the shared maps (``data/maps/<model>/<method>.safetensors``, computed once by the
explain job; a method not defined for a model gets a blank panel). Maps are min–max normalised
per image for display only (``shared.explain.normalize_maps``); the numbers use the raw maps.
Records: ``pairs.json`` (``mass_on_object``, ``mass_on_other``, ``mass_object_minus_other`` on the
pairs dataset), ``pointing_pairs.json`` (``pointing_game_all``, ``pointing_game_difficult``: TorchRay's
pointing game, :func:`pointing`) and ``sanity.json`` (``randomised_spearman_<block>``, ``randomised_ssim_<block>``,
``randomised_constant_map_<block>``: a map made constant by randomisation has an undefined rank
correlation, counted as 0).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

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
from shared.data import load_split, read_meta, read_table  # noqa: E402
from shared.data.convert import VOC_CLASSES  # noqa: E402
from shared.data.voc_imagenet import imagenet_name, is_mapped, mapped_targets  # noqa: E402
from shared.explain import normalize_maps  # noqa: E402
from shared.figure_step import StepContext, step_main  # noqa: E402
from shared.steps.maps_grid import qualitative_figure, shared_maps  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.metrics import bootstrap_ci, cascading_randomisation, pointing_hits  # noqa: E402
from shared.models import ModelAdapter  # noqa: E402

PAIR_METRICS = ["mass_on_object", "mass_on_other", "mass_object_minus_other"]
POINTING_METRICS = ["pointing_game_all", "pointing_game_difficult"]
IMAGENET_1K = "imagenet-1k"
"""The label space of an ImageNet-1k classifier (the Imagenette dataset's ``label_space``)."""


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


# ---------------------------------------------------------------- label spaces and (image, class) rows


def classifier_label_space(adapter: ModelAdapter, checkpoint: str | Path | None = None) -> str | None:
    """``"imagenet-1k"`` when the classifier's logits are ImageNet-1k's classes, else None (its
    class names, ``adapter.classes``, index its logits, as for the default benchmark's classifiers).

    Read from the dataset the checkpoint was made on (its ``meta.json`` ``label_space``, which the
    Imagenette converter writes); without it, from the model: 1000 logits but not 1000 class names
    (the paper-scale checkpoints name Imagenette's 10 classes of ImageNet's 1000) is ImageNet-1k.
    """
    if checkpoint is not None:
        from shared.models.checkpoint import read_sidecar

        data = (read_sidecar(checkpoint).get("dataset") or {}).get("path")
        if data and (Path(data) / "meta.json").is_file():
            space = read_meta(data).get("label_space")
            if space:
                return str(space)
    n_logits = getattr(adapter.model, "num_classes", None)
    if n_logits == 1000 and len(adapter.classes) != 1000:
        return IMAGENET_1K
    return None


def is_voc_like(classes: list[str]) -> bool:
    """Whether a dataset's classes are PASCAL VOC classes (the ones ``shared.data.voc_imagenet`` maps)."""
    return bool(classes) and set(classes) <= set(VOC_CLASSES)


@dataclass
class ClassRows:
    """One row per (image, class present in it): the unit TorchRay's pointing game scores and
    the mapped pair images are explained on. Rows are grouped by image (the split's order), the
    classes of an image in the order of their first object.

    ``images`` (N, 3, H, W) holds each image once, ``image_index`` (R,) the row's image;
    ``masks`` (R, H, W) the union of the masks (VOC: boxes) of that class's objects in the image;
    ``n_classes`` (R,) how many classes the image's annotation has (every object counts);
    ``all_difficult`` (R,) whether every object of that class is flagged PASCAL-difficult.
    """

    images: torch.Tensor
    image_index: torch.Tensor
    image_ids: list[str]
    class_names: list[str]
    masks: torch.Tensor
    n_classes: torch.Tensor
    all_difficult: torch.Tensor

    def __len__(self) -> int:
        return len(self.class_names)


def class_rows(split, pascal_difficult: dict[str, list[int]] | None = None) -> ClassRows:
    """The (image, class) rows of a loaded split (``shared.data.load_split``: rows are objects)."""
    flagged = {(image_id, int(k)) for image_id, ks in (pascal_difficult or {}).items() for k in ks}
    groups: dict[str, dict[str, list[int]]] = {}
    for i, (image_id, name) in enumerate(zip(split.image_ids, split.class_names)):
        groups.setdefault(image_id, {}).setdefault(name, []).append(i)
    first_row, image_index, image_ids, names, masks, n_classes, all_difficult = [], [], [], [], [], [], []
    for n, (image_id, by_class) in enumerate(groups.items()):
        first_row.append(next(iter(by_class.values()))[0])
        for name, objs in by_class.items():
            image_index.append(n)
            image_ids.append(image_id)
            names.append(name)
            masks.append(split.masks[objs].any(0))
            n_classes.append(len(by_class))
            all_difficult.append(all((image_id, int(split.objects[i])) in flagged for i in objs))
    return ClassRows(
        images=split.images[first_row],
        image_index=torch.tensor(image_index, dtype=torch.long),
        image_ids=image_ids,
        class_names=names,
        masks=torch.stack(masks),
        n_classes=torch.tensor(n_classes, dtype=torch.long),
        all_difficult=torch.tensor(all_difficult, dtype=torch.bool),
    )


def imagenet_logits(adapter: ModelAdapter, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The classifier's logits (N, 1000) of ``images``, in batches, without gradients."""
    with torch.no_grad():
        return torch.cat([adapter(images[i : i + batch_size]).float() for i in range(0, images.shape[0], batch_size)])


# ---------------------------------------------------------------- class discriminativeness: the pair images


def load_pairs(
    adapter: ModelAdapter,
    dataset_dir: str,
    n_images: int,
    device: torch.device,
    label_space: str | None = None,
    batch_size: int = 32,
):
    """Pair images with labels in the classifier's indexing: each object explained at its class.

    A classifier trained on the pairs dataset's classes (the default benchmark): the first
    ``n_images`` pair images whose two classes the classifier knows, matched by name. An
    ImageNet-1k classifier (``label_space``, else :func:`classifier_label_space`) on VOC-like
    pairs data: :func:`load_mapped_pairs`. An ImageNet-1k classifier on other data is refused.
    """
    space = classifier_label_space(adapter) if label_space is None else label_space
    if space == IMAGENET_1K:
        classes = list(read_meta(dataset_dir)["classes"])
        if not is_voc_like(classes):
            n_logits = getattr(adapter.model, "num_classes", None)
            raise ValueError(
                f"{adapter.name} is an ImageNet-1k classifier ({n_logits} outputs but {len(adapter.classes)} class names): "
                f"its logits are matched to a pairs dataset's classes through the VOC -> ImageNet mapping "
                f"(shared.data.voc_imagenet), but the classes of {dataset_dir} ({classes[:5]}...) are not VOC classes; "
                f"class discriminativeness needs VOC-like pairs data or a classifier trained on the pairs dataset's classes"
            )
        return load_mapped_pairs(adapter, dataset_dir, n_images, device, batch_size)
    split = load_split(dataset_dir, "test", limit=n_images)
    known = adapter.classes or split.classes
    n_logits = getattr(adapter.model, "num_classes", None)
    if n_logits is not None and n_logits != len(known):
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


MAPPED_PAIR_REASONS = ("an object of an unmapped class", "not exactly two mapped classes")
"""Why an image of VOC-like pairs data is left out of the mapped class-discriminativeness test."""


def select_mapped_pairs(table: list[dict[str, str]], n_images: int) -> tuple[list[str], dict[str, Any]]:
    """The first ``n_images`` images (table order) whose objects all have mapped VOC classes, of
    exactly two distinct classes; and what was scanned and left out, by reason (an image with an
    unmapped object, e.g. a person, counts there even if it also has the wrong number of classes)."""
    classes: dict[str, list[str]] = {}
    for row in table:
        classes.setdefault(row["image_id"], []).append(row["class_name"])
    kept: list[str] = []
    left = Counter({reason: 0 for reason in MAPPED_PAIR_REASONS})
    scanned = 0
    for image_id, names in classes.items():
        if len(kept) == n_images:
            break
        scanned += 1
        if not all(is_mapped(n) for n in names):
            left[MAPPED_PAIR_REASONS[0]] += 1
        elif len(set(names)) != 2:
            left[MAPPED_PAIR_REASONS[1]] += 1
        else:
            kept.append(image_id)
    return kept, {"scanned": scanned, "kept": len(kept), "left_out": dict(left)}


def load_mapped_pairs(adapter: ModelAdapter, dataset_dir: str, n_images: int, device: torch.device, batch_size: int = 32):
    """VOC-like pair images for an ImageNet-1k classifier, through the VOC -> ImageNet mapping.

    The first ``n_images`` images whose objects belong to exactly two distinct *mapped* VOC
    classes (:func:`select_mapped_pairs`; images with a person, or with one class or three, are
    left out and counted in ``selection``). Each class of an image is one row, its mask the union
    of that class's boxes, the other class's union its ``other_masks``; it is explained at its
    mapped ImageNet target, the best-scoring ImageNet class of its set on that image
    (``shared.data.voc_imagenet.mapped_targets``).
    """
    kept, selection = select_mapped_pairs(read_table(dataset_dir, "test"), n_images)
    if not kept:
        raise ValueError(
            f"no image of {dataset_dir} (of {selection['scanned']} scanned) has objects of exactly two mapped VOC "
            f"classes; left out: {selection['left_out']}"
        )
    rows = class_rows(load_split(dataset_dir, "test", image_ids=kept))
    partner = torch.arange(len(rows)) ^ 1  # two rows per image, one per class
    images = rows.images.to(device)
    logits = imagenet_logits(adapter, images, batch_size)
    labels = mapped_targets(logits[rows.image_index.to(device)], rows.class_names)
    return {
        "images": images[rows.image_index.to(device)],
        "labels": labels,
        "masks": rows.masks,
        "other_masks": rows.masks[partner],
        "partner": partner,
        "class_names": rows.class_names,
        "target_names": [imagenet_name(i) for i in labels.tolist()],
        "selection": selection,
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
                explained = pairs["class_names"][row]
                if "target_names" in pairs:  # an ImageNet classifier: the VOC class and its explained ImageNet class
                    explained = f"{explained} ({pairs['target_names'][row]})"
                title = f"{explained}: {on:.2f} / {off:.2f}"
                if r == 0:
                    title = f"{method_label(m)}\n{title}"
                show(axes[r, 1 + 2 * c + s], pairs["images"][row], normalize_maps(maps[m][row : row + 1])[0], title=title)
    heatmap_colorbar(fig, axes)
    fig.suptitle(
        "Each map explains one class (named above it): share of the map's positive mass on that class's object / on the other object",
        fontsize=8,
    )
    return fig


def with_extra(rec: Recorder, **extra: Any) -> None:
    """Add ``extra`` fields to the record ``rec`` added last (what a step left out, a second summary)."""
    rec.records[-1] = replace(rec.records[-1], extra={**rec.records[-1].extra, **extra})


def selection_note(dataset: str, selection: dict[str, Any]) -> str:
    """A caption's account of the mapped pair images: scanned, kept, left out and why."""
    why = ", ".join(f"{n} with {reason}" for reason, n in selection["left_out"].items())
    return (
        f"{dataset} through the VOC -> ImageNet-1k mapping: {selection['kept']} of the first {selection['scanned']} "
        f"images kept (objects of exactly two mapped classes), left out: {why}"
    )


def classifiers(ctx: StepContext):
    """(checkpoint path, dataset directory, dataset name, adapter) of each classifier among the step's models."""
    from shared.models import load_checkpoint

    for path, dataset_dir in zip(ctx.models, ctx.datasets):
        adapter = load_checkpoint(path, device=ctx.device).explain_mode()
        if adapter.task == "classifier":
            yield path, dataset_dir, read_meta(dataset_dir)["name"], adapter


def pairs(ctx: StepContext) -> None:
    """Fig. 1 (c, i), quantified: map mass on the explained vs the other object, per classifier and method."""
    figure_path, table_path, records_path = ctx.output("figure"), ctx.output("table"), ctx.output("records")
    rec = Recorder(ctx.config)
    figure_done = False
    datasets = []
    notes = []
    for path, dataset_dir, dataset, adapter in classifiers(ctx):
        datasets.append(dataset)
        pair_data = load_pairs(
            adapter, dataset_dir, ctx.eval["n_images"], ctx.device,
            label_space=classifier_label_space(adapter, path), batch_size=ctx.eval["batch_size"],
        )
        selection = pair_data.get("selection")
        if selection is not None:
            notes.append(selection_note(dataset, selection))
        methods = [m for m in ctx.methods if applies(m, adapter)]
        maps, shares = {}, {}
        for m in methods:
            maps[m] = in_chunks(class_explainer(m, adapter), pair_data["images"], pair_data["labels"], ctx.eval["batch_size"]).cpu()
            on, off = object_mass_shares(maps[m], pair_data["masks"], pair_data["other_masks"])
            shares[m] = (on, off)
            for metric, values in zip(PAIR_METRICS, (on, off, on - off)):
                rec.add(values, metric=metric, method=m, model=adapter.name, dataset=dataset)
                if selection is not None:
                    with_extra(rec, selection=selection, targets=dict(Counter(pair_data["target_names"]).most_common()))
        if not figure_done:  # the paper's figure: the first model given (the ResNet)
            fig = pairs_figure(adapter, pair_data, maps, shares, [m for m in ctx.methods if m in maps])
            save_figure(fig, figure_path)
            plt.close(fig)
            figure_done = True
    if not figure_done:
        raise ValueError("pairs needs at least one classifier among --models")
    title = f"Share of positive map mass on the explained object and on the other object ({', '.join(dict.fromkeys(datasets))})"
    if notes:
        title += "; " + "; ".join(dict.fromkeys(notes))
    write_records_and_table(rec.records, records_path, table_path, PAIR_METRICS, ctx.methods, title)


# ---------------------------------------------------------------- pointing game (TorchRay's VOC 2007 protocol)

TORCHRAY_TOLERANCE = 15
"""TorchRay's tolerance, in pixels of the original image (``PointingGame(num_classes, tolerance=15)``,
torchray/benchmark/pointing_game.py line 50; ``PointingGameBenchmark`` passes it on, line 144)."""

VOC_LONGER_SIDE = 500
"""The longer side, in pixels, of PASCAL VOC's images (500 x 375, 375 x 500, 500 x 333, ...): the
resolution TorchRay's 15 px refer to, assumed for an image whose original size is not recorded."""

EBP_DIFFICULT_AREA = 0.25
"""Zhang et al.'s difficult subset: the explained class covers less than a quarter of the image."""

POINTING_REASONS = ("a class the classifier cannot explain", "every box of the class PASCAL-difficult")
"""Why an (image, class) row is left out of the pointing game."""


def pixel_sizes(rows: ClassRows, original_sizes: dict[str, list[int]] | None) -> torch.Tensor:
    """(R, 2): the height and width of one of our pixels in pixels of the row's original image.

    From the recorded original size (VOC: ``meta.json`` ``original_sizes``, [H0, W0]) as
    (H0 / H, W0 / W); without one, the image is taken as if its original had VOC's longer side of
    500 px (:data:`VOC_LONGER_SIDE`), so TorchRay's 15 px become 15 * max(H, W) / 500 of ours
    (1.92 px at the default benchmark's 64 px, 6.72 px at 224 px).
    """
    h, w = rows.masks.shape[1:]
    sizes = torch.empty(len(rows), 2, dtype=torch.float64)
    for r, image_id in enumerate(rows.image_ids):
        original = (original_sizes or {}).get(image_id)
        if original is None:
            scale = VOC_LONGER_SIDE / max(h, w)
            sizes[r] = torch.tensor([scale, scale], dtype=torch.float64)
        else:
            sizes[r] = torch.tensor([original[0] / h, original[1] / w], dtype=torch.float64)
    return sizes


def ebp_difficult(rows: ClassRows) -> torch.Tensor:
    """(R,) bool: Zhang et al.'s "difficult" (image, class) pairs: the class's boxes cover less than
    1/4 of the image and the image has at least one other class (a distractor).

    TorchRay reads EBP's list of them (pointing_game_ebp_voc07_difficult.txt, one row per VOC 2007
    test image, a 0/1 flag per class; loaded in pointing_game.py lines 157-174, applied at lines
    189-202); we do not ship that list and rebuild it from the definition it was made with (EBP,
    Zhang et al. ECCV 2016, Sec. 4.1). Area: the union of the class's boxes on our square image (a
    resize scales every area by the same factor, so the fraction is the original's up to rounding).
    """
    area = rows.masks.flatten(1).float().mean(1)
    return (area < EBP_DIFFICULT_AREA) & (rows.n_classes >= 2)


@dataclass
class PointingRows:
    """The scored (image, class) rows of one classifier on the pairs dataset, and what was left out."""

    rows: ClassRows
    targets: torch.Tensor
    pixel_size: torch.Tensor
    difficult: torch.Tensor
    left_out: dict[str, int]
    n_images: int
    space: str


def load_pointing(
    adapter: ModelAdapter, dataset_dir: str, n_images: int, device: torch.device, label_space: str | None, batch_size: int
) -> PointingRows:
    """Every (image, class present) row of the first ``n_images`` images, with its explained target.

    A classifier of the dataset's classes explains a row at its class (by name); an ImageNet-1k
    classifier on VOC-like data at the row's mapped ImageNet target (the best-scoring class of the
    VOC class's set on that image). Left out and counted: rows of a class the classifier cannot
    explain (unknown name; VOC ``person``, unmapped), and, as TorchRay (pointing_game.py lines
    204-214), rows whose boxes are all PASCAL-difficult (``meta.json`` ``pascal_difficult``).
    """
    meta = read_meta(dataset_dir)
    split = load_split(dataset_dir, "test", limit=n_images)
    rows = class_rows(split, meta.get("pascal_difficult"))
    if label_space == IMAGENET_1K:
        if not is_voc_like(list(meta["classes"])):
            raise ValueError(
                f"{adapter.name} is an ImageNet-1k classifier and {dataset_dir}'s classes are not VOC classes: "
                f"the pointing game needs the VOC -> ImageNet mapping (shared.data.voc_imagenet) or a classifier "
                f"trained on the dataset's classes"
            )
        explainable = torch.tensor([is_mapped(n) for n in rows.class_names], dtype=torch.bool)
    else:
        known = {name: i for i, name in enumerate(adapter.classes or split.classes)}
        n_logits = getattr(adapter.model, "num_classes", None)
        if n_logits is not None and n_logits != len(known):
            raise ValueError(
                f"{adapter.name} has {n_logits} outputs but {len(known)} class names, so the classes of {dataset_dir} "
                f"cannot be matched to its logits by name (label space {label_space!r})"
            )
        explainable = torch.tensor([n in known for n in rows.class_names], dtype=torch.bool)
    keep = explainable & ~rows.all_difficult
    left_out = {POINTING_REASONS[0]: int((~explainable).sum()), POINTING_REASONS[1]: int((explainable & rows.all_difficult).sum())}
    if not bool(keep.any()):
        raise ValueError(f"no (image, class) row of the first {n_images} images of {dataset_dir} can be scored; left out: {left_out}")
    index = torch.nonzero(keep).flatten()
    used = torch.unique(rows.image_index[index])  # images with a scored row, in order
    renumber = torch.full((rows.images.shape[0],), -1, dtype=torch.long)
    renumber[used] = torch.arange(used.numel())
    kept = ClassRows(
        images=rows.images[used],
        image_index=renumber[rows.image_index[index]],
        image_ids=[rows.image_ids[i] for i in index.tolist()],
        class_names=[rows.class_names[i] for i in index.tolist()],
        masks=rows.masks[index],
        n_classes=rows.n_classes[index],
        all_difficult=rows.all_difficult[index],
    )
    if label_space == IMAGENET_1K:
        logits = imagenet_logits(adapter, kept.images.to(device), batch_size)
        targets = mapped_targets(logits[kept.image_index.to(device)], kept.class_names)
    else:
        targets = torch.tensor([known[n] for n in kept.class_names], dtype=torch.long, device=device)
    return PointingRows(
        rows=kept,
        targets=targets,
        pixel_size=pixel_sizes(kept, meta.get("original_sizes")),
        difficult=ebp_difficult(kept),
        left_out=left_out,
        n_images=len(set(split.image_ids)),
        space=label_space or "class names",
    )


def pointing_game_hits(adapter: ModelAdapter, method: str, game: PointingRows, batch_size: int, device: torch.device) -> torch.Tensor:
    """(R,) float 0/1: TorchRay's hit of ``method``'s map for every row (``shared.metrics.pointing_hits``).

    Rows are explained in batches of ``batch_size`` (each row's image gathered by index, so an image
    with several classes is stored once) and scored batch by batch.
    """
    explain = class_explainer(method, adapter)
    images = game.rows.images.to(device)
    image_of = game.rows.image_index.to(device)

    def explain_rows(index: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        maps = explain(images[image_of[index.to(device)]], targets)
        return pointing_hits(maps, game.rows.masks[index].to(maps.device), TORCHRAY_TOLERANCE, game.pixel_size[index])[:, None]

    return in_chunks(explain_rows, torch.arange(len(game.rows)), game.targets, batch_size).flatten().double().cpu()


def class_mean_accuracy(hits: torch.Tensor, class_names: list[str]) -> tuple[float, dict[str, list[int]]]:
    """TorchRay's accuracy (``PointingGame.class_accuracies`` and ``accuracy``, pointing_game.py lines 105-119): the mean over
    classes of hits / (hits + misses), here over the classes with at least one scored row (TorchRay
    averages all 20, which the full VOC test set always has); NaN rows (not in the subset) are skipped.
    Also returns {class: [hits, rows]}."""
    per_class: dict[str, list[int]] = {}
    for hit, name in zip(hits.tolist(), class_names):
        if hit == hit:  # not NaN
            counts = per_class.setdefault(name, [0, 0])
            counts[0] += int(hit)
            counts[1] += 1
    accuracies = [h / n for h, n in per_class.values()]
    return (sum(accuracies) / len(accuracies) if accuracies else float("nan")), dict(sorted(per_class.items()))


def pointing(ctx: StepContext) -> None:
    """TorchRay's pointing game (Fong et al. 2019's benchmark of Zhang et al.'s game) on the pairs dataset.

    Every (image, class present) row of the first ``eval.n_images`` images is explained at its class
    (ImageNet classifiers on VOC: at the mapped ImageNet target) by every method that applies; a
    hit when the map's maximum lies strictly within 15 px of the original image of a box (mask) of
    that class. Records: ``pointing_game_all`` (every scored row) and ``pointing_game_difficult``
    (Zhang et al.'s difficult rows; NaN elsewhere, so Recorder leaves them out and counts them in
    ``extra.excluded``), per-row hits in ``extra.per_image``; TorchRay's own summary, the mean of
    per-class accuracies, in ``extra.class_mean`` (with ``extra.per_class``).
    """
    table_path, records_path = ctx.output("table"), ctx.output("records")
    rec = Recorder(ctx.config)
    notes = []
    for path, dataset_dir, dataset, adapter in classifiers(ctx):
        game = load_pointing(
            adapter, dataset_dir, ctx.eval["n_images"], ctx.device, classifier_label_space(adapter, path), ctx.eval["batch_size"]
        )
        why = ", ".join(f"{n} ({reason})" for reason, n in game.left_out.items())
        notes.append(
            f"{dataset} ({game.space}): {len(game.rows)} (image, class) rows of the first {game.n_images} images, "
            f"{int(game.difficult.sum())} of them difficult; rows left out: {why}"
        )
        summary = {"left_out": game.left_out, "n_images": game.n_images, "label_space": game.space}
        for m in [m for m in ctx.methods if applies(m, adapter)]:
            hits = pointing_game_hits(adapter, m, game, ctx.eval["batch_size"], ctx.device)
            for metric, values in (
                ("pointing_game_all", hits),
                ("pointing_game_difficult", torch.where(game.difficult, hits, torch.full_like(hits, float("nan")))),
            ):
                if not bool(torch.isfinite(values).any()):
                    continue  # no difficult row among these images: no record (Recorder refuses all-NaN)
                rec.add(values, metric=metric, method=m, model=adapter.name, dataset=dataset)
                class_mean, per_class = class_mean_accuracy(values, game.rows.class_names)
                with_extra(rec, class_mean=class_mean, per_class=per_class, **summary)
    if not rec.records:
        raise ValueError("pointing needs at least one classifier among --models")
    title = (
        f"Pointing game, TorchRay's protocol: a hit when the map's maximum is within {TORCHRAY_TOLERANCE} px (of the "
        f"original image) of a box of the explained class; mean over (image, class) rows, all and Zhang et al.'s "
        f"difficult subset (TorchRay's per-class mean: extra.class_mean). " + "; ".join(dict.fromkeys(notes))
    )
    write_records_and_table(rec.records, records_path, table_path, POINTING_METRICS, ctx.methods, title)


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

STEPS = {"qualitative": qualitative, "pairs": pairs, "pointing": pointing, "sanity": sanity}

if __name__ == "__main__":
    raise SystemExit(step_main(STEPS, __doc__))
