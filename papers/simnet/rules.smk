# simnet: the metric-learning models (unseen `parts` classes, cosine and Euclidean) explained with
# SimNet maps beside Grad-CAM on the similarity (the baseline in every table), SFAM and Zhu et al.'s
# overall activation. Maps and scores come from the shared rules; the retrieval figure from
# papers/dml_explain/figures.py (the three papers share it). Writes only under reports/simnet/.
SIMNET_MODELS = [m for m in ("embed_cosine", "embed_euclidean") if m in config["models"]]
SIMNET_METHODS = ["simnet", "gradcam_similarity", "sfam", "dml_overall"]

PAPER_TARGETS["simnet"] = [
    "reports/simnet/results.json",
    "reports/simnet/faithfulness.md",
    "reports/simnet/claims.md",
    "reports/simnet/retrieval.png",
]


rule simnet_results:
    input:
        expand("data/scores/{model}/{method}.json", model=SIMNET_MODELS, method=SIMNET_METHODS),
    output:
        "reports/simnet/results.json",
    params:
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m shared.pipeline.results --paper simnet --scores {input} --out {output} --config-json {params.cfg}"


rule simnet_table:
    input:
        "reports/simnet/results.json",
    output:
        in_report("reports/simnet/{table}.md"),
    wildcard_constraints:
        table="faithfulness",
    params:
        metrics="deletion,insertion,relevance_mass,pointing_game",
        methods=",".join(SIMNET_METHODS),
    shell:
        "python -m shared.pipeline.table --results {input} --metrics {params.metrics} "
        "--methods {params.methods} --out {output}"


rule simnet_claims:
    input:
        "reports/simnet/results.json",
    output:
        in_report("reports/simnet/claims.md"),
    shell:
        "python -m shared.pipeline.claims --paper simnet --results {input} --out {output}"


rule simnet_retrieval:
    input:
        models=expand("data/models/{model}.safetensors", model=SIMNET_MODELS),
        data="data/datasets/parts",
    output:
        in_report("reports/simnet/retrieval.png"),
    params:
        methods=",".join(SIMNET_METHODS),
        cfg=lambda wc: step_cfg(),
    shell:
        "python -m papers.dml_explain.figures retrieval --models {input.models} --dataset {input.data} "
        "--methods {params.methods} --out {output} --config-json {params.cfg}"


rule simnet:
    input:
        PAPER_TARGETS["simnet"],
