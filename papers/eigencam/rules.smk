# eigencam: Eigen-CAM against Grad-CAM and Grad-CAM++ on weakly-supervised localisation, and
# localisation under FGSM noise (papers/eigencam/figures.py adversarial). Maps and scores come from
# the shared rules. Writes only under reports/eigencam/ (and data/eigencam/ for the noisy maps).
EIGENCAM_MODELS = [m for m in ("resnet", "plaincnn", "vit") if m in config["models"]]
EIGENCAM_METHODS = ["eigencam", "eigencam_centered", "gradcam", "gradcampp"]

PAPER_TARGETS["eigencam"] = [
    "reports/eigencam/results.json",
    "reports/eigencam/localisation.md",
    "reports/eigencam/adversarial.md",
    "reports/eigencam/claims.md",
    "reports/eigencam/adversarial.json",
    "reports/eigencam/adversarial.png",
]


rule eigencam_results:
    input:
        expand("data/scores/{model}/{method}.json", model=EIGENCAM_MODELS, method=EIGENCAM_METHODS),
    output:
        "reports/eigencam/results.json",
    params:
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m shared.pipeline.results --paper eigencam --scores {input} --out {output} --config-json {params.cfg}"


rule eigencam_table:
    input:
        "reports/eigencam/results.json",
    output:
        in_report("reports/eigencam/localisation.md"),
    params:
        metrics="wsol_fixed,pointing_game,energy_pointing_game",
        methods=",".join(EIGENCAM_METHODS),
    shell:
        "python -m shared.pipeline.table --results {input} --metrics {params.metrics} "
        "--methods {params.methods} --out {output}"


rule eigencam_adversarial:
    input:
        models=expand("data/models/{model}.safetensors", model=[m for m in EIGENCAM_MODELS if m != "vit"]),
        data="data/datasets/shapes",
    output:
        table=in_report("reports/eigencam/adversarial.md"),
        records="reports/eigencam/adversarial.json",
        figure=in_report("reports/eigencam/adversarial.png"),
    params:
        cfg=lambda wc: results_cfg(),
        methods="eigencam,gradcam,gradcampp",
    shell:
        "python -m papers.eigencam.figures adversarial --models {input.models} --dataset {input.data} "
        "--methods {params.methods} --out {output.table} --records {output.records} --figure {output.figure} "
        "--config-json {params.cfg}"


rule eigencam_claims:
    input:
        "reports/eigencam/results.json",
        "reports/eigencam/adversarial.json",
    output:
        in_report("reports/eigencam/claims.md"),
    shell:
        "python -m shared.pipeline.claims --paper eigencam --results {input} --out {output}"


rule eigencam:
    input:
        PAPER_TARGETS["eigencam"],
