"""The workflow parses, validates its config and plans the whole DAG (no job runs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def dry_run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SNAKEMAKE, "--dry-run", "--cores", "1", "--nolock", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("configfile", ["config/default.yaml", "config/tiny.yaml"])
def test_dry_run_plans_every_rule(clean_tree, configfile):
    out = dry_run(clean_tree, "--configfile", configfile)
    assert out.returncode == 0, out.stdout + out.stderr
    plan = out.stdout + out.stderr
    for rule in ("dataset", "train_model", "gate_model", "explain_resnet", "explain_vit", "explain_embed_cosine", "leaderboard"):
        assert rule in plan, f"rule {rule} missing from the plan:\n{plan}"


def test_paper_scale_config_dry_runs(clean_tree):
    out = dry_run(clean_tree, "--configfile", "config/paper-scale.yaml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_misspelt_key_stops_the_run_and_names_it(repo_root, clean_tree, tmp_path):
    config = yaml.safe_load((repo_root / "config" / "tiny.yaml").read_text())
    config["eval"]["n_imgaes"] = config["eval"].pop("n_images")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    out = dry_run(clean_tree, "--configfile", str(bad))
    assert out.returncode != 0
    assert "n_imgaes" in out.stdout + out.stderr


def test_ill_typed_value_stops_the_run(repo_root, clean_tree, tmp_path):
    config = yaml.safe_load((repo_root / "config" / "tiny.yaml").read_text())
    config["seed"] = "zero"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    out = dry_run(clean_tree, "--configfile", str(bad))
    assert out.returncode != 0
    assert "zero" in out.stdout + out.stderr and "seed" in out.stdout + out.stderr


def test_repro_run_dry_runs_a_target_with_a_configfile(clean_tree):
    """Issue 20, finding 3 as reported: `repro run gradcampp --configfile config/tiny.yaml` lost its
    target to --configfile (dry run, in a scratch copy: no data, no Snakemake state)."""
    repro = str(Path(sys.executable).with_name("repro"))
    out = subprocess.run([repro, "run", "-n", "-c", "1", "gradcampp", "--configfile", "config/tiny.yaml"], cwd=clean_tree, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No such file or directory" not in out.stderr
    assert "gradcampp_results" in out.stdout + out.stderr  # the paper's own jobs are planned


@pytest.mark.parametrize("configfile", ["config/default.yaml", "config/tiny.yaml"])
def test_workflow_config_hash_is_the_one_result_records_carry(clean_tree, configfile):
    """`repro verify` and `repro pull` compare configs by shared.config.workflow_config_hash:
    it must be the config_sha256 that the workflow hands the results step (rules/common.smk)."""
    import json
    import re

    from shared.config import workflow_config_hash

    out = subprocess.run(
        [SNAKEMAKE, "reports/gradcampp/results.json", "--dry-run", "--forceall", "--cores", "1", "--nolock",
         "--printshellcmds", "--configfile", configfile],
        cwd=clean_tree, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    planned = set(re.findall(r'"config_sha256":"([0-9a-f]{64})"', out.stdout))
    assert planned == {workflow_config_hash(clean_tree / configfile)}, json.dumps(sorted(planned))


def test_paper_scale_budgets_name_exactly_the_planned_jobs(clean_tree):
    """config/paper-scale.yaml's resources (sized from the rehearsal, shared.budget_report) hold
    one entry per job the paper-scale DAG plans, and each job asks Snakemake for its entry."""
    import re

    from shared.config import load_config

    out = dry_run(clean_tree, "--forceall", "--configfile", "config/paper-scale.yaml")
    assert out.returncode == 0, out.stdout + out.stderr
    planned = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out.stdout):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if not m or m.group(1) == "all":
            continue
        wild = re.search(r"wildcards: (.+)", block)
        key = m.group(1) + "".join(f":{kv.split('=', 1)[1]}" for kv in wild.group(1).split(", ")) if wild else m.group(1)
        res = re.search(r"resources: (.+)", block)
        planned[key] = dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}
    budgets = load_config(clean_tree / "config" / "paper-scale.yaml")["resources"]
    assert sorted(budgets) == sorted(planned), (sorted(set(budgets) ^ set(planned)))
    for key, res in budgets.items():
        assert int(planned[key]["mem_mb"]) == res["mem_mb"], key
        assert int(planned[key].get("gpu", 0)) == res.get("gpu", 0), key
