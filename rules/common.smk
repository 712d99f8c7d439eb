# Helpers shared by every rules file. Papers register their final outputs in PAPER_TARGETS.
import json
import re
import shlex
from pathlib import Path

from shared.config import validate_paper_sections
from shared.paper_plan import model_dataset

validate_paper_sections(config)

PAPER_TARGETS: dict[str, list[str]] = {}
"""paper id -> the files its target rule makes (figures, tables, results, claims)."""

PAPER_RULES: dict[str, set[str]] = {}
"""paper id -> names of the rules generated for it (rules/papers.smk); `repro verify` scopes by it."""

SHARED_TARGETS: list[str] = []
"""Files rule `all` makes besides the papers' (dataset figures, model report, leaderboard)."""


def cfg_json(obj) -> str:
    """A config fragment as a shell-quoted JSON argument (stable key order)."""
    return shlex.quote(json.dumps(obj, sort_keys=True, separators=(",", ":")))


def runtime_cfg() -> dict:
    """The top-level run-time settings every step applies (shared.runtime.setup)."""
    return {k: config[k] for k in ("seed", "device", "threads", "deterministic")}


def model_dataset_dir(model: str) -> str:
    """data/datasets/<the model's own dataset>: a model is explained only on its own dataset."""
    return model_dataset(model, config)


def all_targets() -> list[str]:
    targets = list(SHARED_TARGETS)
    for files in PAPER_TARGETS.values():
        targets.extend(files)
    return targets


def results_cfg() -> str:
    """Settings of the aggregation steps: run-time, eval, and the whole config's hash (provenance)."""
    from shared.config import config_hash

    return cfg_json({**runtime_cfg(), "eval": config["eval"], "config_sha256": config_hash(config)})


def paper_step_cfg(paper: str) -> str:
    """A paper step's settings: :func:`results_cfg` plus the paper's own (``paper``: its
    ``papers.<id>`` section over its config_schema defaults, ``shared.config.paper_settings``)."""
    from shared.config import config_hash, paper_settings

    return cfg_json({**runtime_cfg(), "eval": config["eval"], "config_sha256": config_hash(config), "paper": paper_settings(config, paper)})


def _captions() -> dict[str, tuple[str, str]]:
    """reports path -> (paper id, caption) for every figure and table a paper.yaml declares."""
    from shared.paper_meta import load_paper, paper_dirs

    found = {}
    for d in paper_dirs():
        doc = load_paper(d)
        for item in [*doc.get("figures", []), *doc.get("tables", [])]:
            ref = f" (paper: {item['paper_ref']})" if item.get("paper_ref") else ""
            found[item["file"]] = (doc["id"], f"{doc['title']}{ref}. {item['caption']}")
        found[f"reports/{doc['id']}/claims.md"] = (
            doc["id"],
            f"{doc['title']}: each claim of the paper that the benchmark can test, judged against our numbers "
            "with its source quote and a paired test on the same images (difference, 95 % CI, n, Holm over the "
            "paper's claims): reproduced, inconclusive, not reproduced, or not evaluable (with the reason).",
        )
    return found


CAPTIONS = _captions()
CAPTION_DIR = Path(".snakemake/captions").resolve()


def in_report(path: str, category: str | None = None, caption: str | None = None):
    """Flag an output for the HTML report (`snakemake --report reports/report.html`).

    The caption comes from the paper.yaml entry whose ``file`` is ``path`` (what the paper's
    figure was, what we see); the category is the paper id. A ``path`` with wildcards
    (``reports/gradcampp/{table}.md``) gets every matching entry's caption, chosen per job by a
    Jinja condition on ``snakemake.wildcards`` (Snakemake renders captions with Jinja).
    """
    if "{" in path and caption is None:
        paper, text = _pattern_caption(path, category)
    else:
        paper, text = CAPTIONS.get(path, (category or "other", caption or Path(path).stem.replace("_", " ")))
        text = _rst(caption or text)
    CAPTION_DIR.mkdir(parents=True, exist_ok=True)
    cap = CAPTION_DIR / (re.sub(r"[^A-Za-z0-9_.-]", "_", path.replace("/", "__")) + ".rst")
    body = text + "\n"
    if not cap.exists() or cap.read_text() != body:
        cap.write_text(body)
    return report(path, caption=str(cap), category=category or paper)


def _rst(text: str) -> str:
    return text.replace("*", "\\*")


def _pattern_caption(pattern: str, category: str | None) -> tuple[str, str]:
    """(paper, Jinja caption) for an output pattern: one branch per paper.yaml file it matches."""
    names = re.findall(r"{(\w+)}", pattern)
    regex = re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(pattern)) + "$")
    branches, paper = [], category or "other"
    for file, (owner, text) in sorted(CAPTIONS.items()):
        m = regex.match(file)
        if m:
            paper = category or owner
            cond = " and ".join(f"snakemake.wildcards.{n} == {m.group(n)!r}" for n in names)
            branches.append((cond, _rst(text)))
    if not branches:
        return paper, Path(pattern).stem.replace("_", " ")
    body = "".join(f"{{% {'if' if i == 0 else 'elif'} {cond} %}}{text}" for i, (cond, text) in enumerate(branches))
    return paper, body + "{% endif %}"


