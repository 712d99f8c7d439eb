"""The same maps scored under every library's definition of a metric: how each method's rank moves.

    python -m shared.pipeline.definitions --scores data/scores/resnet/*.json --out reports/definitions.md \
        --config-json '{...}'            (also definitions.json and definitions.png beside it)

For each model and each metric with several definitions (:mod:`shared.metrics.definitions`), the
methods are ranked by their mean under each definition; Kendall's τ-b compares the rankings two
definitions produce, and every pair of methods whose order flips between two definitions is
listed with the paired bootstrap CI of its difference under each (``repro diff``'s test): a flip
is *significant* when both intervals exclude zero, on opposite sides. The leaderboard job writes
this page for the models of ``eval.definitions.models``; ``repro diff --definitions`` shows it.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
import torch  # noqa: E402

from shared.atomic import write_text  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.metrics import kendall_tau_b, paired_comparison  # noqa: E402
from shared.metrics.definitions import BY_NAME, Definition, families, per_image_values  # noqa: E402
from shared.pipeline.map_files import write_json  # noqa: E402
from shared.registry_meta import method_label  # noqa: E402


def rank_tau(a: list[float], b: list[float]) -> float:
    """Kendall's τ-b between two orderings of the same methods (their means under two definitions)."""
    x = torch.tensor(a, dtype=torch.float64).view(1, 1, -1)
    y = torch.tensor(b, dtype=torch.float64).view(1, 1, -1)
    return float(kendall_tau_b(x, y)[0])


def ranks(means: dict[str, float], lower_is_better: bool) -> dict[str, int]:
    """1 = best; ties share the better rank's order by method name (stable, documented)."""
    order = sorted(means, key=lambda m: (means[m] if lower_is_better else -means[m], m))
    return {m: i + 1 for i, m in enumerate(order)}


def _oriented(d: Definition, value: float) -> float:
    """``value`` with higher = better, so differences under two definitions compare by sign."""
    return -value if d.lower_is_better else value


def compare_model(
    model: str, scores: dict[str, dict[str, Any]], n_resamples: int, ci: float, seed: int
) -> dict[str, Any]:
    """One model: every metric family with at least two definitions scored for every method."""
    methods = sorted(scores)
    out: dict[str, Any] = {"model": model, "methods": methods, "metrics": []}
    for metric, defs in families().items():
        values = {d.name: {m: per_image_values(scores[m], d) for m in methods} for d in defs}
        present = [d for d in defs if all(v is not None for v in values[d.name].values())]
        if len(present) < 2 or len(methods) < 2:
            continue
        means = {d.name: {m: sum(values[d.name][m]) / len(values[d.name][m]) for m in methods} for d in present}
        entry: dict[str, Any] = {
            "metric": metric,
            "definitions": [d.name for d in present],
            "lower_is_better": {d.name: d.lower_is_better for d in present},
            "means": means,
            "ranks": {d.name: ranks(means[d.name], d.lower_is_better) for d in present},
            "tau": [],
            "flips": [],
        }
        for d1, d2 in itertools.combinations(present, 2):
            # τ on the oriented means: 1 when both definitions order the methods the same way
            tau = rank_tau([_oriented(d1, means[d1.name][m]) for m in methods], [_oriented(d2, means[d2.name][m]) for m in methods])
            flips = []
            for a, b in itertools.combinations(methods, 2):
                g1 = _oriented(d1, means[d1.name][a]) - _oriented(d1, means[d1.name][b])
                g2 = _oriented(d2, means[d2.name][a]) - _oriented(d2, means[d2.name][b])
                if g1 * g2 >= 0:
                    continue
                tests = {}
                for d in (d1, d2):
                    pc = paired_comparison(values[d.name][a], values[d.name][b], n_resamples, ci, seed)
                    tests[d.name] = {**pc.difference.__dict__, "wilcoxon_p": pc.wilcoxon_p}
                significant = all(t["low"] > 0 or t["high"] < 0 for t in tests.values())
                flips.append({"a": a, "b": b, "tests": tests, "significant": significant})
            flips.sort(key=lambda f: (not f["significant"], f["a"], f["b"]))
            entry["tau"].append({"definitions": [d1.name, d2.name], "tau": tau, "flips": len(flips),
                                 "significant_flips": sum(f["significant"] for f in flips)})
            entry["flips"] += [{**f, "definitions": [d1.name, d2.name]} for f in flips]
        out["metrics"].append(entry)
    return out


def compare(scores_by_model: dict[str, dict[str, dict[str, Any]]], n_resamples: int, ci: float, seed: int) -> dict[str, Any]:
    """Every model's :func:`compare_model`; the methods must be scored on the same images."""
    models = []
    for model, scores in sorted(scores_by_model.items()):
        ids = {tuple(s["image_ids"]) for s in scores.values()}
        if len(ids) > 1:
            raise ValueError(f"the methods on {model} were scored on different images; rerun their scores with one config")
        models.append(compare_model(model, scores, n_resamples, ci, seed))
    return {"models": models, "n_resamples": n_resamples, "ci": ci}


def _ci(t: dict[str, Any]) -> str:
    return f"{t['value']:+.3g} [{t['low']:+.3g}, {t['high']:+.3g}]"


def render(result: dict[str, Any]) -> str:
    lines = [
        "# One metric, several definitions: how the methods' order moves",
        "",
        "The same maps scored under each library's definition of a metric (`shared.metrics.definitions`). "
        "Kendall's τ-b compares the methods' orders under two definitions (1: the same order). A *flip* is a pair "
        "of methods whose order reverses; it is **significant** when the paired bootstrap 95 % CI of their "
        "difference excludes zero under both definitions, on opposite sides (a − b, in each definition's units).",
        "",
        "| definition | follows | computes |",
        "|---|---|---|",
    ]
    used = sorted({name for m in result["models"] for e in m["metrics"] for name in e["definitions"]}, key=list(BY_NAME).index)
    lines += [f"| `{n}` | {BY_NAME[n].follows} | {BY_NAME[n].differs} |" for n in used]
    for m in result["models"]:
        lines += ["", f"## {m['model']}", "", f"{len(m['methods'])} methods.", ""]
        lines += ["| metric | definitions | Kendall τ-b | flips | significant flips |", "|---|---|---:|---:|---:|"]
        for e in m["metrics"]:
            for t in e["tau"]:
                lines.append(f"| {e['metric']} | `{t['definitions'][0]}` vs `{t['definitions'][1]}` | {t['tau']:.3f} | {t['flips']} | {t['significant_flips']} |")
        for e in m["metrics"]:
            defs = e["definitions"]
            lines += ["", f"### {e['metric']}: rank (mean) under each definition", ""]
            lines += ["| method | " + " | ".join(f"`{d}` {'↓' if e['lower_is_better'][d] else '↑'}" for d in defs) + " |", "|---|" + "---|" * len(defs)]
            order = sorted(m["methods"], key=lambda me: e["ranks"][defs[0]][me])
            for me in order:
                lines.append(f"| {method_label(me)} | " + " | ".join(f"{e['ranks'][d][me]} ({e['means'][d][me]:.3g})" for d in defs) + " |")
            sig = [f for f in e["flips"] if f["significant"]]
            if e["flips"]:
                shown = sig or e["flips"][:10]
                what = "significant flips" if sig else f"flips (none significant; first {len(shown)} of {len(e['flips'])})"
                lines += ["", f"{what}:", "", "| a | b | definitions | a − b under the first | a − b under the second |", "|---|---|---|---|---|"]
                for f in shown:
                    d1, d2 = f["definitions"]
                    lines.append(f"| {method_label(f['a'])} | {method_label(f['b'])} | `{d1}` → `{d2}` | {_ci(f['tests'][d1])} | {_ci(f['tests'][d2])} |")
            else:
                lines += ["", "No pair of methods changes order between these definitions."]
    return "\n".join(lines) + "\n"


def figure(result: dict[str, Any], path: Path) -> None:
    """One panel per model and metric: each method's rank under each definition (a slope chart)."""
    panels = [(m, e) for m in result["models"] for e in m["metrics"]]
    sns.set_theme(style="whitegrid", context="paper")
    if not panels:
        fig, ax = plt.subplots(figsize=(4, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, "no metric with two definitions scored", ha="center", va="center")
        save_figure(fig, path)
        plt.close(fig)
        return
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    n_methods = max(len(m["methods"]) for m, _ in panels)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 0.22 * n_methods * rows + 1.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (m, e) in zip(axes.flat, panels):
        defs = e["definitions"]
        colours = sns.color_palette("husl", len(m["methods"]))
        for k, me in enumerate(m["methods"]):
            ys = [e["ranks"][d][me] for d in defs]
            moved = len(set(ys)) > 1
            ax.plot(range(len(defs)), ys, marker="o", ms=3, lw=1.4 if moved else 0.6, alpha=1.0 if moved else 0.35, color=colours[k])
            ax.text(-0.08, ys[0], method_label(me), ha="right", va="center", fontsize=5.5)
        ax.set_xticks(range(len(defs)), [d.split("@", 1)[1] for d in defs], fontsize=7)
        ax.set_xlim(-1.2, len(defs) - 0.8)
        ax.invert_yaxis()
        ax.set_yticks([])
        ax.set_title(f"{m['model']}: {e['metric']} (rank 1 at the top)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def write(result: dict[str, Any], out: Path) -> None:
    write_json(out.with_suffix(".json"), result)
    write_text(out, render(result))
    figure(result, out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scores", nargs="+", required=True, help="scores files (shared.pipeline.score) of the methods to compare")
    p.add_argument("--out", required=True)
    p.add_argument("--config-json", required=True)
    args = p.parse_args(argv)
    cfg = json.loads(args.config_json)
    by_model: dict[str, dict[str, Any]] = {}
    for path in args.scores:
        s = json.loads(Path(path).read_text())
        by_model.setdefault(s["model"], {})[s["method"]] = s
    write(compare(by_model, cfg["eval"]["bootstrap"], cfg["eval"]["ci"], cfg.get("seed", 0)), Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
