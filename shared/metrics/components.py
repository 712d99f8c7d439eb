"""Batched connected components in torch, for the weakly-supervised localisation metrics.

Label propagation: every foreground pixel starts with its own label (flat index + 1) and
repeatedly takes the maximum label of its 8-neighbourhood (a 3x3 max-pool restricted to the
foreground) until nothing changes. Every pixel of a component then carries the component's
largest flat index + 1. All images advance together: no loop over images.

Pointer jumping makes it fast: a pixel's label L is the index (+1) of a pixel of the same
component whose own label is at least L, so taking that pixel's label (``labels[L - 1]``)
is a valid step that follows chains of labels by doubling, as in union–find path compression.
Without it the number of rounds is the longest geodesic path in a component (hundreds on
noisy thresholded maps); with it, a few dozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_CHECK_EVERY = 8  # rounds between convergence checks (each check is a device sync)


def label_components(foreground: Tensor) -> Tensor:
    """8-connected component labels of (N, H, W) bool masks; 0 = background (int64)."""
    if foreground.ndim != 3 or foreground.dtype != torch.bool:
        raise ValueError(f"foreground must be a (N, H, W) bool tensor, got {foreground.dtype} {tuple(foreground.shape)}")
    n, h, w = foreground.shape
    # float32 represents every integer up to 2**24 exactly, enough for 4096 x 4096 maps.
    if h * w >= 2**24:
        raise ValueError(f"maps of {h}x{w} are too large for float label propagation")
    fg = foreground.unsqueeze(1)
    labels = (torch.arange(1, h * w + 1, device=foreground.device, dtype=torch.float32).view(1, 1, h, w)).expand(n, 1, h, w)
    labels = torch.where(fg, labels, torch.zeros_like(labels))
    fg_flat = fg.reshape(n, h * w)
    while True:
        before = labels
        for _ in range(_CHECK_EVERY):
            labels = torch.where(fg, F.max_pool2d(labels, 3, stride=1, padding=1), labels)
            flat = labels.reshape(n, h * w)
            for _ in range(2):  # pointer jumping (see the module docstring)
                jumped = torch.gather(flat, 1, (flat.long() - 1).clamp_min(0))
                flat = torch.where(fg_flat, torch.maximum(flat, jumped), flat)
            labels = flat.view(n, 1, h, w)
        if torch.equal(labels, before):
            break
    return labels.squeeze(1).long()


def largest_component_boxes(foreground: Tensor) -> Tensor:
    """Box (x0, y0, x1, y1, inclusive-exclusive) around the largest 8-connected component.

    Largest = most pixels; a tie goes to the component whose last pixel (raster order) comes
    later. An empty mask gives the empty box (0, 0, 0, 0).

    On the CPU the components come from SciPy's C labeller, called once on the whole
    (N, H, W) stack with a structure that connects pixels only within a map: measured on
    1024 thresholded 64x64 maps it is about a hundred times faster than label propagation,
    whose 3x3 max-pools are slow on CPU. On a GPU, label propagation (no host round trip).
    """
    if foreground.device.type == "cpu":
        return _largest_component_boxes_scipy(foreground)
    return _largest_component_boxes_propagation(foreground)


def _largest_component_boxes_scipy(foreground: Tensor) -> Tensor:
    import numpy as np
    from scipy import ndimage

    n, h, w = foreground.shape
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connectivity inside a map, nothing across maps
    labels, count = ndimage.label(foreground.numpy(), structure=structure)
    if count == 0:
        return torch.zeros(n, 4, dtype=torch.int64)
    # Every step is a C pass over the pixels or over the components: noisy maps have
    # hundreds of thousands of components per stack, so nothing loops over them in Python.
    flat = labels.reshape(n, h * w)
    size = np.bincount(labels.ravel(), minlength=count + 1)[1:]  # component c has label c + 1
    # SciPy numbers components in raster order of the stack, so map z holds labels
    # top[z - 1] + 1 .. top[z]: components are grouped by map, in segments.
    top = np.maximum.accumulate(flat.max(1))
    prev = np.concatenate([[0], top[:-1]])
    nonempty = top > prev
    seg = prev[nonempty]  # first component of each non-empty map
    owner = np.searchsorted(top, np.arange(1, count + 1), side="left")
    best_size = np.zeros(n, dtype=size.dtype)
    best_size[nonempty] = np.maximum.reduceat(size, seg)
    candidate = size == best_size[owner]
    tied_map = np.zeros(n, dtype=bool)
    tied_map[nonempty] = np.add.reduceat(candidate.astype(np.int64), seg) > 1
    # Ties: the component whose last pixel in raster order comes later wins.
    key = np.where(candidate, 0, -1)
    tied = candidate & tied_map[owner]
    if tied.any():
        pixels = np.flatnonzero(np.concatenate([[False], tied])[labels.ravel()])
        last = np.full(count + 1, -1, dtype=np.int64)
        np.maximum.at(last, labels.ravel()[pixels], pixels)
        key = np.where(tied, last[1:], key)
    best_key = np.full(n, -2, dtype=np.int64)
    best_key[nonempty] = np.maximum.reduceat(key, seg)
    winner = candidate & (key == best_key[owner])  # one per non-empty map
    is_best = np.concatenate([[False], winner])
    member = is_best[labels]  # (N, H, W): pixels of each map's largest component
    rows, cols = member.any(2), member.any(1)
    boxes = np.stack(
        [cols.argmax(1), rows.argmax(1), w - cols[:, ::-1].argmax(1), h - rows[:, ::-1].argmax(1)], axis=1
    ).astype(np.int64)
    boxes[~nonempty] = 0
    return torch.from_numpy(boxes)


def _member_boxes(member: Tensor, n: int, h: int, w: int) -> Tensor:
    """Boxes around the True pixels of (N, HW) masks; an empty mask gives (0, 0, 0, 0)."""
    ys = torch.arange(h, device=member.device).repeat_interleave(w).expand(n, -1)
    xs = torch.arange(w, device=member.device).repeat(h).expand(n, -1)
    big, small = h * w, -1
    x0 = torch.where(member, xs, big).amin(1)
    y0 = torch.where(member, ys, big).amin(1)
    x1 = torch.where(member, xs, small).amax(1) + 1
    y1 = torch.where(member, ys, small).amax(1) + 1
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    empty = ~member.any(1)
    return torch.where(empty.view(-1, 1), torch.zeros_like(boxes), boxes)


def _largest_component_boxes_propagation(foreground: Tensor) -> Tensor:
    n, h, w = foreground.shape
    labels = label_components(foreground).flatten(1)  # (N, HW), values 0..HW
    sizes = torch.zeros(n, h * w + 1, dtype=torch.int64, device=labels.device)
    sizes.scatter_add_(1, labels, torch.ones_like(labels))
    sizes[:, 0] = 0  # background is not a component
    # Ties: flip so argmax (first maximum) picks the largest label among equal sizes.
    best = (h * w) - torch.argmax(sizes.flip(1), dim=1)
    member = labels == best.view(-1, 1)
    return _member_boxes(member, n, h, w)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of paired inclusive-exclusive boxes (..., 4); an empty box has IoU 0 (float64)."""
    a = a.to(torch.float64)
    b = b.to(torch.float64)
    iw = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_min(0)
    ih = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_min(0)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]).clamp_min(0) * (a[..., 3] - a[..., 1]).clamp_min(0)
    area_b = (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp_min(1e-12), torch.zeros_like(union))
