"""What the papers export, read from their paper.yaml files (no imports of paper code).

The workflow uses this at parse time to know which methods apply to which models, without
importing torch or any paper's method.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.paper_meta import load_paper, paper_dirs


def method_table(papers_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """method name → {"paper", "class", "kinds", "tasks", "archs", "leaderboard"}."""
    table: dict[str, dict[str, Any]] = {}
    for d in paper_dirs(papers_dir):
        doc = load_paper(d)
        for m in doc.get("methods", []):
            if m["name"] in table:
                raise ValueError(
                    f"method {m['name']!r} is exported by both {table[m['name']]['paper']} and {doc['id']}; "
                    f"method names must be unique across papers"
                )
            table[m["name"]] = {
                "paper": doc["id"],
                "class": m["class"],
                "kinds": list(m.get("kinds", ["cnn", "vit"])),
                "tasks": list(m.get("tasks", ["classifier", "embedding"])),
                "archs": list(m["archs"]) if m.get("archs") else None,
                "leaderboard": bool(m.get("leaderboard", True)),
            }
    return table
