"""Agreement between metrics: for every pair of metrics, Kendall's τ-b between the orders of the
methods they produce on a model (the "disagreement" view of LATEC, Klein et al. 2024, and of
Tomsett et al., *Sanity checks for saliency metrics*, AAAI 2020, Sec. 4).

Each metric's means are oriented so that higher is better (lower-is-better metrics negated:
``shared.pipeline.table.LOWER_IS_BETTER``), so τ = 1 means two metrics rank the methods the same
way and τ = −1 the reverse. Written by the leaderboard job as ``reports/metric_agreement.md``
(and ``.json``, ``.png``) from the leaderboard's records, on the methods the leaderboard shows.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from shared.atomic import write_text  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.pipeline.definitions import rank_tau  # noqa: E402
from shared.pipeline.map_files import write_json  # noqa: E402
from shared.pipeline.table import LOWER_IS_BETTER  # noqa: E402
from shared.results import ResultRecord  # noqa: E402

MIN_METHODS = 3
"""Fewer methods than this on a model: no agreement (τ of two items is ±1 or undefined)."""


def agreement(records: list[ResultRecord]) -> dict[str, Any]:
    """Per model: the metrics scored for every method there and the τ-b matrix between them."""
    by_model: dict[str, dict[str, dict[str, float]]] = {}
    for r in records:
        by_model.setdefault(r.model, {}).setdefault(r.metric, {})[r.method] = float(r.value)
    out = []
    for model, per_metric in sorted(by_model.items()):
        methods = sorted({me for v in per_metric.values() for me in v})
        metrics = sorted(m for m, v in per_metric.items() if set(v) == set(methods))
        if len(methods) < MIN_METHODS or len(metrics) < 2:
            continue
        oriented = torch.tensor(
            [[(-1.0 if m in LOWER_IS_BETTER else 1.0) * per_metric[m][me] for me in methods] for m in metrics], dtype=torch.float64
        )
        n = len(metrics)
        tau = torch.eye(n, dtype=torch.float64)
        for i, j in itertools.combinations(range(n), 2):
            tau[i, j] = tau[j, i] = rank_tau(oriented[i].tolist(), oriented[j].tolist())
        out.append({"model": model, "methods": methods, "metrics": metrics, "tau": tau.tolist()})
    return {"models": out}


def render(result: dict[str, Any]) -> str:
    lines = [
        "# Agreement between metrics",
        "",
        "For every pair of metrics, Kendall's τ-b between the orders of the methods they produce on a model "
        "(higher-is-better orientation: τ = 1 the same order, −1 the reverse; NaN where a metric ties every method). "
        "The full matrices are in `metric_agreement.json` and the figure.",
    ]
    for m in result["models"]:
        metrics, tau = m["metrics"], m["tau"]
        pairs = [(tau[i][j], metrics[i], metrics[j]) for i, j in itertools.combinations(range(len(metrics)), 2) if tau[i][j] == tau[i][j]]
        pairs.sort()
        lines += ["", f"## {m['model']}", "", f"{len(m['methods'])} methods, {len(metrics)} metrics; "
                  f"{sum(t < 0 for t, _, _ in pairs)} of {len(pairs)} metric pairs order the methods more in reverse than alike (τ < 0).", ""]
        lines += ["Most opposed pairs:", "", "| metric | metric | τ-b |", "|---|---|---:|"]
        lines += [f"| {a} | {b} | {t:.2f} |" for t, a, b in pairs[:8]]
        lines += ["", "Each metric's mean τ-b with the others:", "", "| metric | mean τ-b |", "|---|---:|"]
        for i, metric in enumerate(metrics):
            others = [tau[i][j] for j in range(len(metrics)) if j != i and tau[i][j] == tau[i][j]]
            lines.append(f"| {metric} | {sum(others) / len(others):.2f} |" if others else f"| {metric} | — |")
    return "\n".join(lines) + "\n"


def figure(result: dict[str, Any], path: Path) -> None:
    models = result["models"]
    sns.set_theme(style="white", context="paper")
    if not models:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, f"fewer than {MIN_METHODS} methods on every model", ha="center", va="center")
    else:
        side = max(len(m["metrics"]) for m in models) * 0.28 + 1.5
        fig, axes = plt.subplots(1, len(models), figsize=(side * len(models), side), squeeze=False)
        for ax, m in zip(axes[0], models):
            sns.heatmap(torch.tensor(m["tau"]).numpy(), vmin=-1, vmax=1, cmap="RdBu_r", square=True, ax=ax, cbar=ax is axes[0][-1],
                        xticklabels=m["metrics"], yticklabels=m["metrics"])
            ax.tick_params(labelsize=5)
            ax.set_title(f"{m['model']}: Kendall τ-b between metrics", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def write(records: list[ResultRecord], out: Path) -> None:
    result = agreement(records)
    write_json(out.with_suffix(".json"), result)
    write_text(out, render(result))
    figure(result, out.with_suffix(".png"))
