# gradcampp: Grad-CAM++ against Grad-CAM on the shapes classifiers — the paper's own Average Drop /
# Increase in Confidence (map kept at 100, 50, 15 %) and localisation. Maps and scores come from
# the shared rules. Writes only under reports/gradcampp/.
GRADCAMPP_MODELS = [m for m in ("resnet", "plaincnn", "vit") if m in config["models"]]
GRADCAMPP_METHODS = ["gradcampp", "gradcam"]

PAPER_TARGETS["gradcampp"] = [
    "reports/gradcampp/results.json",
    "reports/gradcampp/faithfulness.md",
    "reports/gradcampp/localisation.md",
    "reports/gradcampp/claims.md",
]


rule gradcampp_results:
    input:
        expand("data/scores/{model}/{method}.json", model=GRADCAMPP_MODELS, method=GRADCAMPP_METHODS),
    output:
        "reports/gradcampp/results.json",
    params:
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m shared.pipeline.results --paper gradcampp --scores {input} --out {output} --config-json {params.cfg}"


rule gradcampp_table:
    input:
        "reports/gradcampp/results.json",
    output:
        in_report("reports/gradcampp/{table}.md"),
    wildcard_constraints:
        table="faithfulness|localisation",
    params:
        metrics=lambda wc: {
            "faithfulness": "average_drop,increase_in_confidence,average_drop_50,increase_in_confidence_50,average_drop_15,increase_in_confidence_15",
            "localisation": "wsol_fixed,pointing_game,energy_pointing_game",
        }[wc.table],
        methods=",".join(GRADCAMPP_METHODS),
    shell:
        "python -m shared.pipeline.table --results {input} --metrics {params.metrics} "
        "--methods {params.methods} --out {output}"


rule gradcampp_claims:
    input:
        "reports/gradcampp/results.json",
    output:
        in_report("reports/gradcampp/claims.md"),
    shell:
        "python -m shared.pipeline.claims --paper gradcampp --results {input} --out {output}"


rule gradcampp:
    input:
        PAPER_TARGETS["gradcampp"],
