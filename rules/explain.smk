# Shared rules: explain a model's evaluation subset with a registered method, then score it.
# Every paper requests data/maps/{model}/{method}.safetensors and data/scores/{model}/{method}.json;
# a map is computed once per (model, method) and shared by every paper that shows it.
from shared.paper_plan import models_for as _models_for


wildcard_constraints:
    model="|".join(sorted(config["models"])) or "no-models",
    method="[a-z][a-z0-9_]*",


def models_for(method: str) -> list[str]:
    """The configured models a method applies to (its @register_method kinds, tasks, archs)."""
    return _models_for(method, config)


def step_cfg() -> str:
    # methods: each method's constructor arguments in this profile (shared.paper_plan.method_kwargs)
    return cfg_json({**runtime_cfg(), "eval": config["eval"], "methods": config.get("methods") or {}})


rule explain_maps:
    input:
        data=lambda wc: model_dataset_dir(wc.model),
        model="data/models/{model}.safetensors",
        gate="data/models/{model}.gate.json",
    output:
        "data/maps/{model}/{method}.safetensors",
    params:
        cfg=lambda wc: step_cfg(),
    log:
        "logs/explain/{model}/{method}.log",
    benchmark:
        bench("explain_maps/{model}/{method}")
    resources:
        **budget("explain_maps:{model}"),
    shell:
        "python -m shared.pipeline.explain --method {wildcards.method} --model {input.model} "
        "--dataset {input.data} --out {output} --config-json {params.cfg} > {log} 2>&1"


rule score_maps:
    input:
        maps="data/maps/{model}/{method}.safetensors",
        data=lambda wc: model_dataset_dir(wc.model),
        model="data/models/{model}.safetensors",
    output:
        "data/scores/{model}/{method}.json",
    params:
        cfg=lambda wc: step_cfg(),
    log:
        "logs/score/{model}/{method}.log",
    benchmark:
        bench("score_maps/{model}/{method}")
    resources:
        **budget("score_maps:{model}"),
    shell:
        "python -m shared.pipeline.score --maps {input.maps} --model {input.model} "
        "--dataset {input.data} --out {output} --config-json {params.cfg} > {log} 2>&1"
