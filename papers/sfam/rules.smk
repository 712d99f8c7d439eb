# sfam: the metric-learning models (unseen `parts` classes, cosine and Euclidean) explained with
# SFAM beside Grad-CAM on the similarity (the baseline in every table), SimNet and Zhu et al.'s
# overall activation. Maps and scores come from the shared rules; the retrieval figure from
# papers/dml_explain/figures.py (the three papers share it). Writes only under reports/sfam/.
SFAM_MODELS = [m for m in ("embed_cosine", "embed_euclidean") if m in config["models"]]
SFAM_METHODS = ["sfam", "gradcam_similarity", "simnet", "dml_overall"]

PAPER_TARGETS["sfam"] = [
    "reports/sfam/results.json",
    "reports/sfam/faithfulness.md", "reports/sfam/localisation.md",
    "reports/sfam/claims.md",
    "reports/sfam/retrieval.png",
]


rule sfam_results:
    input:
        expand("data/scores/{model}/{method}.json", model=SFAM_MODELS, method=SFAM_METHODS),
    output:
        "reports/sfam/results.json",
    params:
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m shared.pipeline.results --paper sfam --scores {input} --out {output} --config-json {params.cfg}"


rule sfam_table:
    input:
        "reports/sfam/results.json",
    output:
        in_report("reports/sfam/{table}.md"),
    wildcard_constraints:
        table="faithfulness|localisation",
    params:
        metrics=lambda wc: {"faithfulness": "deletion,insertion", "localisation": "relevance_mass,pointing_game"}[wc.table],
        methods=",".join(SFAM_METHODS),
    shell:
        "python -m shared.pipeline.table --results {input} --metrics {params.metrics} "
        "--methods {params.methods} --out {output}"


rule sfam_claims:
    input:
        "reports/sfam/results.json",
    output:
        in_report("reports/sfam/claims.md"),
    shell:
        "python -m shared.pipeline.claims --paper sfam --results {input} --out {output}"


rule sfam_retrieval:
    input:
        models=expand("data/models/{model}.safetensors", model=SFAM_MODELS),
        data="data/datasets/parts",
    output:
        in_report("reports/sfam/retrieval.png"),
    params:
        methods=",".join(SFAM_METHODS),
        cfg=lambda wc: step_cfg(),
    shell:
        "python -m papers.dml_explain.figures retrieval --models {input.models} --dataset {input.data} "
        "--methods {params.methods} --out {output} --config-json {params.cfg}"


rule sfam:
    input:
        PAPER_TARGETS["sfam"],
