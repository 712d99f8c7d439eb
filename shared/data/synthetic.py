"""Synthetic benchmark generators with ground truth: ``shapes``, ``shapes_pair``, ``parts``.

Every generator is a pure function of its config (``image_size`` plus the dataset's section of
``datasets:``): a private ``numpy.random.Generator`` per split, seeded from the config's seed,
drives every random choice, so the same config gives the same PNG bytes. Geometry is given as
fractions of the image side, so the datasets look alike at any ``image_size``.

- ``shapes``: one object of K shape classes (30-55 % of the side) on a textured background
  with distractor blobs and scribbles that are never class shapes; mask + box per object.
- ``shapes_pair``: test images with two non-overlapping objects of different classes.
- ``parts``: a common body (ellipse) with a small head (15-22 % of the side) whose colour and
  pattern define the class; the head's mask is the ground truth. Train and test classes are
  disjoint; test labels continue after the train ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.data.raster import (
    SHAPES,
    blob_predicate,
    coverage,
    disk,
    draw_line,
    full_mask,
    hsv,
    paint,
    textured_background,
    to_uint8,
)

SYNTHETIC_NAMES = ("shapes", "shapes_pair", "parts")

OBJECT_DIAMETER = (0.30, 0.55)
"""Object size in ``shapes`` as a fraction of the image side (bounding-circle diameter)."""
PAIR_DIAMETER = (0.28, 0.42)
"""Smaller objects in ``shapes_pair`` so that two always fit side by side."""
BLOB_FRAME = (0.05, 0.12)
"""Distractor blob frame radius (fraction of side); blobs span about 1.2x that, far below objects."""

PART_COLOURS = {
    "red": (0.92, 0.12, 0.10),
    "yellow": (0.97, 0.86, 0.10),
    "blue": (0.12, 0.30, 0.97),
    "green": (0.10, 0.78, 0.22),
    "magenta": (0.86, 0.12, 0.86),
    "cyan": (0.10, 0.86, 0.92),
}
PART_PATTERNS = ("solid", "striped", "eyed", "halved")
HEAD_DIAMETER = (0.15, 0.22)
"""Head (the class-defining part) diameter as a fraction of the image side."""

Sample = tuple[str, str, np.ndarray, list[dict[str, Any]]]
"""(split, image_id, image uint8 (H, W, 3), objects) as :class:`DatasetWriter` takes them."""


class ConfigError(ValueError):
    """A dataset config that cannot be generated (says which key and how to fix it)."""


@dataclass
class DatasetSpec:
    """What a generator produces: classes, validation rules, metadata, and the samples."""

    name: str
    classes: list[str]
    samples: Iterator[Sample]
    balance_tolerance: dict[str, int]
    class_split_column: bool = False
    extra_meta: dict[str, Any] = field(default_factory=dict)


def _split_rng(seed: int, split: str) -> np.random.Generator:
    # One independent stream per split, so changing n_test never changes the training images.
    return np.random.default_rng([seed, sum(split.encode())])


def _require(cfg: dict[str, Any], name: str, keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise ConfigError(f"datasets.{name} is missing {missing}; see config/schema.yaml")
    for key in keys:
        if key != "seed" and int(cfg[key]) < 1:
            raise ConfigError(f"datasets.{name}.{key} must be >= 1, got {cfg[key]}")


def _size(cfg: dict[str, Any]) -> tuple[int, int]:
    side = int(cfg.get("image_size", 0))
    if side < 16:
        raise ConfigError(f"datasets.image_size must be >= 16 pixels, got {cfg.get('image_size')}")
    return side, side


def _clutter(rng: np.random.Generator, image: np.ndarray, n_blobs: int, n_lines: int, saturated: bool) -> None:
    """Distractors: irregular blobs and straight scribbles, never class shapes."""
    size = image.shape[:2]
    side = min(size)
    for _ in range(n_blobs):
        radius = rng.uniform(*BLOB_FRAME) * side
        cx, cy = rng.uniform(0, size[1]), rng.uniform(0, size[0])
        saturation = rng.uniform(0.2, 0.9) if saturated else rng.uniform(0.0, 0.3)
        colour = hsv(rng.random(), saturation, rng.uniform(0.3, 0.95))
        cov, window = coverage(blob_predicate(rng), size, cx, cy, radius, rng.uniform(0, 2 * np.pi), ss=2)
        paint(image, cov, window, colour)
    for _ in range(n_lines):
        draw_line(image, rng, hsv(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.2, 0.9)))


def _object_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A saturated colour that stands out from ``background`` (mean RGB under the object)."""
    colour = hsv(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.0))
    for _ in range(20):
        if np.linalg.norm(colour - background) >= 0.4:
            break
        colour = hsv(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.75, 1.0))
    return colour


def _draw_shape(
    rng: np.random.Generator, image: np.ndarray, shape: str, cx: float, cy: float, radius: float
) -> np.ndarray:
    """Draw one class shape with a gentle shading; return its mask."""
    size = image.shape[:2]
    theta = rng.uniform(0, 2 * np.pi)
    shade = rng.uniform(0.05, 0.15)
    # One pass gives the coverage and a gentle left-to-right shading factor of the object.
    cov, window, factor = coverage(
        SHAPES[shape], size, cx, cy, radius, theta, pattern=lambda u, v: (1 - shade * (u + 1) / 2)[..., None]
    )
    under = image[window][cov >= 0.5]
    colour = _object_colour(rng, under.mean(axis=0) if under.size else image.mean(axis=(0, 1)))
    shaded = colour * factor
    paint(image, cov, window, shaded)
    return full_mask(cov, window, size)


def _balanced_labels(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def shapes_spec(cfg: dict[str, Any]) -> DatasetSpec:
    """``shapes``: one object per image, splits ``train`` and ``test``."""
    _require(cfg, "shapes", ("n_classes", "n_train", "n_test", "seed"))
    size = _size(cfg)
    k = int(cfg["n_classes"])
    if not 2 <= k <= len(SHAPES):
        raise ConfigError(f"datasets.shapes.n_classes must be in 2..{len(SHAPES)}, got {k}")
    classes = list(SHAPES)[:k]

    def samples() -> Iterator[Sample]:
        for split, n in (("train", int(cfg["n_train"])), ("test", int(cfg["n_test"]))):
            rng = _split_rng(int(cfg["seed"]), split)
            for i, label in enumerate(_balanced_labels(rng, n, k)):
                image = textured_background(rng, size)
                _clutter(rng, image, int(rng.integers(3, 7)), int(rng.integers(1, 3)), saturated=True)
                side = min(size)
                radius = rng.uniform(*OBJECT_DIAMETER) * side / 2
                cx = rng.uniform(radius, size[1] - radius)
                cy = rng.uniform(radius, size[0] - radius)
                mask = _draw_shape(rng, image, classes[label], cx, cy, radius)
                objects = [{"mask": mask, "label": int(label), "class_name": classes[label]}]
                yield split, f"{split}_{i:05d}", to_uint8(image), objects

    return DatasetSpec(
        name="shapes",
        classes=classes,
        samples=samples(),
        balance_tolerance={"train": 1, "test": 1},
        extra_meta={"generator": "shapes", "params": dict(cfg)},
    )


def _pair_classes(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """(n, 2) distinct class pairs; each column is balanced within every block of k images."""
    i = np.arange(n)
    first = i % k
    second = (first + 1 + (i // k) % (k - 1)) % k
    return np.stack([first, second], axis=1)[rng.permutation(n)]


def _place_pair(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Centres and radii of two objects whose bounding circles are at least 1 px apart."""
    side = min(size)
    for _ in range(1000):
        radii = rng.uniform(*PAIR_DIAMETER, size=2) * side / 2
        centres = np.stack(
            [[rng.uniform(r, size[1] - r), rng.uniform(r, size[0] - r)] for r in radii]
        )
        if np.linalg.norm(centres[0] - centres[1]) >= radii.sum() + 1:
            return centres, radii
    raise ConfigError(f"could not place two disjoint objects in a {size} image; use image_size >= 32")


def shapes_pair_spec(cfg: dict[str, Any]) -> DatasetSpec:
    """``shapes_pair``: split ``test`` only, two objects of different classes per image."""
    _require(cfg, "shapes_pair", ("n_test", "seed"))
    size = _size(cfg)
    k = int(cfg.get("n_classes", len(SHAPES)))
    if not 2 <= k <= len(SHAPES):
        raise ConfigError(f"datasets.shapes_pair.n_classes must be in 2..{len(SHAPES)}, got {k}")
    classes = list(SHAPES)[:k]

    def samples() -> Iterator[Sample]:
        rng = _split_rng(int(cfg["seed"]), "test")
        for i, pair in enumerate(_pair_classes(rng, int(cfg["n_test"]), k)):
            image = textured_background(rng, size)
            _clutter(rng, image, int(rng.integers(2, 5)), 1, saturated=True)
            centres, radii = _place_pair(rng, size)
            objects = []
            for label, (cx, cy), radius in zip(pair, centres, radii):
                mask = _draw_shape(rng, image, classes[label], cx, cy, radius)
                objects.append({"mask": mask, "label": int(label), "class_name": classes[label]})
            yield "test", f"test_{i:05d}", to_uint8(image), objects

    return DatasetSpec(
        name="shapes_pair",
        classes=classes,
        samples=samples(),
        balance_tolerance={"test": 2},
        extra_meta={"generator": "shapes_pair", "params": dict(cfg)},
    )


def part_classes() -> list[tuple[str, str]]:
    """All (colour, pattern) classes in a fixed order that interleaves both attributes.

    Class c has colour ``c % 6`` and pattern ``(c + c // 6) % 4``: every colour/pattern pair
    once, and any prefix (the train classes) and the following block (the test classes) each
    cover the colours and patterns evenly, so test classes are new combinations of seen parts.
    """
    colours = list(PART_COLOURS)
    n_colours, n_patterns = len(colours), len(PART_PATTERNS)
    return [
        (colours[c % n_colours], PART_PATTERNS[(c + c // n_colours) % n_patterns])
        for c in range(n_colours * n_patterns)
    ]


def _head_pattern(colour: np.ndarray, pattern: str):  # noqa: ANN202 - a closure over arrays
    dark = np.array([0.07, 0.07, 0.07])
    light = np.array([0.97, 0.97, 0.97])

    def values(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        if pattern == "solid":
            choose = np.zeros(u.shape, dtype=bool)
            other = dark
        elif pattern == "striped":
            choose = np.floor((u + 1) * 2).astype(int) % 2 == 1
            other = dark
        elif pattern == "eyed":
            choose = u * u + v * v <= 0.5**2
            other = light
        else:  # halved
            choose = v >= 0
            other = light
        return np.where(choose[..., None], other, colour)

    return values


def _draw_part_creature(
    rng: np.random.Generator, image: np.ndarray, colour: np.ndarray, pattern: str
) -> np.ndarray:
    """Draw an ellipse body with its class-defining head; return the head's mask."""
    size = image.shape[:2]
    side = min(size)
    a = rng.uniform(0.18, 0.25) * side
    b = a * rng.uniform(0.5, 0.65)
    rh = rng.uniform(*HEAD_DIAMETER) * side / 2
    theta = rng.uniform(0, 2 * np.pi)
    e = np.array([np.cos(theta), np.sin(theta)])
    lower = np.array([1.0, 1.0])
    for _ in range(1000):
        centre = rng.uniform([0, 0], [size[1], size[0]])
        head = centre + e * (a + 0.5 * rh)
        points = np.stack([centre - a, centre + a, head - rh, head + rh])
        if (points >= lower).all() and (points <= np.array([size[1], size[0]]) - 1).all():
            break
    else:  # pragma: no cover - the creature spans at most 0.7 of the side
        raise ConfigError(f"could not place a parts creature in a {size} image")
    body_colour = hsv(rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.35, 0.8))
    cov, window = coverage(disk, size, *centre, (a, b), theta)
    paint(image, cov, window, body_colour * rng.uniform(0.9, 1.0))
    jitter = colour * rng.uniform(0.85, 1.0)
    cov, window, values = coverage(disk, size, *head, rh, theta, pattern=_head_pattern(jitter, pattern))
    paint(image, cov, window, values)
    return full_mask(cov, window, size)


def parts_spec(cfg: dict[str, Any]) -> DatasetSpec:
    """``parts``: split ``train`` (train classes) and ``test`` (disjoint, unseen classes)."""
    keys = ("n_train_classes", "n_test_classes", "per_class_train", "per_class_test", "seed")
    _require(cfg, "parts", keys)
    size = _size(cfg)
    n_train, n_test = int(cfg["n_train_classes"]), int(cfg["n_test_classes"])
    available = part_classes()
    if n_train + n_test > len(available):
        raise ConfigError(
            f"datasets.parts asks for {n_train} + {n_test} classes but only {len(available)} "
            f"colour x pattern classes exist; lower n_train_classes or n_test_classes"
        )
    chosen = available[: n_train + n_test]
    classes = [f"{colour}-{pattern}" for colour, pattern in chosen]
    class_split = {"train": list(range(n_train)), "test": list(range(n_train, n_train + n_test))}
    per_class = {"train": int(cfg["per_class_train"]), "test": int(cfg["per_class_test"])}

    def samples() -> Iterator[Sample]:
        for split in ("train", "test"):
            rng = _split_rng(int(cfg["seed"]), split)
            labels = rng.permutation(np.repeat(class_split[split], per_class[split]))
            for i, label in enumerate(labels):
                colour_name, pattern = chosen[label]
                image = textured_background(rng, size, saturation=0.3)
                _clutter(rng, image, int(rng.integers(2, 5)), int(rng.integers(0, 2)), saturated=False)
                mask = _draw_part_creature(rng, image, np.array(PART_COLOURS[colour_name]), pattern)
                objects = [
                    {"mask": mask, "label": int(label), "class_name": classes[label], "class_split": split}
                ]
                yield split, f"{split}_{i:05d}", to_uint8(image), objects

    return DatasetSpec(
        name="parts",
        classes=classes,
        samples=samples(),
        balance_tolerance={"train": 0, "test": 0},
        class_split_column=True,
        extra_meta={
            "generator": "parts",
            "params": dict(cfg),
            "class_splits": {split: [classes[c] for c in ids] for split, ids in class_split.items()},
        },
    )


SPECS = {"shapes": shapes_spec, "shapes_pair": shapes_pair_spec, "parts": parts_spec}
