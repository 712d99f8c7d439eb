"""Load and validate workflow configs outside Snakemake (CLI, tests, notebooks).

Snakemake validates ``config/schema.yaml`` itself; this module gives the same checks to every
other entry point, with messages that name the offending key and the file it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

from shared import REPO_ROOT
from shared.results import config_hash as config_hash  # re-exported: rules/common.smk and the tests import it from here

SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"
DEFAULT_CONFIG = REPO_ROOT / "config" / "default.yaml"


class ConfigError(ValueError):
    """A config that does not match its schema; the message names the key."""


def _where(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "<top level>"


def describe_error(error: jsonschema.ValidationError) -> str:
    """One readable line: where the problem is and what it is."""
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        hint = f" (allowed keys: {', '.join(allowed)})" if allowed else ""
        return f"{_where(error)}: {error.message}{hint}"
    return f"{_where(error)}: {error.message}"


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate ``config`` against ``config/schema.yaml`` and the papers' own schemas."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = "\n  ".join(describe_error(e) for e in errors)
        raise ConfigError(f"{source} does not match config/schema.yaml:\n  {lines}")
    validate_paper_sections(config, source)
    return config


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` merged into a copy of ``base``, key by key (Snakemake's --configfile semantics)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path = DEFAULT_CONFIG) -> dict[str, Any]:
    """Read a YAML config and validate it, as the workflow would see it.

    Like ``snakemake --configfile path``, any other file is merged over config/default.yaml.
    """
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a mapping of keys, got {type(config).__name__}")
    if path.resolve() != DEFAULT_CONFIG.resolve():
        config = deep_merge(yaml.safe_load(DEFAULT_CONFIG.read_text()), config)
    return validate_config(config, str(path))


def validate_paper_sections(config: dict[str, Any], source: str = "config") -> None:
    """Check each ``papers.<id>`` section against the ``config_schema`` in its paper.yaml."""
    from shared.paper_meta import load_paper, paper_dirs

    sections = config.get("papers") or {}
    known = {d.name: d for d in paper_dirs()}
    for paper_id, section in sections.items():
        if paper_id not in known:
            raise ConfigError(
                f"{source}: papers.{paper_id}: there is no paper {paper_id!r} "
                f"(papers: {', '.join(sorted(known)) or 'none'})"
            )
        schema = load_paper(known[paper_id]).get("config_schema")
        if not schema:
            continue
        for error in jsonschema.Draft202012Validator(schema).iter_errors(section):
            raise ConfigError(f"{source}: papers.{paper_id}.{describe_error(error)}")

