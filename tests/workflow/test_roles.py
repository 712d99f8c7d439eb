"""Papers name roles, not datasets: the same paper.yaml plans and judges on every config.

Checked on the paper-scale DAG (from Snakemake's own dry-run plan, not its return code): every
model is explained, and every paper step runs, only on the model's own dataset (a step that
declares ``dataset: pairs`` on the benchmark's pairs dataset); every claim's result key resolves
to a key that config's results hold; nothing under papers/ names a default dataset.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.config import load_config
from shared.paper_meta import load_paper, paper_dirs
from shared.paper_plan import plan_papers, resolve_claim

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DEFAULT_DATASETS = ("shapes", "shapes_pair", "parts")
# per-image metrics of the shared scoring step (docs/ARCHITECTURE.md); any other metric is a record of a paper step
SCORE_METRICS = {
    "deletion", "insertion", "average_drop", "increase_in_confidence", "average_drop_50", "increase_in_confidence_50",
    "average_drop_15", "increase_in_confidence_15", "pointing_game", "energy_pointing_game", "relevance_mass",
    "relevance_rank_accuracy", "wsol_fixed", "maxboxacc",
}


def merged_config(repo: Path, configfile: str) -> dict:
    """``configfile`` deep-merged over config/default.yaml, as Snakemake's --configfile does."""
    from snakemake.utils import update_config

    config = yaml.safe_load((repo / "config" / "default.yaml").read_text())
    update_config(config, yaml.safe_load((repo / configfile).read_text()))
    return config


def planned_commands(repo: Path, configfile: str) -> list[list[str]]:
    out = subprocess.run(
        [SNAKEMAKE, "--dry-run", "--forceall", "--cores", "1", "--nolock", "--printshellcmds", "--configfile", configfile],
        cwd=repo, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return [shlex.split(line.split("Shell command: ", 1)[1]) for line in out.stdout.splitlines() if "Shell command: python" in line]


def option(argv: list[str], name: str) -> list[str]:
    """The values after ``name`` up to the next option."""
    if name not in argv:
        return []
    values = []
    for item in argv[argv.index(name) + 1 :]:
        if item.startswith("--") or item == ">":
            break
        values.append(item)
    return values


def model_of(checkpoint: str) -> str:
    return Path(checkpoint).name.removesuffix(".safetensors")


@pytest.mark.parametrize("configfile", ["config/paper-scale.yaml", "config/default.yaml"])
def test_every_model_is_explained_only_on_its_own_dataset(clean_tree, configfile):
    config = merged_config(clean_tree, configfile)
    own = {m: f"data/datasets/{cfg['dataset']}" for m, cfg in config["models"].items()}
    pairs_dataset = f"data/datasets/{config['benchmark']['pairs']}"
    pair_steps = {
        f"{doc['id']}.{step['id']}"
        for doc in map(load_paper, paper_dirs(clean_tree / "papers"))
        for step in doc.get("steps", [])
        if step.get("dataset") == "pairs"
    }
    commands = planned_commands(clean_tree, configfile)
    explained = set()
    for argv in commands:
        if argv[:3] == ["python", "-m", "shared.pipeline.batch"]:
            model = model_of(option(argv, "--model")[0])
            assert option(argv, "--dataset") == [own[model]], argv
            explained.add(model)
        elif argv[:2] == ["python", "-m"] and "--datasets" in argv:
            step = f"{argv[2].split('.')[1] if argv[2].startswith('papers.') else argv[2]}.{argv[3]}"
            models = [model_of(c) for c in option(argv, "--models")]
            datasets = option(argv, "--datasets")
            assert len(models) == len(datasets), argv
            for model, dataset in zip(models, datasets):
                allowed = {own[model], pairs_dataset} if any(step.endswith(s.split(".", 1)[1]) for s in pair_steps) else {own[model]}
                assert dataset in allowed, f"{step} gives {model} the dataset {dataset}"
    assert explained == set(config["models"]), "every model is explained"
    if configfile.endswith("paper-scale.yaml"):
        text = " ".join(" ".join(argv) for argv in commands)
        for name in DEFAULT_DATASETS:
            assert f"data/datasets/{name} " not in text + " " and f"data/datasets/{name}/" not in text


@pytest.mark.parametrize("configfile", ["config/paper-scale.yaml", "config/default.yaml", "config/tiny.yaml"])
def test_every_claim_resolves_to_a_result_of_that_config(repo_root, configfile):
    config = merged_config(repo_root, configfile)
    plans = plan_papers(config)
    for d in paper_dirs():
        doc = load_paper(d)
        plan = plans[doc["id"]]
        scored = {tuple(Path(s).with_suffix("").parts[-2:]) for s in plan.scores}  # (model, method)
        step_models = {m for step in plan.steps for m in step.models}
        # a claim's keys, and a published number's `ours` (judged only on its own setting, but it
        # must name a result the paper makes on every config)
        published = [{"id": p["id"], "lhs": p["ours"]} for p in doc.get("published", [])]
        for claim in doc.get("claims", []) + published:
            resolved = resolve_claim(claim, config["benchmark"])
            keys = [resolved[s] for s in ("lhs", "rhs") if isinstance(resolved.get(s), str)]
            keys += re.findall(r"r\['([^']+)'\]", resolved.get("expr", ""))
            assert keys, claim["id"]
            for key in keys:
                dataset, model, method, metric = key.split("/")
                assert model in config["models"], f"{doc['id']}.{claim['id']}: {key}"
                model_dataset = config["models"][model]["dataset"]
                if dataset == model_dataset and metric in SCORE_METRICS and (model, method) in scored:
                    continue  # a scores file the results job reads
                # else a record a step writes on that model (pairs, sanity, FGSM, class sensitivity; a
                # trained explainer's or concepts' scores, under the paper's own method names)
                assert dataset in (model_dataset, config["benchmark"]["pairs"]), f"{doc['id']}.{claim['id']}: {key}"
                assert model in step_models, f"{doc['id']}.{claim['id']}: {key}: neither among the paper's results nor a model of its steps"
                assert plan.records, f"{doc['id']}.{claim['id']}: {key} needs a step's records"


def test_nothing_under_papers_names_a_default_dataset(repo_root):
    named = re.compile(r"\b(" + "|".join(DEFAULT_DATASETS) + r")\b")
    for path in sorted((repo_root / "papers").rglob("*")):
        if path.suffix == ".smk" or path.name in ("figures.py", "method.py"):
            text = path.read_text()
        elif path.name == "paper.yaml":
            doc = yaml.safe_load(path.read_text())
            tables = [{k: v for k, v in t.items() if k != "caption"} for t in doc.get("tables", [])]
            # a claim's source quotes the paper's own words ("object parts"), not our datasets
            claims = [{k: v for k, v in c.items() if k != "source"} for c in doc.get("claims", [])]
            text = yaml.safe_dump({**{k: doc.get(k) for k in ("methods", "results", "steps")}, "claims": claims, "tables": tables})
        else:
            continue
        found = sorted(set(named.findall(text)))
        assert not found, f"{path.relative_to(repo_root)} names {found}: refer to the benchmark's roles instead"


def test_config_models_cover_every_role_papers_use(repo_root):
    config = load_config(repo_root / "config" / "default.yaml")
    for d in paper_dirs():
        doc = load_paper(d)
        roles = {m for group in doc["results"] for m in group["models"]} | {m for s in doc.get("steps", []) for m in s.get("models", [])}
        assert roles <= set(config["models"]), f"{doc['id']} names model roles {sorted(roles - set(config['models']))} the default config lacks"


def test_papers_import_no_other_paper_but_a_baseline_method(repo_root):
    """Editing one paper's figures must not change another's: a paper imports another paper's
    method.py only (a baseline it reuses), and shared/ imports no paper at all."""
    imports = re.compile(r"^\s*(?:from|import)\s+papers\.(\w+)(?:\.(\w+))?", re.M)
    for path in sorted((repo_root / "papers").rglob("*.py")) + sorted((repo_root / "shared").rglob("*.py")):
        owner = path.relative_to(repo_root).parts
        for paper, module in imports.findall(path.read_text()):
            if owner[0] == "shared":
                pytest.fail(f"{path.relative_to(repo_root)} imports papers.{paper}: shared never imports a paper")
            if paper != owner[1]:
                assert module == "method", f"{path.relative_to(repo_root)} imports papers.{paper}.{module}"
