"""Read and validate ``papers/<id>/paper.yaml`` (the paper contract)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from shared import REPO_ROOT

PAPERS_DIR = REPO_ROOT / "papers"
PAPER_SCHEMA = Path(__file__).with_name("paper_schema.yaml")
CONTRACT_FILES = ("paper.yaml", "method.py", "README.md")
"""Every paper has these; rules.smk (paper-specific rules) and figures.py (its steps) are optional."""
DATASET_ROLES = ("classification", "pairs", "retrieval")
"""The benchmark's dataset roles: ``{classification}``, ``{pairs}``, ``{retrieval}`` in a result key."""
PUBLISHED_KEY = re.compile(r"^\{(" + "|".join(DATASET_ROLES) + r")\}/[^/{}]+/[^/{}]+/[^/{}]+$")


class PaperError(ValueError):
    """A malformed paper directory; the message names the file and the field."""


def paper_dirs(papers_dir: Path | None = None, include_template: bool = False) -> list[Path]:
    """The paper directories (those with a paper.yaml), sorted by id."""
    papers_dir = Path(papers_dir or PAPERS_DIR)
    return [
        p.parent
        for p in sorted(papers_dir.glob("*/paper.yaml"))
        if include_template or not p.parent.name.startswith("_")
    ]


def load_paper(paper_dir: Path) -> dict[str, Any]:
    """Load and validate one paper.yaml; raise :class:`PaperError` naming the offending field."""
    path = Path(paper_dir) / "paper.yaml"
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PaperError(f"{path}: missing (every paper directory needs a paper.yaml)") from None
    except yaml.YAMLError as exc:
        raise PaperError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise PaperError(f"{path}: must be a mapping of fields, got {type(doc).__name__}")
    schema = yaml.safe_load(PAPER_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        field = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        raise PaperError(f"{path}: field {field}: {e.message}")
    for claim in doc.get("claims", []):
        if not isinstance(claim["rhs"], str) and "threshold" not in claim:
            raise PaperError(
                f"{path}: claim {claim['id']}: rhs is the number {claim['rhs']}; say whose threshold it is "
                f"(threshold: \"paper: <quote>\" or \"ours: <why>\")"
            )
    _check_published(path, doc.get("published", []))
    if not Path(paper_dir).name.startswith("_") and doc["id"] != Path(paper_dir).name:
        raise PaperError(f"{path}: field id: {doc['id']!r} does not match the directory name {Path(paper_dir).name!r}")
    missing = [f for f in CONTRACT_FILES if not (Path(paper_dir) / f).exists()]
    if missing:
        raise PaperError(f"{paper_dir}: missing {', '.join(missing)} (the paper contract needs {', '.join(CONTRACT_FILES)})")
    return doc


def _check_published(path: Path, entries: list[dict[str, Any]]) -> None:
    """What the schema cannot say about ``published:`` entries: unique ids, and an ``ours`` key
    that names a dataset role (the setting's dataset is what that role resolves to)."""
    seen: set[str] = set()
    for entry in entries:
        if entry["id"] in seen:
            raise PaperError(f"{path}: published entry {entry['id']}: the id is used twice (ids name the comparison and seed its bootstrap)")
        seen.add(entry["id"])
        if not PUBLISHED_KEY.match(entry["ours"]):
            raise PaperError(
                f"{path}: published entry {entry['id']}: ours = {entry['ours']!r} is not a result key "
                f"{{role}}/model/method/metric with a dataset role ({', '.join('{' + r + '}' for r in DATASET_ROLES)}), "
                f"e.g. '{{classification}}/plaincnn/gradcam/average_drop'"
            )
