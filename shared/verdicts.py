"""Claim verdicts from paired statistics: four outcomes, ties never pass, Holm over a paper's claims.

A claim compares a statistic ``T`` with a bound ``b`` in a direction ``s`` (+1 for ``>``, -1 for
``<``):

- a *comparison* ``lhs op rhs`` (both result keys, scored on the same images):
  ``T = stat(lhs) - k · stat(rhs)``, with ``k = 1`` and ``b = s · margin`` (an absolute margin),
  or ``k = 1 + s · margin`` and ``b = 0`` (a relative margin: "12 % better" is
  ``lhs > 1.12 · rhs``);
- a *threshold* ``lhs op number``: ``T = stat(lhs)``, ``b = number + s · margin``.

``stat`` is the mean over images, or for MaxBoxAcc the best threshold's mean box hit (the
threshold is re-chosen in every resample, Choe et al. 2020). Images are resampled *together*
for both sides (the paired bootstrap, Efron & Tibshirani 1993, ch. 13), so the interval is the
interval of the paired difference. From the resampled ``T*``:

- ``p_hold = (1 + #{s·(T* - b) <= 0}) / (B + 1)``: how often the resampled statistic fails
  the claim (a one-sided bootstrap p-value of "the claim is false");
- ``p_fail = (1 + #{s·(T* - b) > 0}) / (B + 1)``: how often it passes.

A paper's claims are one family: Holm's step-down procedure (Holm 1979) adjusts each list of
p-values over the paper's evaluable claims, at ``alpha / 2`` per direction (two one-sided tests
at a total of ``alpha``; for a single claim this is "the 95 % interval lies on one side").
The verdicts:

- **reproduced**: Holm-adjusted ``p_hold <= alpha / 2`` — the interval lies beyond the bound on
  the claimed side;
- **not reproduced**: Holm-adjusted ``p_fail <= alpha / 2`` — it lies on the other side, or on
  the bound itself (a tie: equal is not better, so ties never pass);
- **inconclusive**: neither — the interval straddles the bound;
- **not evaluable**: no paired test is possible or meaningful, with the reason: a result is
  missing, fewer than :data:`MIN_IMAGES` images remain, or both sides are one constant value on
  every image (a metric at its floor or ceiling for both methods, or two equal constant maps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

VERDICTS = ("reproduced", "inconclusive", "not reproduced", "not evaluable")
MIN_IMAGES = 10
"""Fewer paired images than this: not evaluable (a bootstrap interval on fewer says little)."""
CLAIM_RESAMPLES = 10_000
"""Bootstrap resamples per claim; p-values resolve down to 1 / (B + 1) < 0.025 / 200 (Holm over 200 claims)."""
ALPHA = 0.05


@dataclass(frozen=True)
class Side:
    """One result key's per-image data: ``values`` (N,) for a mean, or ``hits`` (N, T) for a
    best-threshold statistic (MaxBoxAcc). ``image_ids`` pairs two sides; None: by position.
    NaN values mark images the metric is undefined on (e.g. a constant map): they are left out."""

    key: str
    values: torch.Tensor | None = None
    hits: torch.Tensor | None = None
    image_ids: tuple[str, ...] | None = None

    @property
    def n(self) -> int:
        return int((self.values if self.values is not None else self.hits).shape[0])

    def rows(self) -> torch.Tensor:
        """(N, C) per-image data: one column for a mean, T for best-threshold hits."""
        data = self.values[:, None] if self.values is not None else self.hits
        return data.to(torch.float64)

    def defined(self) -> torch.Tensor:
        """(N,) bool: the images where this side has a value."""
        return torch.isfinite(self.rows()).all(1)


def statistic(rows: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of one column, or the best column's mean, of ``rows[idx]`` (idx: (B, n); None = the sample)."""
    sample = rows[idx] if idx is not None else rows[None]
    return sample.mean(1).amax(1)


@dataclass
class Test:
    """A claim's paired test before the family's adjustment."""

    value: float
    ci: tuple[float, float]
    n: int
    bound: float
    p_hold: float
    p_fail: float
    excluded: int = 0


class NotEvaluable(Exception):
    """No paired test is meaningful; the message says why."""


def _constant(rows: torch.Tensor) -> float | None:
    flat = rows.flatten()
    return float(flat[0]) if bool((flat == flat[0]).all()) else None


def paired_test(
    lhs: Side,
    rhs: Side | float,
    op: str,
    margin: float = 0.0,
    relative: bool = False,
    n_resamples: int = CLAIM_RESAMPLES,
    ci: float = 1 - ALPHA,
    seed: int = 0,
) -> Test:
    """The bootstrap test of ``lhs op rhs`` (see the module docstring); raises :class:`NotEvaluable`."""
    s = {">": 1.0, "<": -1.0}[op]
    left = lhs.rows()
    keep = lhs.defined()
    if isinstance(rhs, Side):
        if lhs.image_ids is not None and rhs.image_ids is not None and lhs.image_ids != rhs.image_ids:
            raise NotEvaluable(f"{lhs.key} and {rhs.key} were scored on different images; rerun both with one config")
        if lhs.n != rhs.n:
            raise NotEvaluable(f"{lhs.key} has {lhs.n} images and {rhs.key} {rhs.n}: they cannot be paired")
        right = rhs.rows()
        keep = keep & rhs.defined()
    excluded = int((~keep).sum())
    n = int(keep.sum())
    if n < MIN_IMAGES:
        why = f" ({excluded} left out where the metric is undefined)" if excluded else ""
        raise NotEvaluable(f"n = {n} paired images{why}: fewer than {MIN_IMAGES}, too few for a paired test")
    left = left[keep]
    if isinstance(rhs, Side):
        right = right[keep]
        cl, cr = _constant(left), _constant(right)
        if cl is not None and cl == cr:
            raise NotEvaluable(
                f"degenerate: every image scores {cl:g} under both {lhs.key.split('/')[2]} and {rhs.key.split('/')[2]} "
                f"(the metric is at a floor or ceiling, or the maps are constant); it cannot order them"
            )
        k, bound = (1.0 + s * margin, 0.0) if relative else (1.0, s * margin)
    else:
        right, k, bound = None, 0.0, float(rhs) + s * margin

    def stat(idx: torch.Tensor | None) -> torch.Tensor:
        t = statistic(left, idx)
        return t - k * statistic(right, idx) if right is not None else t

    value = float(stat(None)[0])
    gen = torch.Generator().manual_seed(seed)
    per_chunk = max(1, 2**22 // (n * max(left.shape[1], 1 if right is None else right.shape[1])))
    draws = []
    for start in range(0, n_resamples, per_chunk):
        idx = torch.randint(0, n, (min(per_chunk, n_resamples - start), n), generator=gen)
        draws.append(stat(idx))
    t = torch.cat(draws)
    beyond = s * (t - bound)
    alpha = (1 - ci) / 2
    q = torch.quantile(t, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))
    return Test(
        value=value,
        ci=(float(q[0]), float(q[1])),
        n=n,
        bound=bound,
        p_hold=(1 + int((beyond <= 0).sum())) / (n_resamples + 1),
        p_fail=(1 + int((beyond > 0).sum())) / (n_resamples + 1),
        excluded=excluded,
    )


def holm(p: list[float]) -> list[float]:
    """Holm-adjusted p-values (Holm 1979): sorted ascending, ``max_{i<=j} min(1, (m - i) p_(i))``."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def verdicts(tests: list[Test | None], alpha: float = ALPHA) -> list[tuple[str, float | None, float | None]]:
    """(verdict, Holm-adjusted p_hold, p_fail) per test; None (not evaluable) stays out of the family."""
    live = [i for i, t in enumerate(tests) if t is not None]
    hold = holm([tests[i].p_hold for i in live])
    fail = holm([tests[i].p_fail for i in live])
    out: list[tuple[str, float | None, float | None]] = [("not evaluable", None, None)] * len(tests)
    for j, i in enumerate(live):
        if hold[j] <= alpha / 2:
            verdict = "reproduced"
        elif fail[j] <= alpha / 2:
            verdict = "not reproduced"
        else:
            verdict = "inconclusive"
        out[i] = (verdict, hold[j], fail[j])
    return out


def finite_or_nan(values: list[Any]) -> torch.Tensor:
    """Per-image values from JSON (None for an undefined image) as float64 with NaN."""
    return torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float64)
