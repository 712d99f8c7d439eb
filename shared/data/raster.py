"""Vectorised rasterisation for the synthetic benchmark: shapes, blobs, lines, textures.

A shape is a predicate ``inside(u, v) -> bool array`` in its own frame, where the unit disk
``u**2 + v**2 <= 1`` bounds it. :func:`coverage` places it (centre, radius, rotation) and
supersamples each pixel ``SS x SS`` times inside the shape's bounding window only, so the image
gets anti-aliased edges while the mask is the exact rule ``coverage >= 0.5``.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable

import numpy as np

SS = 4
"""Supersampling factor per axis."""

Predicate = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _polygon(vertices: np.ndarray) -> Predicate:
    """Convex polygon (counter-clockwise vertices) as an intersection of half-planes."""
    edges = np.roll(vertices, -1, axis=0) - vertices

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        result = np.ones(u.shape, dtype=bool)
        for (px, py), (ex, ey) in zip(vertices, edges):
            result &= ex * (v - py) - ey * (u - px) >= 0
        return result

    return inside


def _regular(n: int, radius: float, phase: float) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 0.92**2


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u * u + v * v
    return (r2 <= 0.95**2) & (r2 >= 0.52**2)


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.68


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.3) & (av <= 0.95)) | ((av <= 0.3) & (au <= 0.95))


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Five-pointed star in polar form: the boundary radius falls linearly from a tip (1.0) to
    # the notch between tips (0.42) — a star, not a pentagon, at every size we draw.
    theta = np.arctan2(v, u) + np.pi / 2
    sector = np.mod(theta, 2 * np.pi / 5) / (2 * np.pi / 5)
    boundary = 0.42 + (1.0 - 0.42) * np.abs(1 - 2 * sector)
    return np.sqrt(u * u + v * v) <= boundary


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u * u + v * v <= 0.95**2) & ((u - 0.45) ** 2 + v * v >= 0.72**2)


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # The classic implicit heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, scaled into the unit disk
    # and with its point downwards in image coordinates (v grows downwards).
    x = u * 1.2
    y = -(v * 1.2) + 0.15
    return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0


_triangle = _polygon(_regular(3, 0.98, -np.pi / 2))

SHAPES: dict[str, Predicate] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "ring": _ring,
    "crescent": _crescent,
    "heart": _heart,
}
"""The shape classes, in label order (``shapes`` uses the first ``n_classes``)."""


def disk(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The unit disk (used for the ``parts`` head and ellipse bodies)."""
    return u * u + v * v <= 1.0


def coverage(
    inside: Predicate,
    size: tuple[int, int],
    cx: float,
    cy: float,
    radius: float | tuple[float, float],
    theta: float,
    pattern: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    ss: int = SS,
) -> tuple[np.ndarray, tuple[slice, slice]] | tuple[np.ndarray, tuple[slice, slice], np.ndarray]:
    """Fraction of each pixel inside a placed shape, over the shape's bounding window.

    ``radius`` scales the frame (a pair ``(ru, rv)`` stretches it into an ellipse); ``theta``
    rotates it. Returns ``(cov, window)`` where ``cov`` is the (h, w) coverage of the window
    ``image[window]``. With ``pattern`` (a function of the frame's (u, v) giving per-subpixel
    values, shape (..., C)), also returns the pattern averaged over the covered subpixels.
    """
    height, width = size
    ru, rv = (radius, radius) if np.isscalar(radius) else radius
    reach = max(ru, rv)
    x0, x1 = max(int(np.floor(cx - reach)) - 1, 0), min(int(np.ceil(cx + reach)) + 1, width)
    y0, y1 = max(int(np.floor(cy - reach)) - 1, 0), min(int(np.ceil(cy + reach)) + 1, height)
    x0, y0 = min(x0, width - 1), min(y0, height - 1)
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    offsets = (np.arange(ss) + 0.5) / ss
    xs = (np.arange(x0, x1)[:, None] + offsets[None, :]).reshape(-1)
    ys = (np.arange(y0, y1)[:, None] + offsets[None, :]).reshape(-1)
    dx = xs[None, :] - cx
    dy = ys[:, None] - cy
    cos, sin = np.cos(theta), np.sin(theta)
    u = (dx * cos + dy * sin) / ru
    v = (-dx * sin + dy * cos) / rv
    hit = inside(u, v)
    h, w = y1 - y0, x1 - x0
    cov = hit.reshape(h, ss, w, ss).mean(axis=(1, 3))
    window = (slice(y0, y1), slice(x0, x1))
    if pattern is None:
        return cov, window
    values = pattern(u, v) * hit[..., None]
    channels = values.shape[-1]
    summed = values.reshape(h, ss, w, ss, channels).sum(axis=(1, 3))
    mean = summed / np.maximum(hit.reshape(h, ss, w, ss).sum(axis=(1, 3)), 1)[..., None]
    return cov, window, mean


def paint(image: np.ndarray, cov: np.ndarray, window: tuple[slice, slice], colour: np.ndarray) -> None:
    """Alpha-composite ``colour`` (RGB or per-pixel (h, w, 3)) over ``image[window]`` in place."""
    alpha = cov[..., None]
    image[window] = image[window] * (1 - alpha) + colour * alpha


def full_mask(cov: np.ndarray, window: tuple[slice, slice], size: tuple[int, int]) -> np.ndarray:
    """The object mask at image size: pixels at least half covered."""
    mask = np.zeros(size, dtype=bool)
    mask[window] = cov >= 0.5
    return mask


def upsample(field: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a small (h, w, C) field to (H, W, C) (a smooth random texture)."""
    height, width = size
    h, w = field.shape[:2]
    ys = np.linspace(0, h - 1, height)
    xs = np.linspace(0, w - 1, width)
    y0 = np.clip(np.floor(ys).astype(int), 0, h - 2)
    x0 = np.clip(np.floor(xs).astype(int), 0, w - 2)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = field[y0][:, x0] * (1 - fx) + field[y0][:, x0 + 1] * fx
    bottom = field[y0 + 1][:, x0] * (1 - fx) + field[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour as an RGB float array in [0, 1]."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def textured_background(
    rng: np.random.Generator, size: tuple[int, int], saturation: float = 0.4, value: tuple[float, float] = (0.25, 0.6)
) -> np.ndarray:
    """A muted, cluttered texture: smooth colour field + oriented waves + pixel noise, (H, W, 3)."""
    height, width = size
    base = hsv(rng.random(), rng.uniform(0, saturation), rng.uniform(*value))
    smooth = upsample(rng.normal(0, 0.11, size=(6, 6, 3)), size)
    angle = rng.uniform(0, np.pi)
    frequency = rng.uniform(0.15, 0.6)
    yy, xx = np.mgrid[0:height, 0:width]
    waves = 0.06 * np.sin(frequency * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    noise = rng.normal(0, 0.03, size=(height, width, 3))
    return np.clip(base + smooth + waves[..., None] + noise, 0, 1)


def blob_predicate(rng: np.random.Generator) -> Predicate:
    """An irregular blob: a disk whose radius wobbles with random low-order harmonics.

    The wobble is strong (amplitude >= 0.2 per harmonic) so a blob never looks like a circle,
    and blobs are drawn much smaller than class objects.
    """
    orders = np.array([2, 3, 4])
    amplitudes = rng.uniform(0.2, 0.35, size=3) * rng.choice([-1, 1], size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)

    def inside(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        angle = np.arctan2(v, u)[..., None]
        wobble = (amplitudes * np.cos(orders * angle + phases)).sum(axis=-1)
        return np.sqrt(u * u + v * v) <= 0.6 * (1 + 0.6 * wobble)

    return inside


def draw_line(image: np.ndarray, rng: np.random.Generator, colour: np.ndarray, width: float = 0.8) -> None:
    """Draw a random straight segment (a scribble) across ``image`` in place."""
    height, width_px = image.shape[:2]
    p = rng.uniform([0, 0], [width_px, height])
    q = rng.uniform([0, 0], [width_px, height])
    yy, xx = np.mgrid[0:height, 0:width_px] + 0.5
    d = q - p
    t = np.clip(((xx - p[0]) * d[0] + (yy - p[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
    dist = np.hypot(xx - (p[0] + t * d[0]), yy - (p[1] + t * d[1]))
    alpha = np.clip(width + 0.5 - dist, 0, 1)[..., None]
    image[:] = image * (1 - alpha) + colour * alpha


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] to uint8 with round-half-even (deterministic)."""
    return np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
