# gradcam: Grad-CAM and Guided Grad-CAM beside every method of the four CAM papers (Grad-CAM++,
# Eigen-CAM, NormGrad) on the shapes classifiers. Maps and scores come from the shared rules
# (only the model × method pairs a method is defined for: models_for); the qualitative,
# class-discriminativeness (benchmark.pairs) and sanity figures from papers/gradcam/figures.py.
# Writes only under reports/gradcam/.
GRADCAM_MODELS = [m for m in ("resnet", "plaincnn", "vit") if m in config["models"]]
GRADCAM_METHODS = ["gradcam", "guided_gradcam", "gradcampp", "eigencam", "normgrad"]


def gradcam_scores():
    return [f"data/scores/{model}/{method}.json" for method in GRADCAM_METHODS for model in models_for(method) if model in GRADCAM_MODELS]


PAPER_TARGETS["gradcam"] = [
    "reports/gradcam/results.json",
    "reports/gradcam/localisation.md",
    "reports/gradcam/pointing.md",
    "reports/gradcam/claims.md",
    "reports/gradcam/qualitative.png",
    "reports/gradcam/class_discriminative.png",
    "reports/gradcam/class_discriminativeness.md",
    "reports/gradcam/sanity.png",
    "reports/gradcam/pairs.json",
    "reports/gradcam/sanity.json",
]


rule gradcam_results:
    input:
        gradcam_scores(),
    output:
        "reports/gradcam/results.json",
    params:
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m shared.pipeline.results --paper gradcam --scores {input} --out {output} --config-json {params.cfg}"


rule gradcam_table:
    input:
        "reports/gradcam/results.json",
    output:
        in_report("reports/gradcam/{table}.md"),
    wildcard_constraints:
        table="localisation|pointing",
    params:
        metrics=lambda wc: {"localisation": "wsol_fixed", "pointing": "pointing_game,energy_pointing_game"}[wc.table],
        methods=",".join(GRADCAM_METHODS),
    shell:
        "python -m shared.pipeline.table --results {input} --metrics {params.metrics} "
        "--methods {params.methods} --out {output}"


rule gradcam_claims:
    input:
        "reports/gradcam/results.json",
        "reports/gradcam/pairs.json",
        "reports/gradcam/sanity.json",
    output:
        in_report("reports/gradcam/claims.md"),
    shell:
        "python -m shared.pipeline.claims --paper gradcam --results {input} --out {output}"


rule gradcam_qualitative:
    input:
        models=expand("data/models/{model}.safetensors", model=GRADCAM_MODELS),
        data="data/datasets/shapes",
    output:
        in_report("reports/gradcam/qualitative.png"),
    params:
        cfg=lambda wc: step_cfg(),
    shell:
        "python -m papers.gradcam.figures qualitative --models {input.models} --dataset {input.data} "
        "--out {output} --config-json {params.cfg}"


rule gradcam_class_discriminative:
    input:
        models=expand("data/models/{model}.safetensors", model=GRADCAM_MODELS),
        data=f"data/datasets/{config['benchmark']['pairs']}",
    output:
        figure=in_report("reports/gradcam/class_discriminative.png"),
        table=in_report("reports/gradcam/class_discriminativeness.md"),
        records="reports/gradcam/pairs.json",
    params:
        cfg=lambda wc: results_cfg(),
        methods="gradcam,guided_gradcam,gradcampp,eigencam,normgrad",
    shell:
        "python -m papers.gradcam.figures pairs --models {input.models} --dataset {input.data} --methods {params.methods} "
        "--out {output.figure} --table {output.table} --records {output.records} --config-json {params.cfg}"


rule gradcam_sanity:
    input:
        model="data/models/resnet.safetensors",
        data="data/datasets/shapes",
    output:
        figure=in_report("reports/gradcam/sanity.png"),
        records="reports/gradcam/sanity.json",
    params:
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m papers.gradcam.figures sanity --models {input.model} --dataset {input.data} "
        "--out {output.figure} --records {output.records} --config-json {params.cfg}"


rule gradcam:
    input:
        PAPER_TARGETS["gradcam"],
