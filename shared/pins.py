"""The pinned results in ``reports/``: read them, protect them from another config's run, and
check a fresh run against them (``repro reproduce``, README's first command).

The committed ``reports/`` hold the default config's numbers. A run with another config
(``config/tiny.yaml``, ``config/paper-scale.yaml``) writes to the same paths, so the workflow
refuses it when it would rewrite pins made with a different config (:func:`overwrite_problem`,
called from the Snakefile's ``onstart``), unless ``REPRO_OVERWRITE_PINS=1`` says that is meant
(a scratch copy, a test, a cluster checkout of its own).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from shared import REPO_ROOT
from shared.results import ResultRecord

OVERRIDE = "REPRO_OVERWRITE_PINS"


def paper_ids(root: Path = REPO_ROOT) -> list[str]:
    """Every paper with pinned record files under reports/."""
    from shared.paper_meta import paper_dirs

    return [d.name for d in paper_dirs(root / "papers") if (root / "reports" / d.name / "results.json").exists()]


def pinned_records(root: Path = REPO_ROOT) -> dict[str, dict[str, ResultRecord]]:
    """paper -> its pinned records (results.json and the steps' record files), by key."""
    from shared.provenance_cli import record_files

    return {p: record_files(root / "reports" / p) for p in paper_ids(root)}


def pins_config_hash(root: Path = REPO_ROOT) -> str | None:
    """The config sha256 most pinned records carry (None without pins)."""
    from shared.provenance_cli import pinned_config_hashes

    every = {f"{paper}/{key}": r for paper, records in pinned_records(root).items() for key, r in records.items()}
    return next(iter(pinned_config_hashes(every)), None)


def overwrite_problem(config: dict[str, Any], root: Path, writes_reports: bool) -> str | None:
    """Why this run must not start (it would overwrite pins made with another config), or None."""
    from shared.config import config_hash

    if not writes_reports or os.environ.get(OVERRIDE) == "1":
        return None
    pinned = pins_config_hash(root)
    if pinned is None or pinned == config_hash(config):
        return None
    return (
        f"This run would overwrite the pinned results in reports/, which were made with another config "
        f"(config sha256 {pinned[:12]}…, this run's {config_hash(config)[:12]}…). Run this config in a copy of "
        f"the checkout (`git worktree add ../run-tiny` then run there), or set {OVERRIDE}=1 if overwriting is meant."
    )


def compare_with_pins(pins: dict[str, dict[str, ResultRecord]], root: Path = REPO_ROOT) -> tuple[int, list[dict[str, Any]]]:
    """(how many pinned results the records now in reports/ reproduce within each paper's
    tolerance, the rows of those that do not: moved or missing)."""
    from shared.paper_meta import load_paper
    from shared.provenance_cli import compare_results, record_files

    ok, bad = 0, []
    for paper, pinned in sorted(pins.items()):
        fresh = record_files(root / "reports" / paper)
        rows = compare_results(load_paper(root / "papers" / paper), pinned, fresh)
        for row in rows:
            if row["key"] not in pinned:
                continue  # a new result, not a pinned one
            if row["moved"]:
                bad.append({"paper": paper, **row})
            else:
                ok += 1
    return ok, bad
