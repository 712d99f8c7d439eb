# Zhu et al., Visual Explanation for Deep Metric Learning: overall activation vs Grad-CAM on the
# similarity, on the metric-learning models (unseen `parts` classes), cosine and Euclidean.
# Maps and scores come from the shared rules (rules/explain.smk); this file aggregates them and
# draws the retrieval and point-specific figures. Writes only under reports/dml_explain/.
DML_MODELS = [m for m in ("embed_cosine", "embed_euclidean") if m in config["models"]]
DML_METHODS = ["gradcam_similarity", "dml_overall", "simnet", "sfam"]  # every table has the baseline

PAPER_TARGETS["dml_explain"] = [
    "reports/dml_explain/results.json",
    "reports/dml_explain/faithfulness.md",
    "reports/dml_explain/localisation.md",
    "reports/dml_explain/claims.md",
    "reports/dml_explain/retrieval.png",
    "reports/dml_explain/point_specific.png",
    *[f"reports/dml_explain/agreement_{m}.md" for m in DML_MODELS],
]


rule dml_explain_results:
    input:
        expand("data/scores/{model}/{method}.json", model=DML_MODELS, method=DML_METHODS),
    output:
        "reports/dml_explain/results.json",
    params:
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m shared.pipeline.results --paper dml_explain --scores {input} --out {output} --config-json {params.cfg}"


rule dml_explain_table:
    input:
        "reports/dml_explain/results.json",
    output:
        in_report("reports/dml_explain/{table}.md"),
    wildcard_constraints:
        table="faithfulness|localisation",
    params:
        metrics=lambda wc: {"faithfulness": "deletion,insertion", "localisation": "relevance_mass,pointing_game"}[wc.table],
        methods=",".join(DML_METHODS),
    shell:
        "python -m shared.pipeline.table --results {input} --metrics {params.metrics} "
        "--methods {params.methods} --out {output}"


rule dml_explain_claims:
    input:
        "reports/dml_explain/results.json",
    output:
        in_report("reports/dml_explain/claims.md"),
    shell:
        "python -m shared.pipeline.claims --paper dml_explain --results {input} --out {output}"


rule dml_explain_agreement:
    input:
        scores=expand("data/scores/{{model}}/{method}.json", method=DML_METHODS),
        maps=expand("data/maps/{{model}}/{method}.safetensors", method=DML_METHODS),
    output:
        in_report("reports/dml_explain/agreement_{model}.md"),
    params:
        methods=" ".join(DML_METHODS),
        cfg=lambda wc: results_cfg(),
    shell:
        "python -m shared.pipeline.diff --model {wildcards.model} --methods {params.methods} "
        "--scores {input.scores} --maps {input.maps} --out {output} --config-json {params.cfg}"


rule dml_explain_figure:
    input:
        models=expand("data/models/{model}.safetensors", model=DML_MODELS),
        data="data/datasets/parts",
    output:
        in_report("reports/dml_explain/{figure}.png"),
    wildcard_constraints:
        figure="retrieval|point_specific",
    params:
        kind=lambda wc: {"retrieval": "retrieval", "point_specific": "point"}[wc.figure],
        methods=",".join(DML_METHODS),
        cfg=lambda wc: step_cfg(),
    shell:
        "python -m papers.dml_explain.figures {params.kind} --models {input.models} --dataset {input.data} "
        "--methods {params.methods} --out {output} --config-json {params.cfg}"


rule dml_explain:
    input:
        PAPER_TARGETS["dml_explain"],
