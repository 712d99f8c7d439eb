"""Step: compare methods from any papers on one model — means with CIs, paired tests, map
agreement, and a plot.

    python -m shared.pipeline.diff --model resnet --methods gradcam eigencam \
        --scores data/scores/resnet/gradcam.json data/scores/resnet/eigencam.json \
        --maps data/maps/resnet/gradcam.safetensors data/maps/resnet/eigencam.safetensors \
        --out reports/diff/resnet/gradcam+eigencam.md --config-json '{...}' [--metrics a,b]
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
from shared.metrics import bootstrap_ci, kendall_tau_b, paired_comparison, spearman, top_k_overlap  # noqa: E402
from shared.pipeline.map_files import load_maps, write_json  # noqa: E402
from shared.pipeline.table import LOWER_IS_BETTER  # noqa: E402
from shared.registry_meta import method_label  # noqa: E402

DEFAULT_METRICS = ["deletion", "insertion", "pointing_game", "energy_pointing_game", "relevance_mass", "relevance_rank_accuracy"]


KENDALL_SIDE = 16


def pool_for_kendall(maps: torch.Tensor) -> torch.Tensor:
    """(B, H, W) maps average-pooled to at most KENDALL_SIDE x KENDALL_SIDE."""
    h, w = maps.shape[-2:]
    if h <= KENDALL_SIDE and w <= KENDALL_SIDE:
        return maps
    return torch.nn.functional.adaptive_avg_pool2d(maps[:, None].float(), (min(h, KENDALL_SIDE), min(w, KENDALL_SIDE)))[:, 0]


def compare(
    methods: list[str], scores: list[dict[str, Any]], maps: list[torch.Tensor], metrics: list[str], n_resamples: int, ci: float, seed: int
) -> dict[str, Any]:
    """Means with CIs per method and metric, paired tests and map agreement per pair of methods."""
    ids = [s["image_ids"] for s in scores]
    if any(i != ids[0] for i in ids):
        raise ValueError("the methods were scored on different images; rerun their maps with one config")
    available = [m for m in metrics if all(m in s["per_image"] for s in scores)]
    means = {
        me: {m: bootstrap_ci(s["per_image"][m], n_resamples, ci, seed).__dict__ for m in available} for me, s in zip(methods, scores)
    }
    pairs = []
    for (i, a), (j, b) in itertools.combinations(enumerate(methods), 2):
        tests = {}
        for m in available:
            pc = paired_comparison(scores[i]["per_image"][m], scores[j]["per_image"][m], n_resamples, ci, seed)
            tests[m] = {"difference": pc.difference.__dict__, "wilcoxon_p": pc.wilcoxon_p}
        agreement = {
            "spearman": spearman(maps[i], maps[j]),
            # Kendall's tau is O(pixels^2): on 16x16 average-pooled maps (the maps come from
            # 8x8 layers, so pooling to 16x16 keeps their information; 256x fewer pairs at 64 px)
            "kendall_tau_b": kendall_tau_b(pool_for_kendall(maps[i]), pool_for_kendall(maps[j])),
            "top10_overlap": top_k_overlap(maps[i], maps[j], 0.1),
        }
        summary = {}
        for k, v in agreement.items():
            v = v.double().cpu()
            # a constant map (e.g. all zero after a ReLU) has no ranking: its correlation is
            # undefined (NaN); such images are left out of that agreement and counted
            finite = torch.isfinite(v)
            entry = bootstrap_ci(v[finite], n_resamples, ci, seed).__dict__ if bool(finite.any()) else {"value": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
            entry["undefined"] = int((~finite).sum())
            summary[k] = entry
        pairs.append({"a": a, "b": b, "tests": tests, "agreement": summary})
    return {"methods": methods, "metrics": available, "means": means, "pairs": pairs, "n": len(ids[0])}


def render(model: str, result: dict[str, Any]) -> str:
    methods, metrics = result["methods"], result["metrics"]
    def f(c: dict[str, Any]) -> str:
        text = "—" if c.get("n", 1) == 0 else f"{c['value']:.3f} [{c['low']:.3f}, {c['high']:.3f}]"
        return text + (f" ({c['undefined']} constant maps left out)" if c.get("undefined") else "")

    lines = [f"# {' vs '.join(methods)} on `{model}`", "", f"n = {result['n']} images; mean with 95 % bootstrap CI.", ""]
    lines += ["| method | " + " | ".join(f"{m} {'↓' if m in LOWER_IS_BETTER else '↑'}" for m in metrics) + " |", "|---|" + "---|" * len(metrics)]
    lines += [f"| {me} | " + " | ".join(f(result["means"][me][m]) for m in metrics) + " |" for me in methods]
    lines += ["", "## Paired differences (a − b) and Wilcoxon signed-rank p", "", "| a | b | metric | a − b | p |", "|---|---|---|---|---|"]
    for p in result["pairs"]:
        for m in metrics:
            t = p["tests"][m]
            lines.append(f"| {p['a']} | {p['b']} | {m} | {f(t['difference'])} | {t['wilcoxon_p']:.3g} |")
    lines += ["", "## Agreement of the maps", "", f"Spearman and top-10 % overlap on the full maps; Kendall τ-b on maps average-pooled to {KENDALL_SIDE}×{KENDALL_SIDE}.", "", "| a | b | Spearman | Kendall τ-b | top-10 % overlap |", "|---|---|---|---|---|"]
    for p in result["pairs"]:
        g = p["agreement"]
        lines.append(f"| {p['a']} | {p['b']} | {f(g['spearman'])} | {f(g['kendall_tau_b'])} | {f(g['top10_overlap'])} |")
    return "\n".join(lines) + "\n"


def figure(model: str, result: dict[str, Any], path: Path, score: str | None = None) -> None:
    """One panel per metric, the methods' means with CIs; ``score``: what the model's deletion and
    insertion AUCs integrate (the scores files' ``score``, e.g. "class probability"), on their x axes."""
    methods, metrics = result["methods"], result["metrics"]
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.2 * len(metrics), 0.35 * len(methods) + 1.4), sharey=True)
    axes = list(axes) if len(metrics) > 1 else [axes]
    colours = sns.color_palette("colorblind", len(methods))
    for ax, m in zip(axes, metrics):
        for k, me in enumerate(methods):
            c = result["means"][me][m]
            ax.errorbar([c["value"]], [k], xerr=[[c["value"] - c["low"]], [c["high"] - c["value"]]], fmt="o", color=colours[k])
        ax.set_title(f"{m} {'↓' if m in LOWER_IS_BETTER else '↑'}", fontsize=8)
        ax.set_yticks(range(len(methods)), [method_label(me) for me in methods], fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        if score and m in ("deletion", "insertion"):
            ax.set_xlabel(f"AUC of {score}", fontsize=8)
    fig.suptitle(f"{model}: {' vs '.join(method_label(me) for me in methods)}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--scores", nargs="+", required=True)
    p.add_argument("--maps", nargs="+", required=True)
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS))
    p.add_argument("--out", required=True)
    p.add_argument("--config-json", required=True)
    args = p.parse_args(argv)
    if not (len(args.methods) == len(args.scores) == len(args.maps)):
        p.error("give one --scores and one --maps file per method, in the same order")
    cfg = json.loads(args.config_json)
    scores = [json.loads(Path(s).read_text()) for s in args.scores]
    maps = [load_maps(m)[0] for m in args.maps]
    metrics = [m for m in args.metrics.split(",") if m]
    result = compare(args.methods, scores, maps, metrics, cfg["eval"]["bootstrap"], cfg["eval"]["ci"], cfg.get("seed", 0))
    out = Path(args.out)
    write_json(out.with_suffix(".json"), result)
    write_text(out, render(args.model, result))
    figure(args.model, result, out.with_suffix(".png"), next((s["score"] for s in scores if s.get("score")), None))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
