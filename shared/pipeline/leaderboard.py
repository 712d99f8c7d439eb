"""Step: the leaderboard — every method × every model it applies to × the common metrics.

    python -m shared.pipeline.leaderboard --scores data/scores/*/*.json --out reports/leaderboard.md \
        --config-json '{...}'      (also leaderboard.csv and leaderboard.png beside it)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from shared.atomic import write_text  # noqa: E402
from shared.figures import save_figure  # noqa: E402
from shared.pipeline import table  # noqa: E402
from shared.pipeline.results import records_from_scores  # noqa: E402
from shared.registry_meta import method_label  # noqa: E402
from shared.runtime import pick_device
from shared.results import ResultRecord, provenance, write_records  # noqa: E402

COMMON_METRICS = ["deletion", "insertion", "pointing_game", "energy_pointing_game", "relevance_mass", "maxboxacc"]


def leaderboard_figure(records: list[ResultRecord], metrics: list[str], path: Path) -> None:
    """One panel per metric: methods' means with their CIs, one colour per model; each method
    shown by its registered label (what readers see, e.g. "SFAM (derived CIS)")."""
    rows = [
        {"metric": r.metric, "method": r.method, "model": r.model, "value": r.value, "lo": r.ci_low, "hi": r.ci_high}
        for r in records
        if r.metric in metrics
    ]
    df = pd.DataFrame(rows).sort_values(["metric", "model", "method"], kind="stable")
    methods = sorted(df["method"].unique())
    models = sorted(df["model"].unique())
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 1.5, 0.28 * len(methods) + 1.6), sharey=True)
    palette = dict(zip(models, sns.color_palette("colorblind", len(models))))
    for ax, metric in zip(axes, metrics):
        sub = df[df["metric"] == metric]
        for j, model in enumerate(models):
            s = sub[sub["model"] == model]
            y = [methods.index(m) + (j - (len(models) - 1) / 2) * 0.12 for m in s["method"]]
            ax.errorbar(s["value"], y, xerr=[s["value"] - s["lo"], s["hi"] - s["value"]], fmt="o", ms=3, lw=0.8, color=palette[model], label=model)
        arrow = "↓" if metric in table.LOWER_IS_BETTER else "↑"
        ax.set_title(f"{metric} {arrow}", fontsize=8)
        ax.set_yticks(range(len(methods)), [method_label(m) for m in methods], fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    axes[-1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.02, 0.5), title="model", title_fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scores", nargs="+", required=True)
    p.add_argument("--out", required=True, help="leaderboard.md (csv, png and json beside it)")
    p.add_argument("--config-json", required=True)
    args = p.parse_args(argv)
    cfg = json.loads(args.config_json)
    # the device the numbers were computed on, not the config's "auto"
    prov = provenance(cfg, seed=cfg.get("seed"), device=str(pick_device(cfg.get("device"))))
    prov["config_sha256"] = cfg.get("config_sha256", prov["config_sha256"])
    records: list[ResultRecord] = []
    for path in sorted(args.scores):
        scores = json.loads(Path(path).read_text())
        records.extend(records_from_scores(scores, prov, cfg["eval"]["bootstrap"], cfg["eval"]["ci"], cfg.get("seed", 0)))
    out = Path(args.out)
    write_records(records, out.with_suffix(".json"))
    sections = ["# Leaderboard", "", "Every method on every model it applies to, on the common metrics (see `docs/ARCHITECTURE.md`).", ""]
    md, csv_text = table.render(records, COMMON_METRICS, None, None, None)
    write_text(out, "\n".join(sections) + "\n" + md)  # a blank line: a Markdown table cannot interrupt a paragraph
    write_text(out.with_suffix(".csv"), csv_text)
    leaderboard_figure(records, COMMON_METRICS, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
