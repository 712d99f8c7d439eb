"""The method registry as the workflow sees it: read from the papers' ``@register_method``
decorators without importing any paper (no torch at Snakemake's parse time).

The decorators in ``papers/<id>/method.py`` are the one source of what a method is
(:mod:`shared.explain.registry`); this module parses them with :mod:`ast`. Their keywords are
literals, so parsing gives what importing would; ``tests/explain/test_registry_contract.py``
checks that the two agree for every method.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from shared.paper_meta import PAPERS_DIR, PaperError, load_paper, paper_dirs

KINDS = ("cnn", "vit")
TASKS = ("classifier", "embedding")
BLOCK_VARIANT = re.compile(r"^(?P<base>[a-z][a-z0-9_]*?)_b(?P<block>[1-9][0-9]*)$")
"""``<base>_b<k>``: method ``base`` (registered with blocks=True) at the output of block k."""


def _registrations(method_py: Path) -> list[tuple[str, dict[str, Any]]]:
    """(name, literal keywords) of every ``@register_method(...)`` in one file, in file order."""
    tree = ast.parse(method_py.read_text(), filename=str(method_py))
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for dec in node.decorator_list:
            func = dec.func if isinstance(dec, ast.Call) else None
            fname = getattr(func, "id", None) or getattr(func, "attr", None)
            if fname != "register_method":
                continue
            try:
                name = ast.literal_eval(dec.args[0])
                keywords = {k.arg: ast.literal_eval(k.value) for k in dec.keywords}
            except (ValueError, IndexError, TypeError):
                raise PaperError(
                    f"{method_py}:{dec.lineno}: @register_method needs a literal name and literal keywords "
                    f"(the workflow reads them without importing the module)"
                ) from None
            found.append((name, keywords))
    return sorted(found, key=lambda item: item[0])


def variant_label(name: str, label: str, block: int) -> str:
    """What readers see for block variant ``<name>_b<block>``: its name, unless the base method
    has its own label (then ``"<label>, block <k>"``)."""
    return f"{name}_b{block}" if label == name else f"{label}, block {block}"


def _entry(paper: str, name: str, keywords: dict[str, Any]) -> dict[str, Any]:
    archs = keywords.get("archs")
    return {
        "paper": paper,
        "kinds": list(keywords.get("kinds", KINDS)),
        "tasks": list(keywords.get("tasks", TASKS)),
        "archs": list(archs) if archs is not None else None,
        "leaderboard": bool(keywords.get("leaderboard", True)),
        "blocks": bool(keywords.get("blocks", False)),
        "label": str(keywords.get("label") or name),
    }


def paper_registrations(paper_dir: Path, doc: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The registrations of one paper's method.py, checked against the names its paper.yaml lists."""
    d = Path(paper_dir)
    doc = doc if doc is not None else load_paper(d)
    registered = _registrations(d / "method.py")
    names = [n for n, _ in registered]
    listed = list(doc.get("methods", []))
    if sorted(set(names)) != sorted(set(listed)):
        raise PaperError(
            f"{d / 'paper.yaml'}: field methods lists {sorted(set(listed))} but {d / 'method.py'} registers "
            f"{sorted(set(names))}; list exactly the names its @register_method decorators give"
        )
    return registered


@lru_cache(maxsize=8)
def _table(papers_dir: Path, include_template: bool) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for d in paper_dirs(papers_dir, include_template=include_template):
        doc = load_paper(d)
        for name, keywords in paper_registrations(d, doc):
            if name in table:
                raise PaperError(
                    f"method {name!r} is registered by both {table[name]['paper']} and {doc['id']}; "
                    f"method names must be unique across papers"
                )
            table[name] = _entry(doc["id"], name, keywords)
    return table


def method_table(papers_dir: Path | None = None, include_template: bool = False) -> dict[str, dict[str, Any]]:
    """Registered method name → {"paper", "kinds", "tasks", "archs", "leaderboard", "blocks", "label"}
    (``label``: the name readers see in tables and figures; the registered name unless
    ``@register_method(..., label=...)`` gives one)."""
    return dict(_table(Path(papers_dir or PAPERS_DIR).resolve(), include_template))


def method_info(name: str, papers_dir: Path | None = None) -> dict[str, Any]:
    """What the registry says of ``name``, block variants ``<base>_b<k>`` included."""
    table = method_table(papers_dir)
    if name in table:
        return table[name]
    variant = BLOCK_VARIANT.match(name)
    if variant and variant.group("base") in table and table[variant.group("base")]["blocks"]:
        base, block = table[variant.group("base")], int(variant.group("block"))
        label = variant_label(variant.group("base"), base["label"], block)
        return {**base, "leaderboard": False, "blocks": False, "block": block, "label": label}
    raise KeyError(f"unknown method {name!r}: no paper registers it (every method is listed by `repro list`)")


def method_label(name: str, papers_dir: Path | None = None) -> str:
    """The name readers see for method ``name`` in tables and figures (its registered ``label``);
    a name no paper registers (a baseline computed by a step, a test's record) is shown as is.
    Result keys, file names and JSON records keep the registered name."""
    try:
        return str(method_info(name, papers_dir)["label"])
    except KeyError:
        return name


def applies(info: dict[str, Any], kind: str, task: str, arch: str | None) -> bool:
    """Whether a method (its :func:`method_info`, or a registered spec's fields) explains a model
    of this kind, task and arch. The one rule, at parse time and at run time; an unknown arch
    (None: a model wrapped from outside the zoo) is not restricted, the method's own checks decide."""
    if info["archs"] is not None and arch is not None and arch not in info["archs"]:
        return False
    return kind in info["kinds"] and task in info["tasks"]


@lru_cache(maxsize=256)
def method_year(name: str, papers_dir: Path | None = None) -> int:
    """The publication year of the paper that registers ``name`` (9999 for an unknown name): the
    order in which a method that repeats another's maps names the earlier one."""
    try:
        paper = method_info(name, papers_dir)["paper"]
    except KeyError:
        return 9999
    return int(load_paper(Path(papers_dir or PAPERS_DIR) / paper).get("year") or 9999)
