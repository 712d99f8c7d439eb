# Datasets: synthetic benchmark (generated) and real datasets (fetched), plus a sample figure
# per dataset. Included by the top-level Snakefile, which provides `config`.
import json

from shared.budgets import benchmark_file as bench
from shared.budgets import budget as _budget


def budget(pattern):
    """Snakemake resources (mem_mb, runtime, gpu) of the jobs named by ``pattern``: the config's
    ``resources`` (shared.budgets); every rules file uses it. Defined here, the first rules file
    the Snakefile includes after common.smk, so that this file also runs on its own (tests/data)."""
    return _budget(config, pattern)


SYNTHETIC_DATASETS = ("shapes", "shapes_pair", "parts")
REAL_DATASETS = ("imagenette", "cub", "voc2007")


def dataset_config(name):
    """The JSON handed to a dataset step: {"image_size": ..., **config["datasets"][name]}.

    shapes_pair also gets shapes' n_classes, so pair images only hold classes the shapes
    classifiers know.
    """
    datasets = config["datasets"]
    if name not in datasets:
        raise ValueError(f"dataset {name!r} is not defined in the config's datasets section")
    cfg = {"image_size": datasets["image_size"], **datasets[name]}
    if name == "shapes_pair" and "shapes" in datasets:
        cfg.setdefault("n_classes", datasets["shapes"]["n_classes"])
    return json.dumps(cfg, sort_keys=True)


def defined_datasets(kinds=SYNTHETIC_DATASETS + REAL_DATASETS):
    """Dataset names that the config defines (only those may be requested)."""
    return [name for name in kinds if name in config.get("datasets", {})]


def _one_of(names):
    # A regex matching exactly these names; one that matches nothing when there are none.
    return "|".join(names) if names else "(?!x)x"


def used_datasets():
    """The datasets this config uses: the benchmark's roles and every model's dataset. (A config
    merged over the default keeps the default's dataset sections; they are not built unless used.)"""
    if "benchmark" not in config and "models" not in config:
        return defined_datasets()  # the data rules on their own: every dataset the config defines
    used = set(config.get("benchmark", {}).values()) | {m["dataset"] for m in config.get("models", {}).values()}
    return [name for name in defined_datasets() if name in used]


DATASET_FIGURES = expand("reports/data/{name}.png", name=used_datasets())


rule dataset:
    output:
        directory("data/datasets/{name}"),
    wildcard_constraints:
        name=_one_of(defined_datasets(SYNTHETIC_DATASETS)),
    params:
        cfg=lambda wc: dataset_config(wc.name),
    log:
        "logs/data/{name}.log",
    benchmark:
        bench("dataset/{name}")
    resources:
        **budget("dataset:{name}"),
    shell:
        "python -m shared.data.generate --name {wildcards.name} --out {output} "
        "--config-json '{params.cfg}' > {log} 2>&1"


rule fetch_dataset:
    output:
        directory("data/datasets/{name}"),
    wildcard_constraints:
        name=_one_of(defined_datasets(REAL_DATASETS)),
    params:
        cfg=lambda wc: dataset_config(wc.name),
    log:
        "logs/data/{name}.log",
    benchmark:
        bench("fetch_dataset/{name}")
    resources:
        **budget("fetch_dataset:{name}"),
    shell:
        "python -m shared.data.fetch --name {wildcards.name} --out {output} "
        "--config-json '{params.cfg}' --cache-dir data/downloads --no-progress > {log} 2>&1"


rule dataset_figure:
    input:
        "data/datasets/{name}",
    output:
        "reports/data/{name}.png",
    wildcard_constraints:
        name=_one_of(defined_datasets()),
    log:
        "logs/data/{name}.figure.log",
    benchmark:
        bench("dataset_figure/{name}")
    resources:
        **budget("dataset_figure:{name}"),
    shell:
        "python -m shared.data.figure --dataset {input} --out {output} > {log} 2>&1"
