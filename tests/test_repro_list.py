import shutil
import subprocess
import sys

import yaml

from shared.cli import main


def _copy_template(repo_root, dest, paper_id):
    target = dest / paper_id
    shutil.copytree(repo_root / "papers" / "_template", target)
    meta = yaml.safe_load((target / "paper.yaml").read_text())
    meta["id"] = paper_id
    (target / "paper.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return target


def test_list_shows_the_template(repo_root, capsys):
    assert main(["list", "--template"]) == 0
    out = capsys.readouterr().out
    assert "template_cam" in out and "planned" in out and "2024" in out


def test_list_reads_papers_from_their_yaml(repo_root, tmp_path, capsys):
    _copy_template(repo_root, tmp_path, "example")
    assert main(["list", "--papers-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "title", "year", "methods", "status"]
    assert lines[1].startswith("example ")


def test_broken_paper_yaml_names_path_and_field(repo_root, tmp_path, capsys):
    _copy_template(repo_root, tmp_path, "good")
    bad = _copy_template(repo_root, tmp_path, "bad")
    meta = yaml.safe_load((bad / "paper.yaml").read_text())
    meta["year"] = "soon"
    (bad / "paper.yaml").write_text(yaml.safe_dump(meta))
    assert main(["list", "--papers-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "good" in captured.out  # the valid paper is still listed
    assert f"{bad / 'paper.yaml'}: field year: 'soon' is not of type 'integer'" in captured.err


def test_paper_missing_a_contract_file(repo_root, tmp_path, capsys):
    broken = _copy_template(repo_root, tmp_path, "nomethod")
    (broken / "method.py").unlink()
    assert main(["list", "--papers-dir", str(tmp_path)]) == 1
    assert "missing method.py" in capsys.readouterr().err


def test_repro_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "shared.cli", "list"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_method_listed_but_not_registered_is_named(repo_root, tmp_path, capsys):
    paper = _copy_template(repo_root, tmp_path, "listed")
    meta = yaml.safe_load((paper / "paper.yaml").read_text())
    meta["methods"] = ["template_cam", "ghost_cam"]
    (paper / "paper.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    assert main(["list", "--papers-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "ghost_cam" in err and "method.py" in err and "@register_method" in err
