"""Workflow tests run in a scratch copy of the working tree, never in the repository itself
(whose data/ and .snakemake/ belong to the developer's own runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.pins import pinned_records

BIN = Path(sys.executable).parent


def working_tree_copy(repo: Path, dest: Path) -> Path:
    """The repository's tracked and untracked (not ignored) files, without data/ and reports/."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if rel.startswith(("reports/", "data/")) or not (repo / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, dest / rel)
    (dest / "data").mkdir(exist_ok=True)
    (dest / "data" / ".gitkeep").touch()
    return dest


@pytest.fixture(scope="session")
def clean_tree(repo_root, tmp_path_factory) -> Path:
    """A clean copy of the working tree: no data, no reports, no Snakemake state."""
    return working_tree_copy(repo_root, tmp_path_factory.mktemp("tree"))


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed in {cwd}:\n{out.stdout[-6000:]}\n{out.stderr[-6000:]}"
    return out


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("home")  # the default DVC remote (~/.cache/...) lands here
    e = {**os.environ, "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    e.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.org")
    return e


TINY_PINS = Path(__file__).resolve().parents[1] / "pins" / "tiny"


@pytest.fixture(scope="session")
def first_run(clean_tree, tmp_path_factory, env) -> Path:
    """README's first command on the tiny config, in a clean clone without data/ whose reports/
    hold the committed tiny-config pins (tests/pins/tiny): everything is rebuilt and every pinned
    number must come back."""
    clone = shutil.copytree(clean_tree, tmp_path_factory.mktemp("clone_a") / "repo")
    shutil.copytree(TINY_PINS, clone / "reports")
    n = sum(len(records) for records in pinned_records(clone).values())
    out = run([str(BIN / "repro"), "reproduce", "--cores", "2", "--configfile", "config/tiny.yaml"], clone, env)
    assert n > 100 and f"{n} of {n} pinned results reproduced within tolerance (config/tiny.yaml)." in out.stdout, (
        f"{out.stdout[-4000:]}\n(if the change meant to move the tiny numbers, refresh the pins: tests/pins/README.md)"
    )
    return clone
