"""Step: render result records as a markdown table (and a CSV beside it).

    python -m shared.pipeline.table --results reports/gradcam/results.json \
        --metrics pointing_game,maxboxacc --out reports/gradcam/localisation.md [--methods a,b] [--models m]
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from shared.atomic import write_text
from shared.registry_meta import method_label
from shared.results import ResultRecord, read_records

LOWER_IS_BETTER_PREFIXES = (
    "deletion", "average_drop", "mass_on_other", "class_sensitivity", "road_morf", "complexity", "effective_complexity",
    "max_sensitivity", "avg_sensitivity", "local_lipschitz", "fidelity_error",
)
"""Metrics where lower is better: deletion AUC (every definition), Average Drop (every definition),
mass on the wrong object, the rank correlation of top- and bottom-class maps, ROAD MoRF (the score
after removing the most relevant pixels), complexity (entropy) and effective complexity (Quantus:
a simpler explanation is better), the robustness metrics (sensitivity, local Lipschitz estimate),
ICE's fidelity error of a concept-approximated model; and any paired drop (e.g. ``wsol_fixed_drop_fgsm8``)."""


HIGHER_IS_BETTER_EXCEPTIONS = ("class_sensitivity_pointing_disagreement",)
"""Prefixed like a lower-is-better metric, but higher is better: the share of images whose top- and
bottom-class maps peak in different places (more class-sensitive)."""


def lower_is_better(metric: str) -> bool:
    if metric.startswith(HIGHER_IS_BETTER_EXCEPTIONS):
        return False
    return metric.startswith(LOWER_IS_BETTER_PREFIXES) or "_drop_" in metric


class _LowerIsBetter:
    """``metric in LOWER_IS_BETTER`` reads as the rule above."""

    def __contains__(self, metric: object) -> bool:
        return isinstance(metric, str) and lower_is_better(metric)


LOWER_IS_BETTER = _LowerIsBetter()


def fmt(r: ResultRecord | None) -> str:
    if r is None:
        return "—"
    if r.ci_low is None or r.ci_high is None:
        return f"{r.value:.3f}"
    return f"{r.value:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}]"


def render(records: list[ResultRecord], metrics: list[str], methods: list[str] | None, models: list[str] | None, title: str | None) -> tuple[str, str]:
    """(markdown, csv) with one row per (dataset, model, method) and one column per metric.

    The markdown shows each method by its registered label (``@register_method(..., label=)``,
    e.g. "SFAM (derived CIS)"), what readers see; the CSV keeps the method's registered name,
    the key of its result records and files."""
    by = {(r.dataset, r.model, r.method, r.metric): r for r in records}
    rows = sorted({(r.dataset, r.model, r.method) for r in records})
    if methods:
        rows = [row for row in rows if row[2] in methods]
        rows.sort(key=lambda row: (row[0], row[1], methods.index(row[2])))
    if models:
        rows = [row for row in rows if row[1] in models]
    arrows = [f"{m} {'↓' if m in LOWER_IS_BETTER else '↑'}" for m in metrics]
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines.append("| dataset | model | method | " + " | ".join(arrows) + " |")
    lines.append("|---|---|---|" + "---|" * len(metrics))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["dataset", "model", "method", *[f"{m}{s}" for m in metrics for s in ("", "_ci_low", "_ci_high")], "n"])
    for d, mo, me in rows:
        cells = [fmt(by.get((d, mo, me, m))) for m in metrics]
        shown = method_label(me).replace("|", "\\|")  # a label may not break the table
        lines.append(f"| {d} | {mo} | {shown} | " + " | ".join(cells) + " |")
        vals = []
        n = ""
        for m in metrics:
            r = by.get((d, mo, me, m))
            vals += ["" if r is None else f"{x:.6g}" if x is not None else "" for x in ((r.value, r.ci_low, r.ci_high) if r else (None, None, None))]
            n = r.n if r else n
        writer.writerow([d, mo, me, *vals, n])
    # the images behind the cells shown (a metric not in the table may have left some out)
    n_values = sorted({r.n for r in records if (r.dataset, r.model, r.method) in set(rows) and r.metric in metrics})
    lines += ["", f"Mean over images with a {int(100 * (records[0].extra.get('ci', 0.95) if records else 0.95))} % bootstrap CI; n = {', '.join(map(str, n_values))} images. ↑ higher is better, ↓ lower is better."]
    return "\n".join(lines) + "\n", out.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", required=True)
    p.add_argument("--metrics", required=True, help="comma-separated metric names")
    p.add_argument("--methods", help="comma-separated methods, in display order")
    p.add_argument("--models", help="comma-separated models")
    p.add_argument("--title")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    split = lambda s: [x for x in s.split(",") if x] if s else None  # noqa: E731
    md, table_csv = render(read_records(args.results), split(args.metrics), split(args.methods), split(args.models), args.title)
    write_text(args.out, md)
    write_text(Path(args.out).with_suffix(".csv"), table_csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
