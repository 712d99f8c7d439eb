"""The whole tiny workflow, for real: twice from scratch (byte-identical reports/), then
published with DVC and pulled into a second clone, where Snakemake finds nothing to do, and one
paper verified against its pinned results (with one of them tampered with).

Slow (a few minutes): every dataset is generated, every model trained, every paper run.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.pins import pinned_records
from shared.verdicts import VERDICTS

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{out.stdout[-6000:]}\n{out.stderr[-6000:]}"
    return out


def snapshot(reports: Path) -> dict[str, bytes]:
    return {str(p.relative_to(reports)): p.read_bytes() for p in sorted(reports.rglob("*")) if p.is_file()}


# The fixtures `env` and `first_run` (README's first command on the tiny config, in a clean clone)
# are in tests/workflow/conftest.py: the SLURM test's local reference is the same run.


def test_template_copied_and_renamed_is_a_paper(first_run, tmp_path, env):
    """README's recipe for a new paper, exactly: copy papers/_template, rename, dry-run, run it."""
    repo = shutil.copytree(first_run, tmp_path / "repo", symlinks=True)
    paper = repo / "papers" / "example"
    shutil.copytree(repo / "papers" / "_template", paper)
    for f in paper.iterdir():
        f.write_text(f.read_text().replace("template", "example").replace("Template", "Example"))
    shutil.move(paper / "test_template.py", repo / "tests" / "papers" / "test_example.py")
    plan = run(["snakemake", "-n", "example", "--configfile", "config/tiny.yaml"], repo, env)
    # one job writes the results, the results tables and the claims (no <id>_claims job)
    assert "example_results" in plan.stdout and "example_claims" not in plan.stdout, plan.stdout
    # only the new paper's methods are explained (the batch scope), on the tiny models already trained
    run(["snakemake", "--cores", "2", "example", "--configfile", "config/tiny.yaml"], repo, {**env, "REPRO_BATCH_SCOPE": "example"})
    doc = yaml.safe_load((paper / "paper.yaml").read_text())
    for item in doc["figures"] + doc["tables"]:
        assert (repo / item["file"]).exists(), item["file"]
    claims = json.loads((repo / "reports" / "example" / "claims.json").read_text())["claims"]
    assert [c["id"] for c in claims] == [c["id"] for c in doc["claims"]]
    assert all(c["verdict"] in VERDICTS for c in claims), claims  # tiny n: "not evaluable" (too few images) is honest
    results = json.loads((repo / "reports" / "example" / "results.json").read_text())
    assert {r["method"] for r in results} == {"example_cam", "gradcam"}
    assert {r["model"] for r in results} == {"resnet", "plaincnn", "vit"}
    run([str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/papers/test_example.py"], repo, env)


def test_tiny_workflow_makes_every_paper(first_run):
    reports = first_run / "reports"
    assert (reports / "models.json").exists()
    papers = [d.name for d in (first_run / "papers").iterdir() if (d / "paper.yaml").exists() and not d.name.startswith("_")]
    for paper in papers:
        assert (reports / paper / "results.json").exists(), f"{paper} made no results.json"
        assert (reports / paper / "claims.md").exists(), f"{paper} judged no claims"
        doc = yaml.safe_load((first_run / "papers" / paper / "paper.yaml").read_text())
        declared = [item["file"] for item in (doc.get("figures") or []) + (doc.get("tables") or [])]
        missing = [f for f in declared if not (first_run / f).exists()]
        assert not missing, f"{paper}: paper.yaml declares files the workflow did not make: {missing}"


def test_first_command_reproduces_every_pin_and_two_cold_runs_are_identical(first_run, tmp_path_factory, env):
    """README's first command (`repro reproduce`) in a clone holding the first run's reports/ as its
    pins and no data/: it rebuilds everything, says every pinned number came back, and the second
    cold run's reports/ are byte-identical to the first's."""
    before = snapshot(first_run / "reports")
    top_level_outputs = lambda d, names: [n for n in names if d == str(first_run) and n in (".snakemake", "data", "logs")]  # noqa: E731
    second = shutil.copytree(first_run, tmp_path_factory.mktemp("clone_second") / "repo", ignore=top_level_outputs)
    (second / "data").mkdir()
    out = run([str(BIN / "repro"), "reproduce", "--cores", "2", "--configfile", "config/tiny.yaml"], second, env)
    assert "data/ holds no models: rebuilding everything" in out.stdout, out.stdout[-3000:]
    n = sum(len(records) for records in pinned_records(first_run).values())
    assert n > 100, n
    assert f"{n} of {n} pinned results reproduced within tolerance (config/tiny.yaml)." in out.stdout, out.stdout[-3000:]
    after = snapshot(second / "reports")
    assert sorted(after) == sorted(before)
    differing = [name for name in before if before[name] != after[name]]
    assert not differing, f"not byte-identical across cold runs: {differing}"


def test_html_report_has_every_paper_and_the_captions_of_paper_yaml(first_run, tmp_path, env):
    out = tmp_path / "report.html"
    run([str(BIN / "repro"), "report", "--configfile", "config/tiny.yaml", "--out", str(out)], first_run, env)
    html = out.read_text(errors="replace")
    papers = sorted(d.name for d in (first_run / "papers").iterdir() if (d / "paper.yaml").exists() and not d.name.startswith("_"))
    missing = [p for p in papers if p not in html]
    assert not missing, f"papers absent from the report: {missing}"
    # every figure and table a paper.yaml declares, with its caption (the report escapes
    # non-ASCII as JSON does), and every paper's claims
    for paper in papers:
        doc = yaml.safe_load((first_run / "papers" / paper / "paper.yaml").read_text())
        for item in (doc.get("figures") or []) + (doc.get("tables") or []):
            words = json.dumps(item["caption"])[1:41]
            assert words in html, f"{item['file']}: its caption is not in the report"
        assert f"{doc['title']}: each claim of the paper" in html or json.dumps(doc["title"])[1:-1] + ": each claim" in html, paper


def test_publish_then_pull_in_a_second_clone_needs_no_recomputation(first_run, tmp_path_factory, env):
    a = first_run
    run(["git", "init", "-q"], a, env)
    run(["git", "add", "-A"], a, env)
    run(["git", "commit", "-qm", "tiny run"], a, env)
    run([str(BIN / "repro"), "publish", "--configfile", "config/tiny.yaml"], a, env)
    run(["git", "add", "data.dvc"], a, env)
    run(["git", "commit", "-qm", "publish data"], a, env)
    remote = Path(env["HOME"]) / ".cache" / "saliency-repro" / "dvc-remote"
    assert any(remote.rglob("*")), "dvc push wrote nothing to the default local remote"

    b = tmp_path_factory.mktemp("clone_b") / "repo"
    run(["git", "clone", "-q", str(a), str(b)], b.parent, env)
    assert not (b / "data" / "models").exists()
    run([str(BIN / "repro"), "pull", "--configfile", "config/tiny.yaml"], b, env)
    assert filecmp.cmp(a / "reports" / "models.json", b / "reports" / "models.json", shallow=False)
    plan = run(["snakemake", "--dry-run", "--cores", "1", "--configfile", "config/tiny.yaml"], b, env)
    assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout[-3000:]


def test_verify_recomputes_a_paper_and_names_the_result_that_moved(first_run, tmp_path_factory, env):
    no_state = lambda d, names: [n for n in names if d == str(first_run) and n in (".snakemake", "logs")]  # noqa: E731
    repo = shutil.copytree(first_run, tmp_path_factory.mktemp("clone_verify") / "repo", ignore=no_state)
    if not (repo / ".git").exists():
        run(["git", "init", "-q"], repo, env)
        run(["git", "add", "-A"], repo, env)
        run(["git", "commit", "-qm", "tiny run"], repo, env)
    # pin a wrong value for one result: verify must recompute the others to the same numbers
    pinned = repo / "reports" / "gradcampp" / "results.json"
    records = json.loads(pinned.read_text())
    tampered = records[0]
    tampered["value"] += 0.5
    pinned.write_text(json.dumps(records, indent=2))
    key = "/".join(tampered[k] for k in ("dataset", "model", "method", "metric"))

    out = subprocess.run(
        [str(BIN / "repro"), "verify", "gradcampp", "--configfile", "config/tiny.yaml", "--cores", "2"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    n = len(records)
    assert f"verify gradcampp: {n - 1} of {n} results within tolerance" in out.stdout, out.stdout
    moved = [line for line in out.stdout.splitlines() if "MOVED" in line]
    assert len(moved) == 1 and key in moved[0], out.stdout
    # the scratch copy is gone and the repository's own outputs are untouched
    assert json.loads(pinned.read_text())[0]["value"] == tampered["value"]
