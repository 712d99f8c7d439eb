"""The one on-disk dataset layout (docs/ARCHITECTURE.md, "Data on disk") and its atomic writer.

```
<root>/meta.json
<root>/<split>.csv                          one row per annotated object
<root>/images/<split>/<image_id>.png        RGB uint8
<root>/masks/<split>/<image_id>_<k>.png     L, 0/255, object k of that image
```

:class:`DatasetWriter` builds a dataset in a temporary directory next to the target and renames
it into place only after every object passed validation and the content hash is written, so a
half-written dataset never exists under the target name.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

COLUMNS = ("image_id", "image", "object", "label", "class_name", "mask", "x0", "y0", "x1", "y1")
"""Columns of every ``<split>.csv``; datasets with disjoint class splits add ``class_split``."""

CLASS_SPLIT_COLUMN = "class_split"

PNG_COMPRESS_LEVEL = 6
"""Fixed zlib level: the same pixels give the same PNG bytes (no metadata is ever written)."""


class DatasetError(ValueError):
    """A dataset (being written or read) breaks the layout's invariants."""


def png_bytes(array: np.ndarray) -> bytes:
    """Encode an (H, W, 3) uint8 RGB or (H, W) uint8 L array as PNG with fixed parameters."""
    if array.dtype != np.uint8:
        raise DatasetError(f"PNG arrays must be uint8, got {array.dtype}")
    mode = "RGB" if array.ndim == 3 else "L"
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(
        buffer, format="PNG", optimize=False, compress_level=PNG_COMPRESS_LEVEL
    )
    return buffer.getvalue()


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Extent of a boolean (H, W) mask as an inclusive-exclusive box ``(x0, y0, x1, y1)``."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        raise DatasetError("empty mask has no box")
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def content_hash(root: str | os.PathLike[str]) -> str:
    """SHA-256 over the split tables and every image/mask file, in sorted path order.

    Each file contributes its relative path and the SHA-256 of its bytes, so renaming a file
    changes the hash as well as changing its content. ``meta.json`` is not included (it holds
    the hash).
    """
    root = Path(root)
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and (p.suffix == ".png" or (p.suffix == ".csv" and p.parent == root))
    )
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return digest.hexdigest()


def read_meta(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``meta.json`` of a dataset, with a clear error when it is not a dataset."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {root} is not a dataset in the common layout; "
            "build it with `python -m shared.data.generate` / `shared.data.fetch` (or snakemake)"
        )
    return json.loads(path.read_text())


def read_table(root: str | os.PathLike[str], split: str) -> list[dict[str, str]]:
    """Rows of ``<split>.csv`` as dicts of strings, in file order."""
    path = Path(root) / f"{split}.csv"
    if not path.is_file():
        splits = read_meta(root).get("splits", [])
        raise FileNotFoundError(f"split {split!r} not found at {path}; this dataset has splits {splits}")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@dataclass
class _SplitState:
    rows: list[dict[str, Any]] = field(default_factory=list)
    image_ids: set[str] = field(default_factory=set)


class DatasetWriter:
    """Write a dataset atomically: ``add_image`` for each image, then ``commit``.

    Use as a context manager; leaving the block with an exception removes the temporary
    directory, so nothing is left behind. ``commit`` validates class balance (when asked),
    writes the tables and ``meta.json`` with the content hash, and renames the directory into
    place (replacing an older dataset of the same name).
    """

    def __init__(
        self,
        out: str | os.PathLike[str],
        name: str,
        source: str,
        classes: list[str],
        image_size: tuple[int, int] | None,
        class_split_column: bool = False,
        extra_meta: dict[str, Any] | None = None,
    ) -> None:
        self.out = Path(out).resolve()
        self.name = name
        self.source = source
        self.classes = list(classes)
        self.image_size = tuple(image_size) if image_size is not None else None
        self.class_split_column = class_split_column
        self.extra_meta = dict(extra_meta or {})
        self._splits: dict[str, _SplitState] = {}
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # The temporary directory sits next to the target so the final rename stays on one
        # filesystem (and is atomic).
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.tmp-", dir=self.out.parent))

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.abort()

    def abort(self) -> None:
        """Remove the temporary directory (no-op after a successful commit)."""
        if self.tmp.exists():
            shutil.rmtree(self.tmp)

    def add_image(
        self,
        split: str,
        image_id: str,
        image: np.ndarray,
        objects: list[dict[str, Any]],
    ) -> None:
        """Add one image and its objects.

        ``image``: (H, W, 3) uint8. Each object is a dict with ``mask`` (H, W) bool, ``label``
        (int), ``class_name`` and, optionally, ``box`` (x0, y0, x1, y1) and ``class_split``.
        A given box must equal the mask's extent; a missing one is computed from the mask.
        """
        state = self._splits.setdefault(split, _SplitState())
        if image_id in state.image_ids:
            raise DatasetError(f"duplicate image_id {image_id!r} in split {split!r}")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DatasetError(f"{image_id}: image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if self.image_size is not None and tuple(image.shape[:2]) != self.image_size:
            raise DatasetError(f"{image_id}: image is {image.shape[:2]}, dataset size is {self.image_size}")
        if not objects:
            raise DatasetError(f"{image_id}: an image needs at least one annotated object")
        state.image_ids.add(image_id)
        image_rel = f"images/{split}/{image_id}.png"
        self._write(image_rel, png_bytes(image))
        for k, obj in enumerate(objects):
            mask = np.asarray(obj["mask"], dtype=bool)
            if mask.shape != image.shape[:2]:
                raise DatasetError(f"{image_id} object {k}: mask {mask.shape} != image {image.shape[:2]}")
            if not mask.any():
                raise DatasetError(f"{image_id} object {k} ({obj['class_name']}): empty mask")
            extent = mask_box(mask)
            box = tuple(int(v) for v in obj.get("box", extent))
            if box != extent:
                raise DatasetError(
                    f"{image_id} object {k} ({obj['class_name']}): box {box} != mask extent {extent}"
                )
            label = int(obj["label"])
            if self.source == "synthetic" and not 0 <= label < len(self.classes):
                raise DatasetError(f"{image_id} object {k}: label {label} outside 0..{len(self.classes) - 1}")
            mask_rel = f"masks/{split}/{image_id}_{k}.png"
            self._write(mask_rel, png_bytes(mask.astype(np.uint8) * 255))
            row = {
                "image_id": image_id,
                "image": image_rel,
                "object": k,
                "label": label,
                "class_name": str(obj["class_name"]),
                "mask": mask_rel,
                "x0": box[0],
                "y0": box[1],
                "x1": box[2],
                "y1": box[3],
            }
            if self.class_split_column:
                row[CLASS_SPLIT_COLUMN] = obj["class_split"]
            state.rows.append(row)

    def _write(self, rel: str, data: bytes) -> None:
        path = self.tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def check_balance(self, split: str, tolerance: int) -> None:
        """Raise unless every class present in ``split`` has a count within ``tolerance`` of the others."""
        counts = Counter(row["class_name"] for row in self._splits[split].rows)
        if counts and max(counts.values()) - min(counts.values()) > tolerance:
            raise DatasetError(
                f"split {split!r} is unbalanced: class counts {dict(sorted(counts.items()))} "
                f"differ by more than {tolerance}"
            )

    def commit(self) -> Path:
        """Write tables and ``meta.json``, then move the dataset into place; return its path."""
        if not self._splits:
            raise DatasetError(f"dataset {self.name!r} has no images")
        columns = list(COLUMNS) + ([CLASS_SPLIT_COLUMN] if self.class_split_column else [])
        for split, state in self._splits.items():
            with (self.tmp / f"{split}.csv").open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
                writer.writeheader()
                writer.writerows(state.rows)
        meta = {
            "name": self.name,
            "image_size": list(self.image_size) if self.image_size is not None else None,
            "classes": self.classes,
            "splits": list(self._splits),
            "source": self.source,
            **self.extra_meta,
            "content_hash": content_hash(self.tmp),
        }
        (self.tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        self._move_into_place()
        return self.out

    def _move_into_place(self) -> None:
        old = None
        if self.out.exists():
            # Rename the old dataset aside first: the swap itself is two renames, never a
            # directory that is half old, half new.
            old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
            os.replace(self.out, old / "dataset")
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old)
