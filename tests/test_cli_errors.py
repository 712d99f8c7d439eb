"""`repro` refuses bad input before any work, in one line and with exit code 2 (no traceback),
and builds snakemake command lines that snakemake reads as meant (issue 20)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shared import cli, provenance_cli

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@pytest.fixture
def no_subprocess(monkeypatch, repo_root):
    """Fails the test if `repro` starts snakemake or dvc (the checks come before any work)."""

    def refuse(cmd, **kw):
        raise AssertionError(f"ran {cmd} although the input was bad")

    monkeypatch.chdir(repo_root)
    monkeypatch.setattr(cli.subprocess, "call", refuse)
    monkeypatch.setattr(provenance_cli.subprocess, "run", refuse)
    monkeypatch.setattr(provenance_cli.subprocess, "call", refuse)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# finding 3: the targets reach snakemake as targets ---------------------------------------------


def test_run_targets_are_not_swallowed_by_configfile(monkeypatch, repo_root):
    monkeypatch.chdir(repo_root)
    args = cli.build_parser().parse_args(["run", "gradcampp", "--configfile", "config/tiny.yaml", "-n"])
    cmd = cli.run_command(args)
    from snakemake.cli import get_argument_parser

    parsed = get_argument_parser().parse_args(cmd[1:])
    assert parsed.targets == ["gradcampp"]
    assert parsed.configfile == [Path("config/tiny.yaml")] or [str(p) for p in parsed.configfile] == ["config/tiny.yaml"]
    assert parsed.dryrun


# finding 10: an interrupted run resumes -------------------------------------------------------


def test_run_passes_rerun_incomplete(monkeypatch, repo_root):
    seen: list[list[str]] = []
    monkeypatch.chdir(repo_root)
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, **kw: seen.append(list(cmd)) or 0)
    assert cli.main(["run", "--rerun-incomplete", "gradcam"]) == 0
    assert "--rerun-incomplete" in seen[-1] and seen[-1][-1] == "gradcam"
    assert cli.main(["run", "gradcam"]) == 0
    assert "--rerun-incomplete" not in seen[-1]


def test_readme_says_how_to_resume(repo_root):
    assert "repro run --rerun-incomplete" in (repo_root / "README.md").read_text()


# finding 6: repro diff checks its names first -----------------------------------------------


def test_diff_unknown_method(no_subprocess, capsys):
    assert cli.main(["diff", "gradcam", "gradcamm", "--model", "resnet"]) == 2
    line = one_line_error(capsys)
    assert "unknown method 'gradcamm'" in line and "gradcam" in line.split("nearest:")[1]


def test_diff_method_that_does_not_apply_to_the_model(no_subprocess, capsys):
    assert cli.main(["diff", "gradcam", "sfam", "--model", "resnet"]) == 2
    line = one_line_error(capsys)
    assert "method 'sfam' does not apply to model 'resnet'" in line and "embed_cosine" in line


def test_diff_unknown_model(no_subprocess, capsys):
    assert cli.main(["diff", "gradcam", "eigencam", "--model", "resnett", "--configfile", "config/tiny.yaml"]) == 2
    line = one_line_error(capsys)
    assert "unknown model 'resnett'" in line and "config/tiny.yaml" in line
    for model in ("resnet", "plaincnn", "vit"):
        assert model in line


# finding 9: verify names what is wrong; configs say it in one or two lines --------------------


def test_verify_unknown_paper(no_subprocess, capsys):
    assert cli.main(["verify", "nopaper"]) == 2
    line = one_line_error(capsys)
    assert "no paper 'nopaper'" in line and "gradcampp" in line


def test_verify_paper_without_pinned_results(no_subprocess, monkeypatch, repo_root, tmp_path, capsys):
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "gradcampp").symlink_to(repo_root / "papers" / "gradcampp")
    monkeypatch.setattr(cli, "project_root", lambda: tmp_path)  # a checkout whose reports/ is empty
    assert cli.main(["verify", "gradcampp", "--configfile", str(repo_root / "config" / "tiny.yaml")]) == 2
    line = one_line_error(capsys)
    assert "gradcampp has no pinned results" in line and "repro run gradcampp" in line
    # and the API says the same, instead of a FileNotFoundError
    code, report = provenance_cli.verify("gradcampp", None, 1, tmp_path)
    assert code == 2 and "no pinned results" in report


def test_run_with_a_misspelt_config_key_is_one_or_two_lines(no_subprocess, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sede: 3\n")
    assert cli.main(["run", "-n", "gradcampp", "--configfile", str(bad)]) == 2
    line = one_line_error(capsys)
    assert "'sede' was unexpected" in line and str(bad) in line and "allowed keys: benchmark" in line


# finding 2: pull says where the default remote is ---------------------------------------------


def dvc_checkout(root: Path, url: str, local_url: str | None = None) -> Path:
    (root / ".dvc").mkdir(parents=True)
    (root / ".dvc" / "config").write_text(f"[core]\n    analytics = false\n    remote = local\n['remote \"local\"']\n    url = {url}\n")
    if local_url:
        (root / ".dvc" / "config.local").write_text(f"[core]\n    remote = mine\n['remote \"mine\"']\n    url = {local_url}\n")
    return root


def test_pull_without_the_publishers_local_remote(no_subprocess, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # a fresh machine: no ~/.cache/saliency-repro
    root = dvc_checkout(tmp_path / "clone", "~/.cache/saliency-repro/dvc-remote")
    assert provenance_cli.pull(None, root) == 2
    line = one_line_error(capsys)
    assert "~/.cache/saliency-repro/dvc-remote" in line and "machine that published the data" in line
    assert "dvc remote add -d myremote" in line and "repro run" in line


def test_pull_goes_ahead_when_the_remote_is_there(monkeypatch, tmp_path):
    ran: list[list[str]] = []
    monkeypatch.setattr(provenance_cli, "_run", lambda cmd, root: ran.append(cmd) or 0)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home" / ".cache" / "saliency-repro" / "dvc-remote").mkdir(parents=True)
    root = dvc_checkout(tmp_path / "clone", "~/.cache/saliency-repro/dvc-remote")
    assert provenance_cli.pull(None, root) == 0 and ran[0][1:] == ["pull"]


def test_remote_check_reads_config_local_and_leaves_urls_to_dvc(tmp_path):
    root = dvc_checkout(tmp_path / "a", "/nonexistent/remote", local_url="s3://bucket/data")
    assert provenance_cli.default_remote(root) == ("mine", "s3://bucket/data")
    assert provenance_cli.remote_problem(root) is None
    root = dvc_checkout(tmp_path / "b", "/nonexistent/remote")
    assert "is /nonexistent/remote, a directory on the machine that published the data" in provenance_cli.remote_problem(root)


# finding 5: verify says it will train first; Ctrl-C ends cleanly --------------------------------


def checkout_without_data(repo_root: Path, root: Path) -> Path:
    root.mkdir()
    for name in ("papers", "config", "reports"):
        (root / name).symlink_to(repo_root / name)
    return root


def test_verify_says_when_it_must_train_first(monkeypatch, repo_root, tmp_path, capsys):
    root = checkout_without_data(repo_root, tmp_path / "clone")

    def no_copy(root, under=None):
        raise NotADirectoryError("stopped by the test before recomputing")

    monkeypatch.setattr(provenance_cli, "_scratch_copy", no_copy)
    tiny = str(repo_root / "config" / "tiny.yaml")
    code, _ = provenance_cli.verify("gradcampp", tiny, 1, root)
    assert code == 2
    line = [x for x in capsys.readouterr().err.splitlines() if "data/" in x]
    assert len(line) == 1 and "data/ is missing" in line[0] and "train the models first" in line[0] and "repro pull" in line[0]

    (root / "data" / "models").mkdir(parents=True)
    assert "data/models/ lacks resnet" in provenance_cli.missing_data_notice("gradcampp", tiny, root)
    for model in ("resnet", "plaincnn", "vit"):
        (root / "data" / "models" / f"{model}.safetensors").touch()
    assert provenance_cli.missing_data_notice("gradcampp", tiny, root) is None


@pytest.mark.parametrize("command, argv, hint", [
    ("cmd_run", ["run", "gradcam"], "interrupted; rerun with --rerun-incomplete to resume"),
    ("cmd_verify", ["verify", "gradcam"], "interrupted;"),
])
def test_ctrl_c_ends_without_a_traceback(monkeypatch, capsys, command, argv, hint):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, command, interrupted)
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert hint in err and "Traceback" not in err
