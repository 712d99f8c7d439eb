"""Workflow tests run in a scratch copy of the working tree, never in the repository itself
(whose data/ and .snakemake/ belong to the developer's own runs)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


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
