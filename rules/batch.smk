# One job per model explains and scores every (method) the papers and the leaderboard request
# for it (shared.pipeline.batch): loading torch, the model and the images once instead of once per
# method. Included last, it scans the other rules' inputs for data/maps/... and data/scores/...
# files. Anything requested later (e.g. by `repro diff` with another method) falls back to the
# per-(model, method) rules explain_maps and score_maps in rules/explain.smk.
#
# REPRO_BATCH_SCOPE=<paper> (set by `repro verify <paper>`) limits the scan to that paper's
# rules (those rules/papers.smk generated for it, and its optional papers/<id>/rules.smk), so recomputing one paper explains only the methods it shows, not every method of every
# model it touches. It changes which job computes a file, never the file: each method is seeded
# afresh in shared.pipeline.batch.
import os
import re

_REQUEST = re.compile(r"^data/(?:scores|maps)/([^/]+)/([a-z][a-z0-9_]*)\.(?:json|safetensors)$")


def requested_methods() -> dict[str, set[str]]:
    """model -> methods whose maps or scores some rule asks for by name."""
    found: dict[str, set[str]] = {}
    scope = os.environ.get("REPRO_BATCH_SCOPE")
    scope_rules = (Path("papers") / scope / "rules.smk").resolve() if scope else None
    for r in list(workflow.rules):
        if scope and r.name not in PAPER_RULES.get(scope, set()) and Path(r.snakefile).resolve() != scope_rules:
            continue
        for f in r.input:
            m = _REQUEST.match(f) if isinstance(f, str) else None
            if m and m.group(1) in config["models"]:
                found.setdefault(m.group(1), set()).add(m.group(2))
    return found


for _model, _methods in sorted(requested_methods().items()):
    _methods = sorted(_methods)

    rule:
        name:
            f"explain_{_model}"
        input:
            data=model_dataset_dir(_model),
            model=f"data/models/{_model}.safetensors",
            gate=f"data/models/{_model}.gate.json",
        output:
            maps=[f"data/maps/{_model}/{m}.safetensors" for m in _methods],
            scores=[f"data/scores/{_model}/{m}.json" for m in _methods],
        # the model with most methods first: it is the longest job after training
        priority: len(_methods)
        log:
            f"logs/explain/{_model}.log",
        benchmark:
            bench(f"explain_{_model}")
        resources:
            **budget(f"explain_{_model}"),
        params:
            cfg=step_cfg(),
            methods=" ".join(_methods),
            maps_dir=f"data/maps/{_model}",
            scores_dir=f"data/scores/{_model}",
        shell:
            "python -m shared.pipeline.batch --model {input.model} --dataset {input.data} "
            "--methods {params.methods} --maps-dir {params.maps_dir} --scores-dir {params.scores_dir} "
            "--config-json {params.cfg} > {log} 2>&1"

    workflow.ruleorder(f"explain_{_model}", "explain_maps")
    workflow.ruleorder(f"explain_{_model}", "score_maps")
