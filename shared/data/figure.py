"""Sample-grid figure of a dataset: images with mask contours, boxes and class names.

    python -m shared.data.figure --dataset data/datasets/shapes --out reports/data/shapes.png

Shows the first images of the first split, choosing one per class before repeating a class,
so every class appears when there are enough cells.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from shared.data.layout import read_meta, read_table
from shared.figures import save_figure

_COLOURS = ("#ffffff", "#ff3030", "#30a0ff", "#ffd000")


def _pick_images(rows: list[dict[str, str]], n: int) -> list[str]:
    """Up to ``n`` image ids, cycling through classes (by each image's first object)."""
    by_class: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for row in rows:
        if row["image_id"] not in seen:
            seen.add(row["image_id"])
            by_class[row["class_name"]].append(row["image_id"])
    picked: list[str] = []
    queues = [list(ids) for _, ids in sorted(by_class.items())]
    while len(picked) < n and any(queues):
        for queue in queues:
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
    return picked


def dataset_figure(root: str | os.PathLike[str], split: str | None = None, n: int = 24, cols: int = 6) -> Figure:
    """Draw a grid of ``n`` samples of ``split`` (default: the first split) of the dataset."""
    root = Path(root)
    meta = read_meta(root)
    split = split or meta["splits"][0]
    rows = read_table(root, split)
    image_ids = _pick_images(rows, n)
    objects: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        objects[row["image_id"]].append(row)
    n_rows = max(1, int(np.ceil(len(image_ids) / cols)))
    fig = Figure(figsize=(cols * 1.7, n_rows * 1.9))
    for i in range(n_rows * cols):
        ax = fig.add_subplot(n_rows, cols, i + 1)
        ax.set_axis_off()
        if i >= len(image_ids):
            continue
        annotations = objects[image_ids[i]]
        image = np.asarray(Image.open(root / annotations[0]["image"]).convert("RGB"))
        ax.imshow(image, interpolation="nearest")
        names = []
        for k, row in enumerate(annotations):
            colour = _COLOURS[k % len(_COLOURS)]
            mask = np.asarray(Image.open(root / row["mask"])) > 0
            if mask.any() and not mask.all():
                ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=0.8)
            x0, y0, x1, y1 = (int(row[c]) for c in ("x0", "y0", "x1", "y1"))
            ax.add_patch(
                Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour,
                          linewidth=0.8, linestyle="--")
            )
            names.append(row["class_name"])
        ax.set_title(" / ".join(names), fontsize=7)
    fig.suptitle(f"{meta['name']} ({split}): mask contours (solid), boxes (dashed)", fontsize=9)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--split", default=None)
    parser.add_argument("-n", type=int, default=24, help="number of sample images")
    args = parser.parse_args(argv)
    try:
        fig = dataset_figure(args.dataset, args.split, args.n)
    except (FileNotFoundError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    save_figure(fig, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
