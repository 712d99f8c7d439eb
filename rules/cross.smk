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
            in_report("reports/metric_agreement.md", "leaderboard", "Agreement between metrics: Kendall τ-b between the orders of the methods that every pair of metrics produces on each model."),
            in_report("reports/metric_agreement.png", "leaderboard", "Kendall τ-b between every pair of metrics' orders of the methods, one matrix per model (red: the same order, blue: reversed)."),
            "reports/metric_agreement.json",
            in_report("reports/definitions.md", "definitions", "One metric, several definitions: the same maps ranked under each library's definition of Average Drop, Increase in Confidence, deletion, insertion, the pointing game and MaxBoxAcc; Kendall τ between the rankings and every pair of methods whose order flips, with paired CIs."),
            in_report("reports/definitions.png", "definitions", "Each method's rank under each definition of a metric (rank 1 at the top): a line that moves is a method whose standing depends on the definition."),
            "reports/definitions.json",
        params:
            cfg=lambda wc: results_cfg(),
        log:
            "logs/leaderboard.log",
        benchmark:
            bench("leaderboard")
        resources:
            **budget("leaderboard"),
        shell:
            "python -m shared.pipeline.leaderboard --scores {input.scores} --maps {input.maps} --out {output[0]} "
            "--agreement-out reports/metric_agreement.md --definitions-out reports/definitions.md --config-json {params.cfg} > {log} 2>&1"


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
