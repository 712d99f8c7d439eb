# Cross-paper rules: the leaderboard (every method x every model it applies to) and diffs.
SHARED_TARGETS.append("reports/models.json")
SHARED_TARGETS.extend(DATASET_FIGURES)

from shared.registry_meta import method_table

LEADERBOARD_SCORES = [
    f"data/scores/{model}/{method}.json"
    for method, info in sorted(method_table().items())
    if info["leaderboard"]
    for model in models_for(method)
]

# the maps too: methods that give another's maps on a model are listed once (shared.pipeline.equal_maps)
LEADERBOARD_MAPS = [f.replace("data/scores/", "data/maps/").replace(".json", ".safetensors") for f in LEADERBOARD_SCORES]

if LEADERBOARD_SCORES:
    SHARED_TARGETS.append("reports/leaderboard.md")

    rule leaderboard:
        input:
            scores=LEADERBOARD_SCORES,
            maps=LEADERBOARD_MAPS,
        output:
            in_report("reports/leaderboard.md", "leaderboard", "The leaderboard as a table: every method on every model it applies to, means with 95 % bootstrap CIs."),
            in_report("reports/leaderboard.csv", "leaderboard", "Every method on every model it applies to: means with 95 % bootstrap CIs."),
            in_report("reports/leaderboard.png", "leaderboard", "The leaderboard as a figure: deletion and insertion one panel per model, each on its own axis (the AUC of that model's own score); every other metric one panel, one colour per model."),
            "reports/leaderboard.json",
        params:
            cfg=lambda wc: results_cfg(),
        log:
            "logs/leaderboard.log",
        benchmark:
            bench("leaderboard")
        resources:
            **budget("leaderboard"),
        shell:
            "python -m shared.pipeline.leaderboard --scores {input.scores} --maps {input.maps} --out {output[0]} --config-json {params.cfg} > {log} 2>&1"


rule diff:
    """`repro diff A B --model M` = snakemake reports/diff/M/A+B.md"""
    input:
        scores=lambda wc: [f"data/scores/{wc.model}/{m}.json" for m in wc.methods.split("+")],
        maps=lambda wc: [f"data/maps/{wc.model}/{m}.safetensors" for m in wc.methods.split("+")],
    output:
        "reports/diff/{model}/{methods}.md",
        "reports/diff/{model}/{methods}.png",
        "reports/diff/{model}/{methods}.json",
    wildcard_constraints:
        methods=r"[a-z0-9_]+(\+[a-z0-9_]+)+",
    params:
        cfg=lambda wc: results_cfg(),
        methods=lambda wc: " ".join(wc.methods.split("+")),
    log:
        "logs/diff/{model}/{methods}.log",
    shell:
        "python -m shared.pipeline.diff --model {wildcards.model} --methods {params.methods} "
        "--scores {input.scores} --maps {input.maps} --out {output[0]} --config-json {params.cfg} > {log} 2>&1"
