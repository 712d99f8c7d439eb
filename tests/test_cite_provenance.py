"""`repro cite` says what each hash is of, and warns when the data.dvc a number was computed
under is not the checkout's (issue 20, finding 11)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from shared import cli
from shared.results import Provenance, ResultRecord, sha256_file, write_records


def record(value: float, config_sha256: str | None, metric: str = "pointing_game", **prov) -> ResultRecord:
    return ResultRecord(
        metric, "gradcampp", "resnet", "shapes", value, value - 0.1, value + 0.1, 16,
        Provenance(git_commit="a" * 40, config_sha256=config_sha256, data_dvc_sha256=prov.pop("data_dvc_sha256", None), **prov),
    )



def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def cite_checkout(repo_root, tmp_path, monkeypatch) -> Path:
    """A checkout whose data.dvc was committed twice; pins computed under the first one."""
    root = tmp_path / "clone"
    root.mkdir()
    (root / "papers").mkdir()
    (root / "papers" / "gradcampp").symlink_to(repo_root / "papers" / "gradcampp")
    (root / "config").symlink_to(repo_root / "config")
    shutil.copy(repo_root / "CITATION.cff", root / "CITATION.cff")
    git(root, "init", "-q")
    (root / "data.dvc").write_text("outs:\n- md5: 1111.dir\n  path: data\n")
    git(root, "add", "data.dvc")
    git(root, "commit", "-qm", "first publish")
    monkeypatch.setattr(cli, "project_root", lambda: root)
    return root


def cited(root: Path, data_dvc: str | None, **prov) -> None:
    write_records([record(0.5, None, data_dvc_sha256=data_dvc, **prov)], root / "reports" / "gradcampp" / "results.json")


def test_cite_on_the_committed_data_dvc_prints_no_warning(cite_checkout, capsys):
    cited(cite_checkout, sha256_file(cite_checkout / "data.dvc"))
    assert cli.main(["cite", "gradcampp", "--result", "shapes/resnet/gradcampp/pointing_game"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "the data.dvc file in the tree when the number was computed" in out and "the same as the data.dvc committed now" in out
    assert "the whole workflow config" in out


def test_cite_warns_when_data_dvc_is_not_the_numbers_snapshot(cite_checkout, capsys):
    first = sha256_file(cite_checkout / "data.dvc")
    cited(cite_checkout, first)
    (cite_checkout / "data.dvc").write_text("outs:\n- md5: 2222.dir\n  path: data\n")
    git(cite_checkout, "commit", "-qam", "data changed, published again")
    assert cli.main(["cite", "gradcampp", "--result", "shapes/resnet/gradcampp/pointing_game"]) == 0
    out, err = capsys.readouterr()
    assert "NOT the data.dvc committed now" in out
    warning = err.strip()
    assert len(warning.splitlines()) == 1 and warning.startswith("warning: data.dvc (sha256 ")
    assert "data/ md5 2222.dir" in warning and first[:12] in warning and "is not the DVC snapshot this number was computed under" in warning
    assert ":data.dvc > data.dvc && dvc pull" in warning  # the commit that holds the numbers' data.dvc
    assert "`repro publish`" in warning and "gradcampp_results" in warning


def test_cite_warns_about_a_data_dvc_no_commit_holds(cite_checkout, capsys):
    cited(cite_checkout, "0" * 64)
    assert cli.main(["cite", "gradcampp", "--result", "shapes/resnet/gradcampp/pointing_game"]) == 0
    assert "no commit holds" in capsys.readouterr().err


def test_cite_names_the_checkpoint_and_dataset_the_scores_came_from(cite_checkout, capsys):
    cited(cite_checkout, None, model_weights_sha256="b" * 64, dataset_content_hash="c" * 64)
    assert cli.main(["cite", "gradcampp", "--result", "shapes/resnet/gradcampp/pointing_game"]) == 0
    out, err = capsys.readouterr()
    assert f"model weights sha256 {'b' * 64}" in out and f"dataset content hash {'c' * 64}" in out and err == ""
