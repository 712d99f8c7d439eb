# normgrad: NormGrad (1×1, 3×3, combined, meta) and Grad-CAM at every ResNet stage; class
# sensitivity with and without the meta step (papers/normgrad/figures.py class_sensitivity) and
# the layer figure. Maps and scores come from the shared rules. Writes only under reports/normgrad/.
NORMGRAD_MODELS = [m for m in ("resnet", "plaincnn", "vit") if m in config["models"]]
NORMGRAD_METHODS = ["normgrad", "normgrad_3x3", "normgrad_combined", "normgrad_meta", "gradcam", "gradcam_meta"]
NORMGRAD_STAGE_METHODS = [f"{m}_stage{k}" for m in ("normgrad", "gradcam") for k in (1, 2, 3, 4)]

PAPER_TARGETS["normgrad"] = [
    "reports/normgrad/results.json",
    "reports/normgrad/localisation.md",
    "reports/normgrad/class_sensitivity.md",
    "reports/normgrad/claims.md",
    "reports/normgrad/layers.png",
    "reports/normgrad/class_sensitivity.json",
]


rule normgrad_results:
    input:
        expand("data/scores/{model}/{method}.json", model=NORMGRAD_MODELS, method=NORMGRAD_METHODS),
        expand("data/scores/{model}/{method}.json", model=[m for m in ("resnet",) if m in config["models"]], method=NORMGRAD_STAGE_METHODS),
    output:
        "reports/normgrad/results.json",
    params:
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m shared.pipeline.results --paper normgrad --scores {input} --out {output} --config-json {params.cfg}"


rule normgrad_table:
    input:
        "reports/normgrad/results.json",
    output:
        in_report("reports/normgrad/localisation.md"),
    params:
        metrics="pointing_game,energy_pointing_game,wsol_fixed",
        methods=",".join(NORMGRAD_METHODS + NORMGRAD_STAGE_METHODS),
    shell:
        "python -m shared.pipeline.table --results {input} --metrics {params.metrics} "
        "--methods {params.methods} --out {output}"


rule normgrad_class_sensitivity:
    input:
        models=expand("data/models/{model}.safetensors", model=NORMGRAD_MODELS),
        data="data/datasets/shapes",
    output:
        table=in_report("reports/normgrad/class_sensitivity.md"),
        records="reports/normgrad/class_sensitivity.json",
    params:
        cfg=lambda wc: results_cfg(),
        methods="normgrad,normgrad_meta,gradcam,gradcam_meta",
    shell:
        "python -m papers.normgrad.figures class_sensitivity --models {input.models} --dataset {input.data} "
        "--methods {params.methods} --out {output.table} --records {output.records} --config-json {params.cfg}"


rule normgrad_claims:
    input:
        "reports/normgrad/results.json",
        "reports/normgrad/class_sensitivity.json",
    output:
        in_report("reports/normgrad/claims.md"),
    shell:
        "python -m shared.pipeline.claims --paper normgrad --results {input} --out {output}"


rule normgrad_layers:
    input:
        model="data/models/resnet.safetensors",
        data="data/datasets/shapes",
    output:
        in_report("reports/normgrad/layers.png"),
    params:
        cfg=lambda wc: step_cfg(),
    shell:
        "python -m papers.normgrad.figures layers --models {input.model} --dataset {input.data} "
        "--out {output} --config-json {params.cfg}"


rule normgrad:
    input:
        PAPER_TARGETS["normgrad"],
