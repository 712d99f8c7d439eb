# naflow: the plain CNN (plaincnn = vgg_small) explained with NAFlow at every conv block, beside
# Grad-CAM at the same blocks. Maps and scores come from the shared rules; the flow figure from
# papers/naflow/figures.py. Writes only under reports/naflow/.
# The similarity variant needs a plain embedding network (no skips); the zoo's embed_* models
# are ResNets, so it runs here only if a plain embedding model (e.g. `embed_plain`) is configured.
NAFLOW_BLOCKS = [1, 2, 3, 4, 5]
NAFLOW_METHODS = [f"naflow_b{b}" for b in NAFLOW_BLOCKS] + [f"gradcam_b{b}" for b in NAFLOW_BLOCKS]
NAFLOW_MODELS = [m for m in ("plaincnn", "embed_plain") if m in config["models"]]

PAPER_TARGETS["naflow"] = [
    "reports/naflow/results.json",
    "reports/naflow/per_layer.md",
    "reports/naflow/claims.md",
    "reports/naflow/flow.png",
]


rule naflow_results:
    input:
        expand("data/scores/{model}/{method}.json", model=NAFLOW_MODELS, method=NAFLOW_METHODS),
    output:
        "reports/naflow/results.json",
    params:
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m shared.pipeline.results --paper naflow --scores {input} --out {output} --config-json {params.cfg}"


rule naflow_table:
    input:
        "reports/naflow/results.json",
    output:
        in_report("reports/naflow/per_layer.md"),
    params:
        metrics="energy_pointing_game,pointing_game,relevance_mass,deletion,insertion",
        methods=",".join(NAFLOW_METHODS),
    shell:
        "python -m shared.pipeline.table --results {input} --metrics {params.metrics} "
        "--methods {params.methods} --out {output}"


rule naflow_claims:
    input:
        "reports/naflow/results.json",
    output:
        in_report("reports/naflow/claims.md"),
    shell:
        "python -m shared.pipeline.claims --paper naflow --results {input} --out {output}"


rule naflow_figure:
    input:
        model="data/models/plaincnn.safetensors",
        data=lambda wc: model_dataset_dir("plaincnn"),
    output:
        in_report("reports/naflow/flow.png"),
    params:
        cfg=lambda wc: step_cfg(),
    shell:
        "python -m papers.naflow.figures flow --model {input.model} --dataset {input.data} "
        "--out {output} --config-json {params.cfg}"


rule naflow:
    input:
        PAPER_TARGETS["naflow"],
