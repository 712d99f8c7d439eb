# Helpers shared by every rules file. Papers register their final outputs in PAPER_TARGETS.
import json
import shlex

from shared.config import validate_paper_sections

validate_paper_sections(config)

PAPER_TARGETS: dict[str, list[str]] = {}
"""paper id -> the files its target rule makes (figures, tables, results, claims)."""

SHARED_TARGETS: list[str] = []
"""Files rule `all` makes besides the papers' (dataset figures, model report, leaderboard)."""


def cfg_json(obj) -> str:
    """A config fragment as a shell-quoted JSON argument (stable key order)."""
    return shlex.quote(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def runtime_cfg() -> dict:
    """The top-level run-time settings every step applies (shared.runtime.setup)."""
    return {k: config[k] for k in ("seed", "device", "threads", "deterministic")}


def all_targets() -> list[str]:
    targets = list(SHARED_TARGETS)
    for files in PAPER_TARGETS.values():
        targets.extend(files)
    return targets


def results_cfg() -> str:
    """Settings of the aggregation steps: run-time, eval, and the whole config's hash (provenance)."""
    from shared.config import config_hash

    return cfg_json({**runtime_cfg(), "eval": config["eval"], "config_sha256": config_hash(config)})
