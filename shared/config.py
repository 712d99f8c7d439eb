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


def _where(error: jsonschema.ValidationError, base: str = "") -> str:
    path = ".".join([base, *map(str, error.absolute_path)] if base else map(str, error.absolute_path))
    return path or "<top level>"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_error(error: jsonschema.ValidationError, base: str = "") -> str:
    """One readable line: where the problem is and what it is (never the schema, nor a whole
    section: jsonschema's own messages quote the offending value, however big). ``base``: the
    key the validated object sits at (``papers.<id>``)."""
    where = _where(error, base)
    if error.validator == "additionalProperties":
        allowed = sorted((error.schema.get("properties") or {}).keys())
        hint = f" (allowed keys: {', '.join(allowed)})" if allowed else ""
        return f"{where}: {error.message}{hint}"
    if error.validator in ("anyOf", "oneOf"):
        forms = [", ".join(alt.get("required", [])) for alt in error.validator_value]
        if all(forms):
            return f"{where}: needs one of: {'; '.join(forms)}"
        return f"{where}: {_short(error.instance)} matches none of the allowed forms"
    if error.validator == "type":
        return f"{where}: {_short(error.instance)} is not of type {error.validator_value!r}"
    if error.validator == "enum":
        return f"{where}: {_short(error.instance)} is not one of {', '.join(map(repr, error.validator_value))}"
    message = error.message
    return f"{where}: {message if len(message) <= 200 else message[:199] + '…'}"


def _config_error(source: str, against: str, errors: list[jsonschema.ValidationError], base: str = "") -> ConfigError:
    """One or two lines: the first problem (key, file, allowed keys), then where any others are."""
    first = f"{source}: {describe_error(errors[0], base)} [{against}]"
    if len(errors) == 1:
        return ConfigError(first)
    others = "; ".join(_where(e, base) + ": " + (e.message if len(e.message) <= 70 else e.message[:69] + "…") for e in errors[1:4])
    more = f"; and {len(errors) - 4} more" if len(errors) > 4 else ""
    return ConfigError(f"{first}\n  also: {others}{more}")


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate ``config`` against ``config/schema.yaml`` and the papers' own schemas."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise _config_error(source, "config/schema.yaml", errors)
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
        if section is None:
            continue  # `papers: {<id>: }`, an empty section
        if not isinstance(section, dict):
            raise ConfigError(f"{source}: papers.{paper_id} must be a mapping of keys, got {_short(section)}")
        schema = load_paper(known[paper_id]).get("config_schema")
        if not schema:
            if section:
                raise ConfigError(
                    f"{source}: papers.{paper_id}: {', '.join(map(repr, section))} unexpected: paper {paper_id!r} "
                    f"takes no settings (its paper.yaml declares no config_schema)"
                )
            continue
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(section), key=lambda e: list(e.absolute_path))
        if errors:
            raise _config_error(source, f"papers/{paper_id}/paper.yaml config_schema", errors, base=f"papers.{paper_id}")


def paper_settings(config: dict[str, Any], paper_id: str) -> dict[str, Any]:
    """Paper ``paper_id``'s settings: its ``papers.<id>`` config section over the ``default`` of
    every top-level property of its paper.yaml ``config_schema`` (what its steps read as
    ``StepContext.settings``). The section itself is checked by :func:`validate_paper_sections`."""
    from shared.paper_meta import PAPERS_DIR, load_paper

    schema = load_paper(PAPERS_DIR / paper_id).get("config_schema") or {}
    defaults = {k: v["default"] for k, v in (schema.get("properties") or {}).items() if isinstance(v, dict) and "default" in v}
    return deep_merge(defaults, (config.get("papers") or {}).get(paper_id) or {})


def workflow_config(path: str | Path = DEFAULT_CONFIG, schema: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """The config as the workflow's rules see it: :func:`load_config` (``path`` merged over
    config/default.yaml, validated), then the schema's defaults filled in, as the Snakefile's
    ``validate(config, "config/schema.yaml")`` does (Snakemake's own function, so the two agree)."""
    from snakemake.utils import validate

    config = load_config(path)
    validate(config, str(Path(schema).resolve()), set_default=True)
    return config


def workflow_config_hash(path: str | Path = DEFAULT_CONFIG, schema: str | Path = SCHEMA_PATH) -> str:
    """The ``config_sha256`` that result records made with ``path`` carry (rules/common.smk,
    ``results_cfg``: :func:`config_hash` of the workflow's whole config)."""
    return config_hash(workflow_config(path, schema))
