# Models: train each configured model once, gate it on its test metric, report them all.
# Included by the top-level Snakefile, which provides `config`; uses cfg_json / runtime_cfg /
# SHARED_TARGETS from rules/common.smk.
import re

MODEL_NAMES = sorted(config.get("models", {}))


def _model_names_regex():
    # exactly the configured names; a regex that matches nothing when there are none
    return "|".join(re.escape(m) for m in MODEL_NAMES) if MODEL_NAMES else "(?!x)x"


def model_train_cfg(wildcards):
    """The JSON handed to shared.models.train: run-time settings + the model's config."""
    return cfg_json({**runtime_cfg(), "model": config["models"][wildcards.model]})


rule train_model:
    input:
        data=lambda wc: model_dataset_dir(wc.model),
    output:
        weights="data/models/{model}.safetensors",
        sidecar="data/models/{model}.json",
    wildcard_constraints:
        model=_model_names_regex(),
    params:
        cfg=model_train_cfg,
    log:
        "logs/models/{model}.train.log",
    benchmark:
        bench("train_model/{model}")
    resources:
        **budget("train_model:{model}"),
    # the step sets its torch threads from the config (pinned numbers need a fixed count);
    # telling Snakemake keeps it from running other jobs on those cores
    threads: config.get("threads", 1)
    # Longest training first (epochs as the proxy): the ViT's training heads the critical path
    # (train -> explain -> figures); started last, it left one core idle at the end of a -c2 run.
    priority: lambda wc: 100 + int(config["models"][wc.model]["epochs"])
    shell:
        "python -m shared.models.train --name {wildcards.model} --data {input.data} "
        "--out {output.weights} --config-json {params.cfg} > {log} 2>&1"


rule gate_model:
    input:
        weights="data/models/{model}.safetensors",
        sidecar="data/models/{model}.json",
    output:
        "data/models/{model}.gate.json",
    wildcard_constraints:
        model=_model_names_regex(),
    log:
        "logs/models/{model}.gate.log",
    # a gate unblocks its model's explain job (the longest job after training): as urgent as the
    # training. At priority 0 the paper-scale rehearsal's VGG-16 gate waited 3 min behind steps.
    priority: lambda wc: 100 + int(config["models"][wc.model]["epochs"])
    benchmark:
        bench("gate_model/{model}")
    resources:
        **budget("gate_model:{model}"),
    shell:
        "python -m shared.models.gate --sidecar {input.sidecar} --out {output} > {log} 2>&1 "
        "|| (cat {log} >&2; exit 1)"


rule models_report:
    input:
        sidecars=expand("data/models/{model}.json", model=MODEL_NAMES),
        weights=expand("data/models/{model}.safetensors", model=MODEL_NAMES),
    output:
        "reports/models.json",
    params:
        rehearsal=(" --rehearsal " + shlex.quote(config["rehearsal"])) if config.get("rehearsal") else "",
    log:
        "logs/models/report.log",
    benchmark:
        bench("models_report")
    resources:
        **budget("models_report"),
    shell:
        "python -m shared.models.report --out {output} {input.sidecars}{params.rehearsal} > {log} 2>&1"


SHARED_TARGETS.append("reports/models.json")
