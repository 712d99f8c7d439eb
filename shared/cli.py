"""The ``repro`` command line: list papers, run the workflow, compare methods across papers,
verify and cite pinned results, share data through DVC, and benchmark."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from shared import REPO_ROOT
from shared.registry_meta import paper_registrations
from shared.paper_meta import PAPERS_DIR, PaperError, load_paper, paper_dirs


def project_root() -> Path:
    """The saliency-repro checkout the command is run in (the nearest parent of the current
    directory with a Snakefile and papers/), else the one this package was installed from."""
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "Snakefile").is_file() and (d / "papers").is_dir():
            return d
    return REPO_ROOT


def cmd_list(args: argparse.Namespace) -> int:
    """Every paper: id, title, year, methods, status."""
    rows, problems = [], []
    for d in paper_dirs(Path(args.papers_dir), include_template=args.template):
        try:
            doc = load_paper(d)
            # the methods it lists must be what its method.py registers (read from the decorators)
            paper_registrations(d, doc)
        except PaperError as exc:
            problems.append(str(exc))
            continue
        names = list(doc.get("methods", []))
        methods = ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:3])} +{len(names) - 3} more"
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


def _cores_and_profile(args: argparse.Namespace) -> list[str]:
    """snakemake's --cores (every core unless given) and, with --profile, --workflow-profile: a
    profile of this repository (profiles/slurm) then replaces profiles/default instead of being
    overridden by it. A cluster profile sets its own job limits: --cores is then passed only if given."""
    if not args.profile:
        return ["--cores", str(args.cores or os.cpu_count() or 1)]
    profile = Path(args.profile)
    return ["--workflow-profile", str(profile.resolve()) if profile.exists() else args.profile] + (
        ["--cores", str(args.cores)] if args.cores else []
    )


def cmd_run(args: argparse.Namespace) -> int:
    """Run the Snakemake workflow (all papers, or the given targets)."""
    cmd = [_snakemake(), *_cores_and_profile(args)]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    if args.dry_run:
        cmd.append("--dry-run")
    cmd += list(args.targets)
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=project_root())


def cmd_report(args: argparse.Namespace) -> int:
    """Snakemake's HTML report: every figure by paper, with captions; leaderboard; claims."""
    cmd = [_snakemake(), "--report", args.out]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=project_root())


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the speed benchmarks; figures go to reports/bench.json."""
    import importlib

    from shared.bench import run_benchmarks

    # papers register their benchmarks in papers/<id>/bench.py; import them by path
    for d in paper_dirs():
        if (d / "bench.py").exists():
            importlib.import_module(f"papers.{d.name}.bench")
    run_benchmarks(names=args.names or None, out=args.out, quick=args.quick)
    return 0


def cmd_cite(args: argparse.Namespace) -> int:
    """The paper's BibTeX and a citation of a pinned result with its provenance."""
    from shared.provenance_cli import cite

    try:
        print(cite(args.paper, args.result, project_root() / "papers"))
    except (KeyError, FileNotFoundError, PaperError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Recompute papers and compare with their pinned results within tolerance."""
    from shared.provenance_cli import verify

    root = project_root()
    papers = args.papers or [d.name for d in paper_dirs(root / "papers") if (root / "reports" / d.name / "results.json").exists()]
    worst = 0
    for paper in papers:
        cores = args.cores or (None if args.profile else os.cpu_count() or 1)
        code, report = verify(paper, args.configfile, cores, project_root(), profile=args.profile)
        print(report, flush=True)
        worst = max(worst, code)
    return worst


def cmd_publish(args: argparse.Namespace) -> int:
    from shared.provenance_cli import publish

    return publish(project_root())


def cmd_pull(args: argparse.Namespace) -> int:
    from shared.provenance_cli import pull

    return pull(args.configfile, project_root())


def cmd_diff(args: argparse.Namespace) -> int:
    """Methods from any papers on one model: snakemake makes their maps and scores, then we compare."""
    if len(args.methods) < 2:
        print("error: give at least two methods to compare", file=sys.stderr)
        return 2
    stem = "+".join(args.methods)
    target = f"reports/diff/{args.model}/{stem}.md"
    cmd = [_snakemake(), "--cores", str(args.cores), target]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    if args.metrics:
        # other metrics than the rule's defaults: make the inputs with snakemake, compare here
        inputs = [f"data/{kind}/{args.model}/{m}.{ext}" for m in args.methods for kind, ext in (("scores", "json"), ("maps", "safetensors"))]
        cmd = [_snakemake(), "--cores", str(args.cores), *inputs] + (["--configfile", args.configfile] if args.configfile else [])
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=project_root())
    if rc:
        return rc
    if args.metrics:
        import json as _json

        from shared.config import load_config
        from shared.pipeline import diff

        cfg = load_config(args.configfile or REPO_ROOT / "config" / "default.yaml")
        rc = diff.main(
            ["--model", args.model, "--methods", *args.methods,
             "--scores", *[f"data/scores/{args.model}/{m}.json" for m in args.methods],
             "--maps", *[f"data/maps/{args.model}/{m}.safetensors" for m in args.methods],
             "--metrics", args.metrics, "--out", target,
             "--config-json", _json.dumps({"seed": cfg["seed"], "eval": cfg["eval"]})]
        )
    print((project_root() / target).read_text())
    return rc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list every paper with its methods and status")
    p.add_argument("--papers-dir", default=str(PAPERS_DIR), help="directory holding papers/<id>/paper.yaml")
    p.add_argument("--template", action="store_true", help="also show papers/_template")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", help="run the workflow (snakemake) for all papers or the given targets")
    p.add_argument("targets", nargs="*", help="paper ids or files (default: everything)")
    p.add_argument("-c", "--cores", help="default: every core (with --profile: the profile's own limits)")
    p.add_argument("--configfile", help="e.g. config/tiny.yaml or config/paper-scale.yaml")
    p.add_argument("--profile", help="a workflow profile, e.g. profiles/slurm (README: Running on a cluster); passed as snakemake --workflow-profile")
    p.add_argument("-n", "--dry-run", action="store_true")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("diff", help="compare methods from any papers on one model (table, paired tests, agreement, plot)")
    p.add_argument("methods", nargs="+")
    p.add_argument("--model", default="resnet")
    p.add_argument("--metrics", help="comma-separated metrics (default: the common ones)")
    p.add_argument("-c", "--cores", default=os.cpu_count() or 1)
    p.add_argument("--configfile")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("verify", help="recompute papers and compare with their pinned results")
    p.add_argument("papers", nargs="*", help="paper ids (default: every paper with pinned results)")
    p.add_argument("-c", "--cores", help="default: every core (with --profile: the profile's own limits)")
    p.add_argument("--configfile")
    p.add_argument("--profile", help="a workflow profile, e.g. profiles/slurm (README: Running on a cluster); passed as snakemake --workflow-profile")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("cite", help="BibTeX of a paper and a citation of a pinned result with its provenance")
    p.add_argument("paper")
    p.add_argument("--result", help="result key dataset/model/method/metric (see reports/<paper>/results.json)")
    p.set_defaults(func=cmd_cite)

    p = sub.add_parser("publish", help="dvc add data + dvc push to the default remote")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("pull", help="dvc pull, then mark the pulled outputs up to date for snakemake")
    p.add_argument("--configfile")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("report", help="the HTML report (snakemake --report) with every figure by paper")
    p.add_argument("--out", default="reports/report.html")
    p.add_argument("--configfile")
    p.set_defaults(func=cmd_report)

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
