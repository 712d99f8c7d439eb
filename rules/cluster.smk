# Where jobs run when the workflow runs on a cluster (profiles/slurm; README "Running on a
# cluster"). A local run (snakemake -c2) runs every job here anyway: nothing below changes it.
#
# Only the rules that use a GPU are cluster jobs (CLUSTER_RULES; profiles/slurm requests their
# GPU). Every other rule is a local rule, run by Snakemake on the login node:
#  - it writes reports/, which is committed. Snakemake deletes the existing outputs of a job that
#    fails, a job whose submission is refused included, so a job that writes a committed file
#    must never be a cluster job. (--keep-incomplete would keep them, but it records the kept
#    files as made by the failed job: a rerun then skips them, stale.) Cluster jobs write only
#    data/, which a rerun makes again;
#  - it is light (seconds on the tiny and default configs), and a cluster job costs 10-12 s
#    more than a local one (submission, Snakemake starting twice on the node, polling);
#  - it downloads (fetch_dataset, prefetch): compute nodes often have no internet.
# At paper scale, papers' steps (<paper>_<step>, e.g. gradcam's cascading randomisation) re-explain
# eval.n_images images on the login node's CPU: minutes, not seconds.

CLUSTER_RULES = {"train_model", "explain_maps", "score_maps"} | {f"explain_{m}" for m in config["models"]}
"""The rules that use a GPU (training, rules/batch.smk's per-model explain jobs, their per-(model,
method) fallbacks): the only cluster jobs."""


rule prefetch:
    """Everything a run downloads, fetched on the login node before a cluster run: the real
    datasets the config uses, and the pretrained weights of its models into timm's cache
    (~/.cache/huggingface; it must be on the filesystem the compute nodes share)."""
    input:
        [f"data/datasets/{name}" for name in used_datasets() if name in REAL_DATASETS],
    params:
        archs=" ".join(sorted({str(m["arch"]) for m in config["models"].values() if m.get("pretrained")})),
    log:
        "logs/prefetch.log",
    benchmark:
        bench("prefetch")
    resources:
        **budget("prefetch"),
    shell:
        "(for arch in {params.archs}; do "
        "python -c 'import sys, timm; timm.create_model(sys.argv[1], pretrained=True); print(\"cached\", sys.argv[1])' $arch "
        "|| exit 1; done) > {log} 2>&1"


workflow.localrules(*(r.name for r in workflow.rules if r.name not in CLUSTER_RULES))
