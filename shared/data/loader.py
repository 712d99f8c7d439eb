"""Loading a dataset in the common layout: whole splits in memory, or lazily for large data.

Rows are annotated objects: an image with two objects (``shapes_pair``, VOC) appears twice,
once per object, with the same pixels.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from shared.data.layout import DatasetError, read_meta, read_table


@dataclass
class SplitTensors:
    """A split in memory; row ``i`` is one annotated object.

    ``images`` (N, 3, H, W) float32 in [0, 1]; ``labels`` (N,) int64; ``masks`` (N, H, W) bool;
    ``boxes`` (N, 4) int64 ``x0, y0, x1, y1`` inclusive-exclusive; ``image_ids`` and
    ``class_names`` per row; ``objects`` (N,) int64, the object index within its image;
    ``classes`` the dataset's class list (``meta.json``); ``class_splits`` per row
    (``train``/``test``) for datasets with disjoint class splits, else ``None``.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    boxes: torch.Tensor
    image_ids: list[str]
    objects: torch.Tensor
    class_names: list[str]
    classes: list[str]
    class_splits: list[str] | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.array(image.convert("RGB"))  # a writable copy, so torch can wrap it


def _read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 127


def _first_images(rows: list[dict[str, str]], limit: int | None) -> list[dict[str, str]]:
    if limit is None:
        return rows
    if limit < 1:
        raise ValueError(f"limit must be >= 1 (a number of images), got {limit}")
    kept: list[dict[str, str]] = []
    seen: set[str] = set()
    for row in rows:
        if row["image_id"] not in seen:
            if len(seen) == limit:
                break
            seen.add(row["image_id"])
        kept.append(row)
    return kept


def load_split(
    root: str | os.PathLike[str], split: str, limit: int | None = None, image_ids: Collection[str] | None = None
) -> SplitTensors:
    """Load ``split`` of the dataset at ``root`` into memory.

    ``limit`` keeps the first ``limit`` images of the split (with all their objects, so a pair
    image is never cut in half). ``image_ids`` keeps only those images (in the split's order,
    before ``limit``), so a selection made from the table alone loads no other pixels. Every
    image must have the size recorded in ``meta.json``; use :class:`ImageTable` to resize a
    dataset with varying image sizes.
    """
    root = Path(root)
    meta = read_meta(root)
    rows = read_table(root, split)
    if image_ids is not None:
        wanted = set(image_ids)
        rows = [row for row in rows if row["image_id"] in wanted]
    rows = _first_images(rows, limit)
    if not rows:
        raise DatasetError(f"split {split!r} of {root} has no rows")
    pixels: dict[str, np.ndarray] = {}
    for row in rows:
        if row["image"] not in pixels:
            pixels[row["image"]] = _read_rgb(root / row["image"])
    shapes = {array.shape for array in pixels.values()}
    if len(shapes) != 1:
        raise DatasetError(
            f"images of {root}/{split} have different sizes {sorted(shapes)[:3]}...; "
            "load it with shared.data.ImageTable(root, split, size=...) which resizes"
        )
    order = {path: i for i, path in enumerate(pixels)}
    stacked = torch.from_numpy(np.stack(list(pixels.values())))
    index = torch.tensor([order[row["image"]] for row in rows])
    images = stacked[index].permute(0, 3, 1, 2).float().div_(255.0)
    masks = torch.from_numpy(np.stack([_read_mask(root / row["mask"]) for row in rows]))
    boxes = torch.tensor([[int(row[c]) for c in ("x0", "y0", "x1", "y1")] for row in rows], dtype=torch.int64)
    has_class_split = "class_split" in rows[0]
    return SplitTensors(
        images=images.contiguous(),
        labels=torch.tensor([int(row["label"]) for row in rows], dtype=torch.int64),
        masks=masks,
        boxes=boxes,
        image_ids=[row["image_id"] for row in rows],
        objects=torch.tensor([int(row["object"]) for row in rows], dtype=torch.int64),
        class_names=[row["class_name"] for row in rows],
        classes=list(meta["classes"]),
        class_splits=[row["class_split"] for row in rows] if has_class_split else None,
    )


class ImageTable(Dataset):
    """A split as a lazily loaded ``torch.utils.data.Dataset`` (for large real datasets).

    Item ``i`` is row ``i`` (an object) as a dict: ``image`` (3, S, S) float32 in [0, 1]
    (bilinear), ``mask`` (S, S) bool (nearest), ``box`` (4,) int64 scaled to the new size,
    ``label``, ``image_id``, ``object``, ``class_name``. ``size=None`` keeps the stored size.
    """

    def __init__(self, root: str | os.PathLike[str], split: str, size: int | None = None) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self.rows = read_table(self.root, split)
        if size is not None and size < 1:
            raise ValueError(f"size must be a positive number of pixels, got {size}")
        self.size = size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.rows[i]
        image = torch.from_numpy(_read_rgb(self.root / row["image"])).permute(2, 0, 1).float().div_(255.0)
        mask = torch.from_numpy(_read_mask(self.root / row["mask"]))
        box = torch.tensor([int(row[c]) for c in ("x0", "y0", "x1", "y1")], dtype=torch.int64)
        if self.size is not None:
            height, width = image.shape[1:]
            image = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear",
                                  align_corners=False, antialias=True)[0].clamp_(0, 1)
            mask = F.interpolate(mask[None, None].float(), size=(self.size, self.size), mode="nearest")[0, 0] > 0.5
            box = scale_box(box, (height, width), self.size)
        return {
            "image": image,
            "mask": mask,
            "box": box,
            "label": int(row["label"]),
            "image_id": row["image_id"],
            "object": int(row["object"]),
            "class_name": row["class_name"],
        }


def scale_box(box: torch.Tensor, size: tuple[int, int], new: int) -> torch.Tensor:
    """Scale an inclusive-exclusive box from ``size`` (H, W) to a square ``new`` image.

    Rounds outwards (floor the start, ceil the end) so the box still contains the object, and
    keeps it at least one pixel wide.
    """
    height, width = size
    sx, sy = new / width, new / height
    x0 = int(np.floor(int(box[0]) * sx))
    y0 = int(np.floor(int(box[1]) * sy))
    x1 = max(int(np.ceil(int(box[2]) * sx)), x0 + 1)
    y1 = max(int(np.ceil(int(box[3]) * sy)), y0 + 1)
    return torch.tensor([min(x0, new - 1), min(y0, new - 1), min(x1, new), min(y1, new)], dtype=torch.int64)
