# Shared rules: explain a model's evaluation subset with a registered method, then score it.
# Every paper requests data/maps/{model}/{method}.safetensors and data/scores/{model}/{method}.json;
# a map is computed once per (model, method) and shared by every paper that shows it.
from shared.registry_meta import method_table


METHODS = method_table()
"""method name -> {"paper", "kinds", "tasks"} from every papers/*/paper.yaml"""


wildcard_constraints:
    model="|".join(sorted(config["models"])) or "no-models",
    method="[a-z][a-z0-9_]*",


def model_dataset_dir(model: str) -> str:
    return f"data/datasets/{config['models'][model]['dataset']}"


def model_kind(model: str) -> str:
    """cnn or vit, from the architecture name (timm's ViT families are named so)."""
    arch = config["models"][model]["arch"].lower()
    return "vit" if ("vit" in arch or "deit" in arch) else "cnn"


def applies(method: str, model: str) -> bool:
    """Whether ``method`` is defined for ``model`` (its paper.yaml kinds and tasks)."""
    spec = METHODS[method]
    model_cfg = config["models"][model]
    if spec["archs"] is not None and model_cfg["arch"] not in spec["archs"]:
        return False
    return model_kind(model) in spec["kinds"] and model_cfg["task"] in spec["tasks"]


def models_for(method: str, task: str | None = None) -> list[str]:
    """The configured models a method applies to (optionally of one task)."""
    return [
        m for m in sorted(config["models"])
        if applies(method, m) and (task is None or config["models"][m]["task"] == task)
    ]


def step_cfg() -> str:
    return cfg_json({**runtime_cfg(), "eval": config["eval"]})


rule explain_maps:
    input:
        data=lambda wc: model_dataset_dir(wc.model),
        model="data/models/{model}.safetensors",
        gate="data/models/{model}.gate.json",
    output:
        "data/maps/{model}/{method}.safetensors",
    params:
        cfg=lambda wc: step_cfg(),
    shell:
        "python -m shared.pipeline.explain --method {wildcards.method} --model {input.model} "
        "--dataset {input.data} --out {output} --config-json {params.cfg}"


rule score_maps:
    input:
        maps="data/maps/{model}/{method}.safetensors",
        data=lambda wc: model_dataset_dir(wc.model),
        model="data/models/{model}.safetensors",
    output:
        "data/scores/{model}/{method}.json",
    params:
        cfg=lambda wc: step_cfg(),
    shell:
        "python -m shared.pipeline.score --maps {input.maps} --model {input.model} "
        "--dataset {input.data} --out {output} --config-json {params.cfg}"
