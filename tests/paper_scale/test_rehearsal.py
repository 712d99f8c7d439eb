"""The paper-scale path, rehearsed end to end offline (issue 14).

config/paper-scale.yaml runs for real, with only what tests/paper_scale/rehearsal.yaml changes:
miniature archives in the publishers' exact formats (tests/paper_scale/miniatures.py) served by a
local HTTP server with their checksums; seeded random stand-in weights in the Hugging Face hub
cache under the ids timm's pretrained configs name, loaded by timm's own pretrained path with the
hub offline (tests/paper_scale/standin_weights.py); n_images 2; gates relaxed. Every paper at
224 px with ResNet-50, VGG-16 and DeiT-S: fetch -> convert -> fine-tune the CUB embeddings for a
step -> gate -> explain -> score -> tables, figures, claims, leaderboard, HTML report.

Slow (minutes): the budget report (shared.budget_report) is sized from this run's benchmarks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from shared.config import deep_merge
from shared.verdicts import VERDICTS

from .miniatures import archive_entry, build_cub, build_imagenette, build_voc2007_test
from .server import serve
from .standin_weights import offline_hub_env, write_standin_weights

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
RESULTS = {}


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 1500) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{out.stdout[-6000:]}\n{out.stderr[-6000:]}"
    return out


def paper_scale(repo: Path) -> dict:
    return yaml.safe_load((repo / "config" / "paper-scale.yaml").read_text())


@pytest.fixture(scope="module")
def rehearsal(clean_tree, tmp_path_factory):
    """The rehearsal's checkout after the whole paper-scale DAG ran in it, and what it was given."""
    root = tmp_path_factory.mktemp("rehearsal")
    repo = shutil.copytree(clean_tree, root / "repo")
    www = root / "www"
    # CUB: 4 images a class, one training batch of paper-scale's samples_per_class (4)
    # Imagenette: one val image a class (the classifiers are evaluated as they are, on val)
    archives = {"imagenette": build_imagenette(www, per_class_val=1), "voc2007": build_voc2007_test(www), "cub": build_cub(www, per_class=4)}
    archs = sorted({m["arch"] for m in paper_scale(repo)["models"].values() if m.get("pretrained")})
    hub = root / "hub"
    weights = write_standin_weights(hub, archs)
    home = root / "home"
    home.mkdir()
    env = {
        **os.environ, **offline_hub_env(hub), "HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        # nothing may leave the machine: a proxy would be the only way out
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }
    overrides = yaml.safe_load((HERE / "rehearsal.yaml").read_text())
    with serve(root / "www") as base:
        overrides["datasets"] = {name: archive_entry(path, f"{base}/{path.name}") for name, path in archives.items()}
        (repo / "config" / "rehearsal.yaml").write_text(yaml.safe_dump(overrides, sort_keys=True))
        configs = ["--configfile", "config/paper-scale.yaml", "config/rehearsal.yaml"]
        started = time.perf_counter()
        # README's paper-scale commands, prefetch (the archives and the weights) and the run, as
        # one invocation's two targets: the prefetch job runs beside the others (CI time)
        out = run([str(BIN / "snakemake"), "--cores", "2", "--keep-going", "prefetch", "all", *configs], repo, env)
        elapsed = time.perf_counter() - started
        run([str(BIN / "snakemake"), "--report", "reports/report.html", *configs], repo, env)
        requests = list(base.requests)
    merged = deep_merge(deep_merge(yaml.safe_load((repo / "config" / "default.yaml").read_text()), paper_scale(repo)), overrides)
    (root / "merged.yaml").write_text(yaml.safe_dump(merged))
    print(f"\nrehearsal: whole paper-scale DAG in {elapsed:.0f} s")
    return {
        "repo": repo, "weights": weights, "archives": archives, "config": merged, "elapsed": elapsed,
        "log": out.stdout + out.stderr, "root": root, "requests": requests, "archs": archs,
        "prefetch_log": (repo / "logs" / "prefetch.log").read_text(),
    }


def paper_docs(repo: Path) -> dict[str, dict]:
    return {
        d.name: yaml.safe_load((d / "paper.yaml").read_text())
        for d in sorted((repo / "papers").iterdir())
        if (d / "paper.yaml").exists() and not d.name.startswith("_")
    }


def test_every_paper_makes_its_declared_outputs_at_paper_scale(rehearsal):
    repo = rehearsal["repo"]
    for paper, doc in paper_docs(repo).items():
        declared = [item["file"] for item in (doc.get("figures") or []) + (doc.get("tables") or [])]
        declared += [f"reports/{paper}/results.json", f"reports/{paper}/claims.md", f"reports/{paper}/claims.json"]
        missing = [f for f in declared if not (repo / f).exists()]
        assert not missing, f"{paper}: not made at paper scale: {missing}"
    for f in ("reports/leaderboard.md", "reports/leaderboard.png", "reports/models.json", "reports/report.html"):
        assert (repo / f).exists(), f


def test_every_claim_has_a_verdict_and_the_run_says_it_is_a_rehearsal(rehearsal):
    repo = rehearsal["repo"]
    for paper, doc in paper_docs(repo).items():
        judged = json.loads((repo / "reports" / paper / "claims.json").read_text())
        claims = judged["claims"]
        assert [c["id"] for c in claims] == [c["id"] for c in doc.get("claims") or []], paper
        assert all(c["verdict"] in VERDICTS for c in claims), paper
        published = judged.get("published", [])
        assert [e["id"] for e in published] == [e["id"] for e in doc.get("published") or []], paper
        for entry in published:
            # at paper scale every published number's setting (dataset, architecture) is met: it is
            # compared (n = 2 here: "not evaluable", too few images), never "not applicable"
            assert entry["verdict"] in VERDICTS, entry
    models = json.loads((repo / "reports" / "models.json").read_text())
    assert "rehearsal" in models["rehearsal"] and "meaningless" in models["rehearsal"]
    for paper in paper_docs(repo):
        assert "REHEARSAL" in (repo / "reports" / paper / "claims.md").read_text(), paper


def test_prefetch_downloads_each_archive_once_and_caches_every_model(rehearsal):
    """README's `prefetch`: every archive fetched once over HTTP (the run after it fetches nothing
    again), every pretrained architecture loaded through timm from the (offline) hub cache."""
    fetched = sorted(r.path.lstrip("/") for r in rehearsal["requests"])
    assert fetched == sorted(path.name for path in rehearsal["archives"].values()), fetched
    assert all(r.status == 200 for r in rehearsal["requests"]), rehearsal["requests"]
    for arch in rehearsal["archs"]:
        assert f"cached {arch}" in rehearsal["prefetch_log"], rehearsal["prefetch_log"]


def test_stand_in_weights_came_through_timms_pretrained_path(rehearsal):
    """A checkpoint of a model evaluated as it is (epochs: 0) holds exactly the stand-in bytes
    timm loaded from the offline hub cache: the first convolution's tensor has their checksum."""
    repo, weights = rehearsal["repo"], rehearsal["weights"]
    cfg = rehearsal["config"]["models"]
    checked = 0
    for role, model in cfg.items():
        if not model.get("pretrained") or int(model["epochs"]) != 0:
            continue
        info = weights[model["arch"]]
        with safe_open(str(repo / "data" / "models" / f"{role}.safetensors"), "pt") as f:
            names = [n for n in f.keys() if n.endswith(info["tensor"])]
            assert names, f"{role}: no tensor named like {info['tensor']} in the checkpoint"
            tensor = f.get_tensor(names[0]).contiguous()
        assert hashlib.sha256(tensor.numpy().tobytes()).hexdigest() == info["tensor_sha256"], role
        checked += 1
    assert checked == 3


def test_every_model_is_explained_only_on_its_own_dataset(rehearsal):
    repo, cfg = rehearsal["repo"], rehearsal["config"]
    scores = sorted((repo / "data" / "scores").rglob("*.json"))
    assert scores
    for path in scores:
        model = path.parent.name
        assert json.loads(path.read_text())["dataset"] == cfg["models"][model]["dataset"], path


def test_every_job_left_a_benchmark_and_the_budgets_follow_from_them(rehearsal):
    repo = rehearsal["repo"]
    benches = sorted((repo / "logs" / "benchmarks").rglob("*.tsv"))
    assert any("train_model" in str(b) for b in benches) and any("explain_plaincnn" in str(b) for b in benches)
    out = rehearsal["root"]
    run([str(BIN / "python"), "-m", "shared.budget_report", "--run", str(repo), "--rehearsal-config", str(out / "merged.yaml"),
         "--target-config", "config/paper-scale.yaml", "--out-yaml", str(out / "budgets.yaml"), "--out-md", str(out / "budgets.md")],
        repo, {**os.environ})
    section = yaml.safe_load((out / "budgets.yaml").read_text())["resources"]
    assert section["explain_plaincnn"]["gpu"] == 1 and section["explain_plaincnn"]["mem_mb"] >= 2000
    print((out / "budgets.md").read_text())
    keep = os.environ.get("REPRO_REHEARSAL_KEEP")
    if keep:  # a developer refreshing config/paper-scale.yaml's budgets keeps the run's measurements
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name in ("budgets.yaml", "budgets.md", "budgets.json", "merged.yaml"):
            shutil.copy2(out / name, Path(keep) / name)
        shutil.copytree(repo / "logs" / "benchmarks", Path(keep) / "benchmarks", dirs_exist_ok=True)
