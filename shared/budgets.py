"""What each workflow job needs (memory, run time, GPU), read from the config's ``resources``.

Every rule hands Snakemake ``resources: **budget(job)`` (rules/common.smk) and writes a
``benchmark:`` file (``logs/benchmarks/<job>.tsv``: wall time and peak memory, measured by
Snakemake). A job's key is its rule name, with its wildcards after colons
(``train_model:embed_cosine``, ``fetch_dataset:cub``); the config's ``resources`` section maps
keys to ``{mem_mb, runtime, gpu, disk_mb}`` (runtime in minutes, as Snakemake and its SLURM
executor take it). A key the config does not name gets :data:`JOB_DEFAULT`.

config/paper-scale.yaml's section is written by :mod:`shared.budget_report` from a rehearsal's
benchmark files, scaled to the full datasets (README, "Paper scale").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JOB_DEFAULT: dict[str, int] = {"mem_mb": 4000, "runtime": 60}
"""A job the config's ``resources`` does not name: the SLURM profile's default job."""


def benchmark_file(job: str) -> str:
    """A job's Snakemake benchmark file (wall time, peak memory): ``logs/benchmarks/<job>.tsv``."""
    return f"logs/benchmarks/{job}.tsv"


def job_resources(config: Mapping[str, Any], key: str) -> dict[str, int]:
    """The resources of job ``key`` (``rule`` or ``rule:wildcard``): the config's, else the default."""
    configured = (config.get("resources") or {}).get(key) or {}
    return {**JOB_DEFAULT, **{k: int(v) for k, v in configured.items()}}


def budget(config: Mapping[str, Any], pattern: str, names: tuple[str, ...] = ("mem_mb", "runtime", "gpu", "disk_mb")) -> dict[str, Any]:
    """Snakemake ``resources`` for a rule whose job keys follow ``pattern``.

    ``pattern`` may hold wildcards (``train_model:{model}``): each resource is then a function of
    the job's wildcards. ``gpu`` and ``disk_mb`` are only given where some job of the config sets
    them (a local run must not ask for a GPU it was never told of).
    """
    configured = config.get("resources") or {}
    prefix = pattern.split(":", 1)[0]
    used = {n for key, res in configured.items() if key.split(":", 1)[0] == prefix for n in (res or {})}
    out: dict[str, Any] = {}
    for name in names:
        if name not in JOB_DEFAULT and name not in used:
            continue
        if "{" in pattern:
            out[name] = lambda wc, _n=name: job_resources(config, pattern.format(**dict(wc.items()))).get(_n, 0)
        else:
            out[name] = job_resources(config, pattern).get(name, 0)
    return out
