"""The committed pins are protected from another config's run, and `repro reproduce` counts what
came back: a real Snakemake run refused before its first job; hand-made pins compared."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from shared.config import config_hash, workflow_config
from shared.pins import OVERRIDE, compare_with_pins, overwrite_problem, pinned_records, pins_config_hash
from shared.results import Provenance, ResultRecord, write_records

BIN = Path(sys.executable).parent


def pin(tree: Path, paper: str, value: float, config_sha: str, metric: str = "pointing_game") -> None:
    rec = ResultRecord(metric, "gradcam", "resnet", "shapes", value, None, None, 8, provenance=Provenance(config_sha256=config_sha))
    write_records([rec], tree / "reports" / paper / "results.json")


def test_a_run_with_another_config_stops_before_its_first_job_and_keeps_the_pins(clean_tree, tmp_path):
    tree = shutil.copytree(clean_tree, tmp_path / "repo")
    pin(tree, "gradcam", 0.5, "0" * 64)  # pins made with some other config
    pinned = (tree / "reports" / "gradcam" / "results.json").read_bytes()
    env = {k: v for k, v in os.environ.items() if k != OVERRIDE}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    cmd = [str(BIN / "snakemake"), "reports/data/shapes.png", "-c1", "--configfile", "config/tiny.yaml"]
    dry = subprocess.run([*cmd, "-n"], cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]  # planning is never refused
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "would overwrite the pinned results in reports/" in out.stderr and OVERRIDE in out.stderr, out.stderr[-2000:]
    assert not (tree / "data" / "datasets").exists(), "a job ran before the guard"
    assert (tree / "reports" / "gradcam" / "results.json").read_bytes() == pinned
    meant = subprocess.run(cmd, cwd=tree, env={**env, OVERRIDE: "1"}, capture_output=True, text=True, timeout=300)
    assert meant.returncode == 0, meant.stderr[-2000:]
    assert (tree / "reports" / "data" / "shapes.png").exists()


def test_the_guard_lets_the_pins_own_config_and_plain_data_jobs_through(tmp_path, repo_root):
    shutil.copytree(repo_root / "papers", tmp_path / "papers")
    config = workflow_config(repo_root / "config" / "tiny.yaml")
    pin(tmp_path, "gradcam", 0.5, config_hash(config))
    assert pins_config_hash(tmp_path) == config_hash(config)
    assert overwrite_problem(config, tmp_path, writes_reports=True) is None
    pin(tmp_path, "gradcam", 0.5, "1" * 64)
    assert overwrite_problem(config, tmp_path, writes_reports=False) is None
    assert "would overwrite" in overwrite_problem(config, tmp_path, writes_reports=True)


def test_reproduce_counts_pins_within_tolerance_and_names_what_moved(tmp_path, repo_root):
    shutil.copytree(repo_root / "papers", tmp_path / "papers")
    pin(tmp_path, "gradcam", 0.5, "a" * 64)
    pin(tmp_path, "eigencam", 0.5, "a" * 64)
    pins = pinned_records(tmp_path)
    assert sum(len(p) for p in pins.values()) == 2
    pin(tmp_path, "gradcam", 0.51, "a" * 64)  # within gradcam's tolerance (0.02)
    pin(tmp_path, "eigencam", 0.6, "a" * 64)  # beyond eigencam's
    ok, bad = compare_with_pins(pins, tmp_path)
    assert ok == 1 and [(b["paper"], b["key"]) for b in bad] == [("eigencam", "shapes/resnet/gradcam/pointing_game")]
