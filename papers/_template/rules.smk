# Template rules: a paper adds its final outputs to PAPER_TARGETS and a target rule named
# after its id. Maps and scores come from the shared rules (rules/explain.smk):
#   data/maps/{dataset}/{model}/{method}.safetensors, data/scores/{dataset}/{model}/{method}.json
# A paper writes only under data/<id>/ and reports/<id>/. Wrap each figure or table output that
# paper.yaml declares in in_report("reports/<id>/...") so the HTML report shows it with its caption.
PAPER_TARGETS["template"] = ["reports/template/results.json"]


rule template:
    input:
        PAPER_TARGETS["template"],
