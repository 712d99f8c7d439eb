"""`repro publish` records the config data/ was made with (data/PUBLISHED.json) and `repro pull`
marks the pulled outputs up to date only for that config (issue 20). dvc and snakemake are not
run: their command lines are recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import cli, provenance_cli
from shared.config import workflow_config, workflow_config_hash


@pytest.fixture
def dvc_clone(tmp_path, monkeypatch, repo_root) -> tuple[Path, list[list[str]]]:
    """A checkout with a reachable local remote; dvc and snakemake calls recorded, not run."""
    ran: list[list[str]] = []
    monkeypatch.setattr(provenance_cli, "_run", lambda cmd, root: ran.append([Path(cmd[0]).name, *cmd[1:]]) or 0)
    root = tmp_path / "clone"
    (root / ".dvc").mkdir(parents=True)
    (tmp_path / "remote").mkdir()
    (root / ".dvc" / "config").write_text(f"[core]\n    remote = local\n['remote \"local\"']\n    url = {tmp_path / 'remote'}\n")
    (root / "config").symlink_to(repo_root / "config")
    (root / "papers").symlink_to(repo_root / "papers")
    (root / "data").mkdir()
    return root, ran


def checkpoints(root: Path, configfile: Path) -> None:
    config = workflow_config(configfile)
    (root / "data" / "models").mkdir(exist_ok=True)
    for model, cfg in config["models"].items():
        (root / "data" / "models" / f"{model}.json").write_text(json.dumps({"model": cfg, "seed": config["seed"]}))


def test_publish_records_the_config_and_pull_accepts_it(dvc_clone, repo_root, capsys):
    root, ran = dvc_clone
    tiny = "config/tiny.yaml"
    checkpoints(root, repo_root / tiny)
    assert provenance_cli.publish(root, tiny) == 0
    published = json.loads((root / "data" / "PUBLISHED.json").read_text())
    assert published["config_sha256"] == workflow_config_hash(repo_root / tiny) and published["configfile"] == tiny
    assert ran == [["dvc", "add", "data"], ["dvc", "push"]]
    assert "made with config/tiny.yaml" in capsys.readouterr().out
    ran.clear()
    assert provenance_cli.pull(tiny, root) == 0
    assert ran[0] == ["dvc", "pull"] and ran[1][:3] == ["snakemake", "all", "--touch"] and ran[1][-2:] == ["--configfile", tiny]


def test_pull_refuses_to_mark_another_configs_outputs(dvc_clone, repo_root, capsys):
    root, ran = dvc_clone
    (root / "data" / "PUBLISHED.json").write_text(json.dumps({
        "config_sha256": workflow_config_hash(repo_root / "config" / "tiny.yaml"), "configfile": "config/tiny.yaml", "git_commit": "abc1234"
    }))
    assert provenance_cli.pull(None, root) == 2
    assert ran == [["dvc", "pull"]]  # pulled, nothing touched
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: pulled, but nothing marked up to date: data/ was published with config/tiny.yaml at commit abc1234")
    assert "not config/default.yaml" in err and "`--configfile config/tiny.yaml`" in err and "--force" in err
    assert provenance_cli.pull(None, root, force=True) == 0 and ran[-1][:3] == ["snakemake", "all", "--touch"]
    assert "warning (--force)" in capsys.readouterr().err


def test_pull_without_published_json_checks_the_checkpoints(dvc_clone, repo_root, capsys):
    """Data published before PUBLISHED.json existed: its checkpoints' settings still say which
    config trained them."""
    root, ran = dvc_clone
    checkpoints(root, repo_root / "config" / "tiny.yaml")
    assert provenance_cli.pull(None, root) == 2
    assert "its checkpoints were trained with other settings than config/default.yaml" in capsys.readouterr().err
    assert provenance_cli.pull("config/tiny.yaml", root) == 0
    assert "holds no PUBLISHED.json" in capsys.readouterr().err


def test_publish_refuses_checkpoints_of_another_config(dvc_clone, repo_root, capsys):
    root, ran = dvc_clone
    checkpoints(root, repo_root / "config" / "tiny.yaml")
    assert provenance_cli.publish(root) == 2 and ran == []
    err = capsys.readouterr().err
    assert "trained with other settings than config/default.yaml" in err and "repro publish --configfile" in err
    assert not (root / "data" / "PUBLISHED.json").exists()


def test_cli_passes_configfile_to_publish_and_force_to_pull(monkeypatch, repo_root):
    got = []
    monkeypatch.chdir(repo_root)
    monkeypatch.setattr(provenance_cli, "publish", lambda root, configfile=None: got.append(("publish", configfile)) or 0)
    monkeypatch.setattr(provenance_cli, "pull", lambda configfile, root, force=False: got.append(("pull", configfile, force)) or 0)
    assert cli.main(["publish", "--configfile", "config/tiny.yaml"]) == 0
    assert cli.main(["pull", "--force"]) == 0
    assert got == [("publish", "config/tiny.yaml"), ("pull", None, True)]
