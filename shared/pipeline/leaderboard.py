"""Step: the leaderboard — every method × every model it applies to × the common metrics.

    python -m shared.pipeline.leaderboard --scores data/scores/*/*.json --maps data/maps/*/*.safetensors \
        --out reports/leaderboard.md --config-json '{...}'      (also leaderboard.csv and leaderboard.png beside it)

Methods whose maps are identical on a model (:mod:`shared.pipeline.equal_maps`: XGrad-CAM and
HiResCAM are Grad-CAM at the last layer of a GAP + linear head) are listed once there: the table
and figure show the first of them, and a section names the others and the evidence. The CSV and
JSON keep every method's records.
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
from shared.pipeline import definitions, metric_agreement, table  # noqa: E402
from shared.pipeline.equal_maps import Equality, equal_methods  # noqa: E402
from shared.pipeline.map_files import load_maps  # noqa: E402
from shared.pipeline.results import records_from_scores  # noqa: E402
from shared.registry_meta import method_label, method_year  # noqa: E402
from shared.runtime import pick_device
from shared.results import ResultRecord, provenance, write_records  # noqa: E402

COMMON_METRICS = ["deletion", "insertion", "pointing_game", "energy_pointing_game", "relevance_mass", "maxboxacc"]


PER_MODEL_METRICS = ("deletion", "insertion")
"""Metrics whose scale is the model's own score (the AUC of a class probability in [0, 1], of a
cosine similarity, or of −‖f − r‖², unbounded below): drawn on one axis per model, never shared."""


def model_scores(records: list[ResultRecord], scores: dict[str, str] | None = None) -> dict[str, str]:
    """What each model's deletion / insertion AUC integrates: ``scores[model]`` where given (the
    ``score`` of its scores files), else "class probability" for a classifier (it has Average
    Drop records, defined for classifiers only) and "similarity to the reference" otherwise."""
    classifiers = {r.model for r in records if r.metric == "average_drop"}
    given = scores or {}
    return {
        r.model: given.get(r.model) or ("class probability" if r.model in classifiers else "similarity to the reference")
        for r in records
    }


def leaderboard_figure(records: list[ResultRecord], metrics: list[str], path: Path, scores: dict[str, str] | None = None) -> None:
    """The methods' means with their CIs, each method shown by its registered label (what readers
    see, e.g. "SFAM (derived CIS)").

    Deletion and insertion (:data:`PER_MODEL_METRICS`): one panel per model, each on its own x
    axis labelled with the score the AUC is of (:func:`model_scores`; a Euclidean model's AUCs
    of −‖f − r‖² lie far below a classifier's of a probability, so a shared axis would squash
    every other model to a dot). Every other metric: one panel, one colour per model.
    """
    rows = [
        {"metric": r.metric, "method": r.method, "model": r.model, "value": r.value, "lo": r.ci_low, "hi": r.ci_high}
        for r in records
        if r.metric in metrics
    ]
    df = pd.DataFrame(rows).sort_values(["metric", "model", "method"], kind="stable")
    methods = sorted(df["method"].unique())
    models = sorted(df["model"].unique())
    per_model = [m for m in metrics if m in PER_MODEL_METRICS and m in set(df["metric"])]
    common = [m for m in metrics if m not in per_model]
    score_of = model_scores(records, scores)
    sns.set_theme(style="whitegrid", context="paper")
    palette = dict(zip(models, sns.color_palette("colorblind", len(models))))
    row_height = 0.22 * len(methods) + 1.0
    width = max(2.4 * len(models), 2.6 * len(common)) + 2.4
    fig = plt.figure(figsize=(width, row_height * (len(per_model) + (1 if common else 0)) + 0.4 * bool(per_model)), layout="constrained")
    parts = fig.subfigures(2, 1, height_ratios=[len(per_model), 1]) if per_model and common else [fig]
    top = parts[0] if per_model else None
    bottom = parts[-1] if common else None

    def draw(ax, s, colour, offsets) -> None:
        y = [methods.index(m) + o for m, o in zip(s["method"], offsets)]
        ax.errorbar(s["value"], y, xerr=[s["value"] - s["lo"], s["hi"] - s["value"]], fmt="o", ms=3, lw=0.8, color=colour)

    def method_axis(ax) -> None:
        ax.set_yticks(range(len(methods)), [method_label(m) for m in methods], fontsize=8)
        ax.set_ylim(len(methods) - 0.5, -0.5)
        ax.tick_params(axis="x", labelsize=8)

    if top is not None:
        grid = top.subplots(len(per_model), len(models), squeeze=False, sharey=True)
        for r, metric in enumerate(per_model):
            arrow = "↓" if metric in table.LOWER_IS_BETTER else "↑"
            for c, model in enumerate(models):
                ax = grid[r, c]
                ax.set_label(f"{metric}/{model}")
                s = df[(df["metric"] == metric) & (df["model"] == model)]
                draw(ax, s, palette[model], [0.0] * len(s))
                method_axis(ax)
                ax.set_title(f"{metric} {arrow}: {model}", fontsize=8, color=palette[model])
                ax.set_xlabel(f"AUC of {score_of.get(model, 'the score')}", fontsize=8)
        top.suptitle(
            "Deletion and insertion: each model on its own axis (the AUC of that model's own score; not comparable across models)",
            fontsize=9,
        )
    if bottom is not None:
        axes = bottom.subplots(1, len(common), squeeze=False, sharey=True)[0]
        for ax, metric in zip(axes, common):
            ax.set_label(metric)
            sub = df[df["metric"] == metric]
            for j, model in enumerate(models):
                s = sub[sub["model"] == model]
                draw(ax, s, palette[model], [(j - (len(models) - 1) / 2) * 0.12] * len(s))
            arrow = "↓" if metric in table.LOWER_IS_BETTER else "↑"
            ax.set_title(f"{metric} {arrow}", fontsize=8)
            method_axis(ax)
        handles = [plt.Line2D([], [], marker="o", ls="", ms=4, color=palette[m]) for m in models]
        bottom.legend(handles, models, fontsize=8, loc="outside right center", title="model", title_fontsize=8, frameon=False)
    save_figure(fig, path)
    plt.close(fig)


def find_equalities(map_paths: list[str]) -> list[Equality]:
    """Per model, the methods whose maps equal another's (:func:`equal_methods`), methods in the
    registry's order of papers by year then name, so the earlier published method is the one named."""
    by_model: dict[str, dict[str, Path]] = {}
    for path in map_paths:
        p = Path(path)
        by_model.setdefault(p.parent.name, {})[p.stem] = p
    found: list[Equality] = []
    for model, paths in sorted(by_model.items()):
        order = sorted(paths, key=lambda m: (method_year(m), m))
        found += equal_methods(model, {m: load_maps(paths[m])[0] for m in order})
    return found


def equalities_section(equalities: list[Equality]) -> str:
    """Markdown naming the rows the table leaves out because they repeat another method's maps."""
    if not equalities:
        return ""
    lines = [
        "",
        "## Equal by construction on these models",
        "",
        "These methods give the same maps as the one named, up to a positive factor per image, so the table lists "
        "them once (`shared.pipeline.equal_maps`; largest difference of per-image max-normalised maps shown). "
        "Their records stay in `leaderboard.csv` and `leaderboard.json`.",
        "",
        "| model | method | same maps as | max difference |",
        "|---|---|---|---|",
    ]
    for e in equalities:
        lines.append(f"| {e.model} | {method_label(e.method)} | {method_label(e.same_as)} | {e.max_diff:.1e} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scores", nargs="+", required=True)
    p.add_argument("--maps", nargs="*", default=[], help="the scored methods' maps (data/maps/<model>/<method>.safetensors)")
    p.add_argument("--out", required=True, help="leaderboard.md (csv, png and json beside it)")
    p.add_argument("--config-json", required=True)
    p.add_argument("--agreement-out", help="metric_agreement.md: Kendall τ between the methods' orders under every pair of metrics")
    p.add_argument("--definitions-out", help="definitions.md: the models of eval.definitions.models ranked under each metric definition")
    args = p.parse_args(argv)
    cfg = json.loads(args.config_json)
    # the device the numbers were computed on, not the config's "auto"
    prov = provenance(cfg, seed=cfg.get("seed"), device=str(pick_device(cfg.get("device"))))
    prov["config_sha256"] = cfg.get("config_sha256", prov["config_sha256"])
    records: list[ResultRecord] = []
    score_of: dict[str, str] = {}  # model -> the score its deletion / insertion AUCs integrate
    loaded: dict[tuple[str, str], dict] = {}  # (model, method) -> scores, for the definitions page
    for path in sorted(args.scores):
        scores = json.loads(Path(path).read_text())
        loaded[(scores["model"], scores["method"])] = scores
        records.extend(records_from_scores(scores, prov, cfg["eval"]["bootstrap"], cfg["eval"]["ci"], cfg.get("seed", 0)))
        if scores.get("score"):
            score_of[scores["model"]] = scores["score"]
    out = Path(args.out)
    write_records(records, out.with_suffix(".json"))
    sections = ["# Leaderboard", "", "Every method on every model it applies to, on the common metrics (see `docs/ARCHITECTURE.md`).", ""]
    equalities = find_equalities(args.maps)
    hidden = {(e.model, e.method) for e in equalities}
    shown = [r for r in records if (r.model, r.method) not in hidden]
    md, _ = table.render(shown, COMMON_METRICS, None, None, None)
    _, csv_text = table.render(records, COMMON_METRICS, None, None, None)
    distinct = sorted({r.method for r in shown})
    sections.append(f"{len(distinct)} distinct methods (identical maps on a model counted once, block variants not listed).")
    sections.append("")
    write_text(out, "\n".join(sections) + "\n" + md + equalities_section(equalities))  # a blank line: a Markdown table cannot interrupt a paragraph
    write_text(out.with_suffix(".csv"), csv_text)
    leaderboard_figure(shown, COMMON_METRICS, out.with_suffix(".png"), score_of)
    # the same rows as the table: a method whose maps repeat another's would tie with it everywhere
    if args.agreement_out:
        metric_agreement.write(shown, Path(args.agreement_out))
    if args.definitions_out:
        wanted = set((cfg["eval"].get("definitions") or {}).get("models") or [])
        by_model: dict[str, dict] = {}
        for (model, method), scores in sorted(loaded.items()):
            if model in wanted and (model, method) not in hidden:
                by_model.setdefault(model, {})[method] = scores
        definitions.write(definitions.compare(by_model, cfg["eval"]["bootstrap"], cfg["eval"]["ci"], cfg.get("seed", 0)), Path(args.definitions_out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
