# Every paper's rules, generated from its paper.yaml (shared.paper_plan): results (with the paper's
# results tables and its claims), tables, steps (papers/<id>/figures.py) and the paper's target rule `<id>`. A paper's own
# papers/<id>/rules.smk is optional, for a step no declaration can say.
from shared.paper_plan import plan_papers

PAPER_PLANS = plan_papers(config)
for _pid, _plan in PAPER_PLANS.items():
    PAPER_TARGETS[_pid] = _plan.targets()


def _rule_of(paper: str, name: str) -> str:
    PAPER_RULES.setdefault(paper, set()).add(name)
    return name


for _pid, _plan in sorted(PAPER_PLANS.items()):

    # the results-kind tables are written by the results job itself (they read only its records),
    # and so are the claims (claims.md, claims.json beside it): they read the same scores files and
    # the paper's step records, and a job of their own cost a process (torch, the config) per paper
    _results_tables = [t for t in _plan.tables if t["kind"] == "results"]

    rule:
        name:
            _rule_of(_pid, f"{_pid}_results")
        input:
            scores=_plan.scores,
            records=_plan.records,
        output:
            results=_plan.results,
            tables=[in_report(t["file"]) for t in _results_tables],
            claims=in_report(_plan.claims),
        params:
            cfg=lambda wc: results_cfg(),
            paper=_pid,
            tables=cfg_json([{"file": t["file"], "metrics": t["metrics"], "methods": t["methods"]} for t in _results_tables]),
            benchmark=lambda wc: cfg_json(config["benchmark"]),
            models=lambda wc: cfg_json({role: m["arch"] for role, m in config["models"].items()}),
            rehearsal=(" --rehearsal " + shlex.quote(config["rehearsal"])) if config.get("rehearsal") else "",
        log:
            f"logs/papers/{_pid}/results.log",
        benchmark:
            bench(f"{_pid}_results")
        resources:
            **budget(f"{_pid}_results"),
        shell:
            "python -m shared.pipeline.results --paper {params.paper} --scores {input.scores} --out {output.results} "
            "--config-json {params.cfg} --tables-json {params.tables} --claims-out {output.claims} --records {input.records} "
            "--benchmark-json {params.benchmark} --models-json {params.models}{params.rehearsal} > {log} 2>&1"

    for _table in _plan.tables:
        if _table["kind"] != "results":

            rule:
                name:
                    _rule_of(_pid, f"{_pid}_table_{_table['id']}")
                input:
                    scores=[f"data/scores/{_table['model']}/{m}.json" for m in _table["methods"]],
                    maps=[f"data/maps/{_table['model']}/{m}.safetensors" for m in _table["methods"]],
                output:
                    in_report(_table["file"]),
                params:
                    model=_table["model"],
                    methods=" ".join(_table["methods"]),
                    cfg=lambda wc: results_cfg(),
                log:
                    f"logs/papers/{_pid}/table_{_table['id']}.log",
                benchmark:
                    bench(f"{_pid}_table_{_table['id']}")
                resources:
                    **budget(f"{_pid}_table_{_table['id']}"),
                shell:
                    "python -m shared.pipeline.diff --model {params.model} --methods {params.methods} "
                    "--scores {input.scores} --maps {input.maps} --out {output} --config-json {params.cfg} > {log} 2>&1"

    for _step in _plan.steps:

        rule:
            name:
                _rule_of(_pid, f"{_pid}_{_step.id}")
            input:
                models=_step.checkpoints,
                datasets=sorted(set(_step.datasets)),
                maps=_step.maps,
            output:
                **{k: (in_report(v) if not v.endswith(".json") else v) for k, v in _step.outputs.items()},
            params:
                module=_step.module,
                step=_step.id,
                datasets=" ".join(_step.datasets),
                methods=" ".join(_step.methods),
                outputs=" ".join(f"{k}={v}" for k, v in _step.outputs.items()),
                cfg=lambda wc, _pid=_pid: paper_step_cfg(_pid),
            log:
                f"logs/papers/{_pid}/{_step.id}.log",
            benchmark:
                bench(f"{_pid}_{_step.id}")
            resources:
                **budget(f"{_pid}_{_step.id}"),
            shell:
                "python -m {params.module} {params.step} --models {input.models} --datasets {params.datasets} "
                "--methods {params.methods} --maps-dir data/maps --maps {input.maps} --out {params.outputs} "
                "--config-json {params.cfg} > {log} 2>&1"

    rule:
        name:
            _rule_of(_pid, _pid)
        input:
            PAPER_TARGETS[_pid],
