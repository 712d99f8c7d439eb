"""The ``repro`` command line: list papers, run the workflow, benchmark, and (as they land) diff,
verify, cite, publish and pull."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.paper_meta import PAPERS_DIR, REPO_ROOT, PaperError, load_paper, paper_dirs


def cmd_list(args: argparse.Namespace) -> int:
    """Every paper: id, title, year, methods, status."""
    rows, problems = [], []
    for d in paper_dirs(Path(args.papers_dir), include_template=args.template):
        try:
            doc = load_paper(d)
        except PaperError as exc:
            problems.append(str(exc))
            continue
        methods = ", ".join(m["name"] for m in doc.get("methods", []))
        rows.append((doc["id"], doc["title"], str(doc["year"]), methods, doc["status"]))
    if rows:
        header = ("id", "title", "year", "methods", "status")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        widths[1] = min(widths[1], 60)
        for r in [header, *rows]:
            cells = [c if len(c) <= w else c[: w - 1] + "…" for c, w in zip(r, widths)]
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    elif not problems:
        print(f"no papers in {args.papers_dir}")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


def _snakemake() -> str:
    exe = shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    return exe


def cmd_run(args: argparse.Namespace) -> int:
    """Run the Snakemake workflow (all papers, or the given targets)."""
    cmd = [_snakemake(), "--cores", str(args.cores)]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    if args.dry_run:
        cmd.append("--dry-run")
    cmd += list(args.targets)
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO_ROOT)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the speed benchmarks; figures go to reports/bench.json."""
    from shared.bench import run_benchmarks

    run_benchmarks(names=args.names or None, out=args.out, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list every paper with its methods and status")
    p.add_argument("--papers-dir", default=str(PAPERS_DIR), help="directory holding papers/<id>/paper.yaml")
    p.add_argument("--template", action="store_true", help="also show papers/_template")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run the workflow (snakemake) for all papers or the given targets")
    p.add_argument("targets", nargs="*", help="paper ids or files (default: everything)")
    p.add_argument("-c", "--cores", default=os.cpu_count() or 1)
    p.add_argument("--configfile", help="e.g. config/tiny.yaml or config/paper-scale.yaml")
    p.add_argument("-n", "--dry-run", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bench", help="run the speed benchmarks and write reports/bench.json")
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    p.add_argument("--out", default=str(REPO_ROOT / "reports" / "bench.json"))
    p.add_argument("--quick", action="store_true", help="fewer repeats, small sizes (for tests)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
