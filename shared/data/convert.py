"""Converters from the publishers' archive layouts to the common on-disk layout.

Each converter reads an extracted archive and writes square ``size x size`` images with their
objects through :class:`DatasetWriter` (atomic). Boxes are scaled outwards and their masks are
the boxes' rectangles (none of these datasets ships per-object masks in the archive we use).

- Imagenette 320 px: ``imagenette2-320/{train,val}/<wnid>/*.JPEG``; labels are ImageNet-1k
  class indices (so ImageNet-pretrained models apply); no boxes: box and mask are the full image.
  Rows are interleaved over the classes (:func:`class_interleaved`), as are CUB's.
- CUB-200-2011: ``CUB_200_2011/{images.txt, image_class_labels.txt, bounding_boxes.txt,
  classes.txt, images/}``; metric-learning split as in the literature: the first 100 classes
  are ``train``, the last 100 ``test`` (labels 100..199 continue after the train ones).
- PASCAL VOC 2007 test: ``VOCdevkit/VOC2007/{Annotations/*.xml, JPEGImages/*.jpg}``; one row
  per annotated object (``difficult`` ones included), split ``test``. ``meta.json`` keeps what the
  square images lose and the pointing game needs (TorchRay's VOC protocol): ``original_sizes``
  (image id -> [H, W] of the JPEG) and ``pascal_difficult`` (image id -> the indices of its objects
  flagged ``<difficult>1</difficult>``; images without one are not listed).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from shared.data.errors import FetchError
from shared.data.layout import DatasetWriter
from shared.data.loader import scale_box

REAL_NAMES = ("imagenette", "cub", "voc2007")

IMAGENETTE_WNIDS = {
    "n01440764": (0, "tench"),
    "n02102040": (217, "English springer"),
    "n02979186": (482, "cassette player"),
    "n03000684": (491, "chain saw"),
    "n03028079": (497, "church"),
    "n03394916": (566, "French horn"),
    "n03417042": (569, "garbage truck"),
    "n03425413": (571, "gas pump"),
    "n03445777": (574, "golf ball"),
    "n03888605": (701, "parachute"),
}
"""Imagenette's ten WordNet ids -> (ImageNet-1k class index, name)."""

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)


def _need(path: Path, root: Path, archive: str) -> Path:
    """Return ``path`` or raise: a file the format requires is missing from the archive."""
    if not path.exists():
        raise FetchError(
            f"{path.relative_to(root).as_posix()} is missing from {archive}: this is not the "
            f"expected archive (or it is incomplete); delete the cached {archive} and rerun"
        )
    return path


def _resized(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image at ``path`` as (size, size, 3) uint8, and its original (H, W)."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            original = (rgb.height, rgb.width)
            return np.asarray(rgb.resize((size, size), Image.BILINEAR)), original
    except OSError as err:
        raise FetchError(f"cannot decode image {path.name} ({err}); the archive is damaged — delete it and rerun") from err


def _box_object(box: tuple[float, float, float, float], original: tuple[int, int], size: int) -> dict:
    """Scale an inclusive-exclusive box to the square image; its mask is the box rectangle."""
    height, width = original
    x0, y0, x1, y1 = box
    clipped = [max(0, int(np.floor(x0))), max(0, int(np.floor(y0))),
               min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))]
    clipped[2], clipped[3] = max(clipped[2], clipped[0] + 1), max(clipped[3], clipped[1] + 1)
    sx0, sy0, sx1, sy1 = scale_box(torch.tensor(clipped), original, size).tolist()
    mask = np.zeros((size, size), dtype=bool)
    mask[sy0:sy1, sx0:sx1] = True
    return {"mask": mask, "box": (sx0, sy0, sx1, sy1)}


def class_interleaved(items: list, label_of: Callable[[object], object]) -> list:
    """``items`` reordered round-robin over their classes (each class's own order kept): the
    first n rows of a split then cover every class evenly. The evaluation subset is the first
    ``eval.n_images`` rows; in the publishers' folder order those were one or two classes."""
    by_class: dict[object, list] = {}
    for item in items:
        by_class.setdefault(label_of(item), []).append(item)
    queues = [by_class[k] for k in sorted(by_class)]
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def _progress(items: Iterable, total: int, desc: str, enabled: bool) -> Iterable:
    return tqdm(items, total=total, desc=desc, unit="img", disable=not enabled)


def convert_imagenette(extracted: Path, out: Path, size: int, archive: str, progress: bool = True) -> Path:
    """Imagenette (``imagenette2-320``) -> common layout with splits ``train`` and ``val``."""
    roots = sorted(p for p in extracted.iterdir() if p.is_dir() and p.name.startswith("imagenette"))
    if not roots:
        raise FetchError(f"no imagenette2-*/ directory in {archive}; delete it and rerun")
    base = roots[0]
    classes = [name for _, name in sorted(IMAGENETTE_WNIDS.values())]
    with DatasetWriter(
        out, "imagenette", "imagenette", classes, (size, size),
        extra_meta={
            "label_space": "imagenet-1k",
            "class_indices": sorted(index for index, _ in IMAGENETTE_WNIDS.values()),
            "notes": "Imagenette has no boxes: every box and mask is the full image.",
        },
    ) as writer:
        for split in ("train", "val"):
            split_dir = _need(base / split, extracted, archive)
            wnids = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
            unknown = sorted(set(wnids) - set(IMAGENETTE_WNIDS))
            if unknown:
                raise FetchError(f"{archive}: unexpected class folders {unknown} in {split}/; not Imagenette")
            files = [(wnid, f) for wnid in wnids for f in sorted((split_dir / wnid).iterdir()) if f.is_file()]
            files = class_interleaved(files, lambda item: item[0])
            if not files:
                raise FetchError(f"{archive}: {split}/ holds no images; delete the archive and rerun")
            for wnid, path in _progress(files, len(files), f"imagenette {split}", progress):
                image, _ = _resized(path, size)
                index, name = IMAGENETTE_WNIDS[wnid]
                full = {"mask": np.ones((size, size), dtype=bool), "box": (0, 0, size, size)}
                writer.add_image(split, path.stem, image, [{**full, "label": index, "class_name": name}])
        return writer.commit()


def _read_pairs(path: Path) -> dict[int, list[str]]:
    rows: dict[int, list[str]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, *rest = line.split()
            rows[int(key)] = rest
    return rows


def convert_cub(extracted: Path, out: Path, size: int, archive: str, progress: bool = True) -> Path:
    """CUB-200-2011 -> common layout; first half of the classes ``train``, second half ``test``."""
    base = extracted / "CUB_200_2011"
    files = {
        name: _read_pairs(_need(base / name, extracted, archive))
        for name in ("images.txt", "image_class_labels.txt", "bounding_boxes.txt", "classes.txt")
    }
    class_ids = sorted(files["classes.txt"])
    # Class folder names look like "001.Black_footed_Albatross": keep the readable part.
    classes = [" ".join(files["classes.txt"][c]).split(".", 1)[-1] for c in class_ids]
    n_train = len(class_ids) // 2
    label_of = {c: i for i, c in enumerate(class_ids)}
    with DatasetWriter(
        out, "cub", "cub", classes, (size, size), class_split_column=True,
        extra_meta={
            "class_splits": {"train": classes[:n_train], "test": classes[n_train:]},
            "notes": "Metric-learning split: first half of the classes train, second half test. "
                     "Masks are the bounding boxes.",
        },
    ) as writer:
        images = files["images.txt"]
        # class by class in the archive: interleaved, so the first test rows span the test classes
        order = class_interleaved(sorted(images), lambda i: files["image_class_labels.txt"].get(i, ["?"])[0])
        for image_id in _progress(order, len(images), "cub", progress):
            if image_id not in files["image_class_labels.txt"] or image_id not in files["bounding_boxes.txt"]:
                raise FetchError(f"{archive}: image {image_id} has no class label or box; the archive is damaged")
            label = label_of[int(files["image_class_labels.txt"][image_id][0])]
            split = "train" if label < n_train else "test"
            image, original = _resized(_need(base / "images" / images[image_id][0], extracted, archive), size)
            x, y, w, h = (float(v) for v in files["bounding_boxes.txt"][image_id])
            obj = _box_object((x, y, x + w, y + h), original, size)
            writer.add_image(split, f"cub_{image_id:05d}", image,
                             [{**obj, "label": label, "class_name": classes[label], "class_split": split}])
        return writer.commit()


def convert_voc2007(extracted: Path, out: Path, size: int, archive: str, progress: bool = True) -> Path:
    """PASCAL VOC 2007 test -> common layout, split ``test``, one row per object."""
    base = extracted / "VOCdevkit" / "VOC2007"
    annotations = _need(base / "Annotations", extracted, archive)
    listing = base / "ImageSets" / "Main" / "test.txt"
    if listing.exists():
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    else:
        ids = sorted(p.stem for p in annotations.glob("*.xml"))
    if not ids:
        raise FetchError(f"{archive}: no annotations found in VOCdevkit/VOC2007/Annotations")
    label_of = {name: i for i, name in enumerate(VOC_CLASSES)}
    original_sizes: dict[str, list[int]] = {}
    pascal_difficult: dict[str, list[int]] = {}
    with DatasetWriter(
        out, "voc2007", "voc2007", list(VOC_CLASSES), (size, size),
        extra_meta={
            "notes": "One row per annotated object (difficult ones included); masks are the boxes. "
                     "original_sizes: [H, W] of each JPEG; pascal_difficult: per image, the objects "
                     "flagged difficult in the annotation.",
        },
    ) as writer:
        for image_id in _progress(ids, len(ids), "voc2007", progress):
            xml_path = _need(annotations / f"{image_id}.xml", extracted, archive)
            try:
                root = ET.parse(xml_path).getroot()
            except ET.ParseError as err:
                raise FetchError(f"{archive}: cannot parse {xml_path.name} ({err}); the archive is damaged") from err
            image, original = _resized(_need(base / "JPEGImages" / f"{image_id}.jpg", extracted, archive), size)
            objects = []
            for node in root.iter("object"):
                name = (node.findtext("name") or "").strip()
                if name not in label_of:
                    raise FetchError(f"{archive}: {xml_path.name} has unknown class {name!r}")
                bnd = node.find("bndbox")
                # VOC boxes are 1-based and inclusive: pixel xmin..xmax -> [xmin - 1, xmax).
                xmin, ymin, xmax, ymax = (float(bnd.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
                obj = _box_object((xmin - 1, ymin - 1, xmax, ymax), original, size)
                if (node.findtext("difficult") or "0").strip() == "1":
                    pascal_difficult.setdefault(image_id, []).append(len(objects))
                objects.append({**obj, "label": label_of[name], "class_name": name})
            if objects:
                writer.add_image("test", image_id, image, objects)
                original_sizes[image_id] = [int(original[0]), int(original[1])]
        writer.extra_meta.update(original_sizes=original_sizes, pascal_difficult=pascal_difficult)
        return writer.commit()


Converter = Callable[[Path, Path, int, str, bool], Path]
CONVERTERS: dict[str, Converter] = {
    "imagenette": convert_imagenette,
    "cub": convert_cub,
    "voc2007": convert_voc2007,
}
