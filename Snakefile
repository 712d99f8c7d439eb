# saliency-repro: one workflow for every paper.
#   snakemake -c2                         the default config (synthetic benchmark, CPU)
#   snakemake -c2 --configfile config/tiny.yaml        the whole DAG in ~5 min (2 cores)
#   snakemake -c2 gradcam                 one paper (its figures, tables, claims)
# The default profile (profiles/default) is picked up automatically.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# Jobs run `python -m ...`: make that the interpreter running Snakemake (the project's venv),
# however snakemake was started (uv run, .venv/bin/snakemake, an activated venv).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


configfile: "config/default.yaml"


# An unknown or ill-typed key stops the run here, with a one- or two-line message that names it
# (shared.config); Snakemake's own validation then fills in the schema's defaults.
from shared.config import ConfigError, validate_config

try:
    validate_config(config, "config")
except ConfigError as _exc:
    raise ValueError(str(_exc)) from None
validate(config, "config/schema.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/explain.smk"


# Every paper's results, tables, steps, claims and target, generated from its paper.yaml.
include: "rules/papers.smk"


# A paper's own rules, where it has a step no declaration can say (optional; papers/_template
# and other _dirs are not papers).
for _rules in sorted(Path("papers").glob("*/rules.smk")):
    if not _rules.parent.name.startswith("_"):

        include: str(_rules)


include: "rules/cross.smk"
include: "rules/batch.smk"
include: "rules/cluster.smk"


# The committed reports/ are the default config's pins: a run with another config that would
# rewrite them stops before its first job (shared.pins; REPRO_OVERWRITE_PINS=1 when meant).
onstart:
    from shared.pins import overwrite_problem

    _writes_reports = any(str(f).startswith("reports/") for _job in workflow.dag.needrun_jobs() for f in _job.output)
    _problem = overwrite_problem(config, Path(workflow.basedir), _writes_reports)
    if _problem:
        sys.exit(_problem)


rule all:
    default_target: True
    input:
        lambda wildcards: all_targets(),
