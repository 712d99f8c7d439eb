"""The rehearsal runs in a scratch copy of the working tree, like the workflow tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

# tests/workflow/conftest.py is not importable as a module (tests/ is no package): load its helper
_spec = importlib.util.spec_from_file_location("_workflow_conftest", Path(__file__).resolve().parents[1] / "workflow" / "conftest.py")
_workflow = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_workflow)


@pytest.fixture(scope="session")
def clean_tree(repo_root, tmp_path_factory) -> Path:
    """A clean copy of the working tree: no data, no reports, no Snakemake state."""
    return _workflow.working_tree_copy(repo_root, tmp_path_factory.mktemp("tree"))
