# daam: the zoo ViT explained with DAAM accumulated up to every block, beside Grad-CAM
# (papers/gradcam) and attention rollout. Maps and scores come from the shared rules; the flow
# figures from papers/daam/figures.py. Writes only under reports/daam/.
# daam_ssl is not scored through the shared pipeline yet: it needs the training split for its
# k-NN memory bank (build_explainer(..., dataset=...)); its flow figure builds the bank itself.
DAAM_MODELS = [m for m in ("vit",) if m in config["models"]]
DAAM_METHODS = ["daam_b1", "daam_b2", "daam_b3", "daam", "gradcam", "attention_rollout"]

PAPER_TARGETS["daam"] = [
    "reports/daam/results.json",
    "reports/daam/per_block.md",
    "reports/daam/claims.md",
    "reports/daam/flow.png",
    "reports/daam/flow_ssl.png",
]


rule daam_results:
    input:
        expand("data/scores/{model}/{method}.json", model=DAAM_MODELS, method=DAAM_METHODS),
    output:
        "reports/daam/results.json",
    params:
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m shared.pipeline.results --paper daam --scores {input} --out {output} --config-json {params.cfg}"


rule daam_table:
    input:
        "reports/daam/results.json",
    output:
        in_report("reports/daam/per_block.md"),
    params:
        metrics="energy_pointing_game,pointing_game,relevance_mass,deletion,insertion",
        methods=",".join(DAAM_METHODS),
    shell:
        "python -m shared.pipeline.table --results {input} --metrics {params.metrics} "
        "--methods {params.methods} --out {output}"


rule daam_claims:
    input:
        "reports/daam/results.json",
    output:
        in_report("reports/daam/claims.md"),
    shell:
        "python -m shared.pipeline.claims --paper daam --results {input} --out {output}"


rule daam_figure:
    input:
        model="data/models/vit.safetensors",
        data=lambda wc: model_dataset_dir("vit"),
    output:
        in_report("reports/daam/{kind}.png"),
    wildcard_constraints:
        kind="flow|flow_ssl",
    params:
        cfg=lambda wc: step_cfg(),
    shell:
        "python -m papers.daam.figures {wildcards.kind} --model {input.model} --dataset {input.data} "
        "--out {output} --config-json {params.cfg}"


rule daam:
    input:
        PAPER_TARGETS["daam"],
