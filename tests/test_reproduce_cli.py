"""`repro reproduce` (README's first command): what it runs and why, and what it refuses before any
work. The real thing runs in the tiny workflow test (every pin reproduced from a clone without data/)."""

from __future__ import annotations

import argparse
import shutil

import pytest

from shared import cli
from shared.results import Provenance, ResultRecord, write_records


def args(**kw) -> argparse.Namespace:
    base = {"papers": [], "cores": "2", "configfile": None, "profile": None, "rebuild": False, "rerun_incomplete": False}
    return argparse.Namespace(**{**base, **kw})


def checkout(tmp_path, repo_root, config_sha: str | None):
    for d in ("papers", "config"):
        shutil.copytree(repo_root / d, tmp_path / d)
    (tmp_path / "Snakefile").write_text("")
    if config_sha is not None:
        rec = ResultRecord("pointing_game", "gradcam", "resnet", "shapes", 0.5, None, None, 8, provenance=Provenance(config_sha256=config_sha))
        write_records([rec], tmp_path / "reports" / "gradcam" / "results.json")
    return tmp_path


def test_without_data_it_rebuilds_everything_and_says_so(tmp_path):
    cmd, why = cli.reproduce_command(args(), tmp_path)
    assert cmd[-1] == "--forceall" and why.startswith("data/ holds no models: rebuilding everything")
    (tmp_path / "data" / "models").mkdir(parents=True)
    cmd, why = cli.reproduce_command(args(), tmp_path)
    assert "--forceall" not in cmd and "out of date" in why
    cmd, _ = cli.reproduce_command(args(rebuild=True, configfile="config/tiny.yaml"), tmp_path)
    assert cmd[-1] == "--forceall" and cmd[cmd.index("--configfile") + 1] == "config/tiny.yaml"
    cmd, _ = cli.reproduce_command(args(papers=["gradcam"]), tmp_path)
    assert cmd[-2:] == ["--", "gradcam"]  # targets after --: --configfile and friends take any number of values


def test_an_unknown_paper_is_named_before_any_work(tmp_path, repo_root, monkeypatch, capsys, no_workflow):
    monkeypatch.chdir(checkout(tmp_path, repo_root, "0" * 64))
    assert cli.main(["reproduce", "nopaper"]) == 2
    assert "no pinned results for nopaper; papers with pins: gradcam" in capsys.readouterr().err


def test_run_on_a_clone_without_data_says_what_reproduces(tmp_path, repo_root, monkeypatch, capsys):
    root = checkout(tmp_path, repo_root, "0" * 64)
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: 0)
    monkeypatch.chdir(root)
    assert cli.main(["run", "gradcam"]) == 0
    assert "`repro reproduce [papers]` rebuilds them" in capsys.readouterr().out


@pytest.fixture
def no_workflow(monkeypatch):
    def refuse(cmd, **kw):
        raise AssertionError(f"ran {cmd}")

    monkeypatch.setattr(cli.subprocess, "call", refuse)


def test_no_pins_is_one_line_and_no_work(tmp_path, repo_root, monkeypatch, capsys, no_workflow):
    monkeypatch.chdir(checkout(tmp_path, repo_root, None))
    assert cli.main(["reproduce"]) == 2
    assert "no pinned results in reports/" in capsys.readouterr().err


def test_pins_of_another_config_are_named_before_any_work(tmp_path, repo_root, monkeypatch, capsys, no_workflow):
    monkeypatch.chdir(checkout(tmp_path, repo_root, "0" * 64))
    assert cli.main(["reproduce"]) == 2
    err = capsys.readouterr().err
    assert "pinned results were made with config sha256 000000000000" in err and "config/default.yaml" in err


def test_an_unreachable_remote_is_named_and_it_rebuilds(tmp_path, repo_root, monkeypatch, capsys):
    from shared.config import workflow_config_hash

    root = checkout(tmp_path, repo_root, workflow_config_hash(repo_root / "config" / "default.yaml"))
    (root / ".dvc").mkdir()
    (root / ".dvc" / "config").write_text("[core]\n    remote = shipped\n['remote \"shipped\"']\n    url = /nonexistent/dvc-remote\n")
    (root / "data.dvc").write_text("outs:\n- path: data\n")
    ran = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: ran.append(cmd) or 0)
    monkeypatch.chdir(root)
    assert cli.main(["reproduce", "--cores", "1"]) == 0
    out = capsys.readouterr().out
    assert "not pulling data/" in out and "rebuilding everything" in out
    assert ran and ran[0][-1] == "--forceall"
    assert "1 of 1 pinned results reproduced within tolerance (config/default.yaml)." in out
