"""Byte-stable figure saving shared by every step that writes a figure.

Two runs that draw the same figure must write the same bytes, so that ``reports/`` diffs only
when a result changes. Matplotlib's PNG writer adds a ``Software`` text chunk (its version);
we drop it and render with the Agg backend at a fixed dpi. PNG has no timestamp unless one is
asked for, and we never ask.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from shared.atomic import atomic_write

DEFAULT_DPI = 100
"""Fixed resolution of every saved figure (dots per inch)."""


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = DEFAULT_DPI) -> Path:
    """Save ``fig`` as a PNG at ``path``, byte-stable and atomically; return the path.

    The figure is rendered by the Agg backend (whatever backend is active), without the
    ``Software`` metadata chunk, into a temporary file in the target directory that is then
    renamed over ``path``, so a reader never sees a half-written file.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_figure writes PNG only; got {str(path)!r} — use a .png file name")
    return atomic_write(
        path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, backend="agg", metadata={"Software": None})
    )
