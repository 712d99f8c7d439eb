"""Helpers every paper's steps share (figure panels, chunked explanation, records and tables).

Batched explanation of an evaluation set in chunks, map panels, result records with the
pipeline's provenance, and a markdown table of records (``shared.pipeline.table``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colorbar import Colorbar  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure, SubFigure  # noqa: E402

from shared.explain import ClassTarget, build_explainer  # noqa: E402
from shared.models import ModelAdapter  # noqa: E402
from shared.registry_meta import method_label  # noqa: E402,F401 - figure steps print labels (e.g. "SFAM (derived CIS)")
from shared.results import ResultRecord, provenance, record_from_values  # noqa: E402
from shared.runtime import pick_device  # noqa: E402

Explain = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""explain(images (B, 3, H, W), classes (B,)) -> maps (B, H, W)"""


def in_chunks(fn: Explain, images: torch.Tensor, classes: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``fn`` over ``images`` in batches of ``batch_size`` (memory bound only), concatenated."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts = [fn(images[i : i + batch_size], classes[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)]
    return torch.cat([p.detach().float() for p in parts])


def class_explainer(method: str, adapter: ModelAdapter, **overrides: Any) -> Explain:
    """``explain(images, classes)`` for a registered method, explaining ``ClassTarget(classes)``."""
    explainer = build_explainer(method, adapter, **overrides)
    return lambda images, classes: explainer(images, ClassTarget(classes.to(images.device)))


def applies(method: str, adapter: ModelAdapter) -> bool:
    """Whether ``method`` is defined for the adapter's kind, task and architecture (its registration)."""
    from shared.registry_meta import applies as _applies, method_info

    return _applies(method_info(method), adapter.kind, adapter.task, getattr(adapter, "arch", None))


HEATMAP_CMAP = "inferno"
"""The one colour map of every saliency heat map: perceptually uniform (lightness rises
monotonically with the value), readable in grey scale and by colour-blind readers. Maps are
shown on [0, 1] (normalised per map for display), so one colour bar per figure reads for all."""

COLORBAR_LABEL = "relevance (normalised per map)"
"""The label of a map figure's colour bar (:func:`heatmap_colorbar`)."""

PANEL_FONTSIZE = 7
"""Font size (pt) of panel titles, row labels and notes in the map grids."""


def heatmap_norm() -> Normalize:
    """The value range every heat map is drawn on: [0, 1] (a new instance each call)."""
    return Normalize(vmin=0.0, vmax=1.0)


def map_grid(nrows: int, ncols: int, panel: float = 1.0, extra_width: float = 0.9, extra_height: float = 0.3, **kwargs):
    """``plt.subplots`` for a grid of map panels, constrained layout (titles and row labels get
    their own room, never drawn over a neighbouring panel); ``extra_width``: room for the row
    labels and the colour bar, ``extra_height``: for a suptitle."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel * ncols + extra_width, panel * nrows + extra_height), squeeze=False, layout="constrained", **kwargs
    )
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.02, hspace=0.02)
    return fig, axes


def show(ax: Axes, image: torch.Tensor | None, heat: torch.Tensor | None = None, title: str | None = None, alpha: float = 0.5) -> None:
    """An image (3, H, W) in [0, 1] with an optional [0, 1] heat map on top (:data:`HEATMAP_CMAP`); no ticks."""
    if image is not None:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).cpu().numpy(), interpolation="nearest")
    if heat is not None:
        ax.imshow(heat.cpu().numpy(), cmap=HEATMAP_CMAP, norm=heatmap_norm(), alpha=alpha if image is not None else 1.0, interpolation="nearest")
    if title:
        ax.set_title(title, fontsize=PANEL_FONTSIZE)
    ax.set_xticks([])
    ax.set_yticks([])


def row_label(ax: Axes, text: str) -> None:
    """A row's label on the y axis of its first panel (left of the row, never over another row)."""
    ax.set_ylabel(text, fontsize=PANEL_FONTSIZE)


def heatmap_colorbar(fig: Figure | SubFigure, axes, label: str = COLORBAR_LABEL, max_inches: float = 3.0) -> Colorbar:
    """One colour bar for every heat map of ``fig`` (they share :data:`HEATMAP_CMAP` on [0, 1]),
    right of ``axes`` (an Axes or an array of them), at most ``max_inches`` tall."""
    import numpy as np

    mappable = ScalarMappable(norm=heatmap_norm(), cmap=HEATMAP_CMAP)
    height = fig.figure.get_figheight()  # the whole figure's, also for a SubFigure
    flat = list(np.ravel(axes)) if not isinstance(axes, Axes) else [axes]
    cbar = fig.colorbar(mappable, ax=flat, shrink=min(1.0, max_inches / max(height, 1e-6)), aspect=20, pad=0.01)
    cbar.set_label(label, fontsize=PANEL_FONTSIZE)
    cbar.ax.tick_params(labelsize=PANEL_FONTSIZE)
    return cbar


def blank(ax: Axes, text: str) -> None:
    """An empty panel with a short note (a method not defined for a model)."""
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=PANEL_FONTSIZE, color="0.4", transform=ax.transAxes)


def undefined_as_zero(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A rank correlation per image with NaN (a constant map: no ranking, e.g. an all-zero ReLU
    map) replaced by 0, "no association"; also returns the 0/1 indicator of those images."""
    undefined = ~torch.isfinite(values)
    return torch.where(undefined, torch.zeros_like(values), values), undefined.double()


class Recorder:
    """Collects result records with the provenance and bootstrap settings of a step's config."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.prov = provenance(cfg, seed=cfg.get("seed"), device=str(pick_device(cfg.get("device"))))
        if cfg.get("config_sha256"):
            self.prov["config_sha256"] = cfg["config_sha256"]  # the whole config's hash (results_cfg)
        self.n_resamples = int(cfg["eval"]["bootstrap"])
        self.ci = float(cfg["eval"]["ci"])
        self.seed = int(cfg.get("seed", 0))
        self.records: list[ResultRecord] = []

    def add(self, values: torch.Tensor, *, metric: str, method: str, model: str, dataset: str) -> ResultRecord:
        """A record of per-image ``values`` (N,): mean and CI over the finite ones. NaN marks an
        image the metric is undefined on (e.g. a constant map has no rank correlation): it is left
        out and counted (``extra.excluded``). The per-image values are kept (``extra.per_image``,
        None where undefined, in image order) for the claims' paired tests."""
        values = values.double().cpu().flatten()
        defined = torch.isfinite(values)
        if not bool(defined.any()):
            raise ValueError(f"{method} on {model}: {metric} is undefined on every image")
        record = record_from_values(
            values[defined],
            metric=metric,
            method=method,
            model=model,
            dataset=dataset,
            provenance=self.prov,
            n_resamples=self.n_resamples,
            ci=self.ci,
            seed=self.seed,
        )
        per_image = [float(v) if ok else None for v, ok in zip(values.tolist(), defined.tolist())]
        record = replace(record, extra={**record.extra, "per_image": per_image, "excluded": int((~defined).sum())})
        self.records.append(record)
        return record


def write_records_and_table(
    records: Sequence[ResultRecord], records_path: str | Path, table_path: str | Path, metrics: list[str], methods: list[str], title: str
) -> None:
    """The records as JSON (``shared.results`` format) and a markdown + CSV table of them."""
    from shared.pipeline.io import write_text
    from shared.pipeline.table import render
    from shared.results import write_records

    write_records(list(records), records_path)
    md, table_csv = render(list(records), metrics, methods, None, title)
    write_text(table_path, md)
    write_text(Path(table_path).with_suffix(".csv"), table_csv)
