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
from shared.config import ConfigError, load_config
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


def _config(configfile: str | None, root: Path) -> dict:
    """The workflow's config (``configfile`` merged over config/default.yaml), validated before
    any work: a bad key stops the command with one or two lines (:class:`ConfigError`) instead of
    Snakemake's dump of the whole schema. A relative path is the current directory's, else the
    checkout's (where snakemake runs)."""
    if not configfile:
        return load_config(root / "config" / "default.yaml")
    path = Path(configfile)
    return load_config(path if path.exists() or path.is_absolute() else root / path)


def run_command(args: argparse.Namespace) -> list[str]:
    """The snakemake command line of `repro run`. The targets come after ``--``: options taking
    any number of values (--configfile, a profile's --rerun-triggers) would swallow them."""
    cmd = [_snakemake(), *_cores_and_profile(args)]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    if args.dry_run:
        cmd.append("--dry-run")
    if args.rerun_incomplete:
        cmd.append("--rerun-incomplete")
    if args.targets:
        cmd += ["--", *args.targets]
    return cmd


def cmd_run(args: argparse.Namespace) -> int:
    """Run the Snakemake workflow (all papers, or the given targets)."""
    root = project_root()
    _config(args.configfile, root)
    if not (root / "data" / "models").is_dir() and (root / "reports").is_dir() and not args.dry_run:
        # a fresh clone: the committed reports/ look up to date, so snakemake alone recomputes little
        print(
            "note: data/ holds no models, so the committed reports/ look up to date and this run recomputes little; "
            "`repro reproduce [papers]` rebuilds them and checks every pinned number",
            flush=True,
        )
    cmd = run_command(args)
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=root)


def reproduce_command(args: argparse.Namespace, root: Path) -> tuple[list[str], str]:
    """The snakemake command of `repro reproduce` and why: everything from scratch when this
    checkout has no data/ (the committed reports/ would otherwise look up to date and nothing
    would be recomputed), else what is out of date."""
    cmd = [_snakemake(), *_cores_and_profile(args)]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    if args.rerun_incomplete:
        cmd.append("--rerun-incomplete")
    targets = ["--", *args.papers] if args.papers else []
    if args.rebuild or not (root / "data" / "models").is_dir():
        why = "data/ holds no models" if not args.rebuild else "--rebuild"
        return [*cmd, "--forceall", *targets], f"{why}: rebuilding everything (datasets, models, maps, scores, reports)"
    return [*cmd, *targets], "data/ exists: recomputing what is out of date (--rebuild recomputes everything)"


def _pull_instead(args: argparse.Namespace, root: Path, papers: list[str]) -> tuple[list[str], str] | None:
    """When a DVC remote this machine can reach holds data/: pull it and recompute every paper's
    results from the pulled per-image scores (minutes less than rebuilding). None: rebuild."""
    from shared.provenance_cli import default_remote, pull, remote_problem

    remote = default_remote(root)
    if remote is None or not (root / "data.dvc").exists():
        return None
    problem = remote_problem(root)
    if problem:
        print(f"not pulling data/ ({problem}); rebuilding it", flush=True)
        return None
    print(f"data/ holds no models: pulling it from the DVC remote {remote[0]!r} ({remote[1]}) instead of rebuilding (--rebuild recomputes everything)", flush=True)
    if pull(args.configfile, root) != 0:
        print("the pull failed; rebuilding instead", flush=True)
        return None
    cmd = [_snakemake(), *_cores_and_profile(args)] + (["--configfile", args.configfile] if args.configfile else [])
    targets = ["--", *args.papers] if args.papers else []
    return [*cmd, "--forcerun", *[f"{p}_results" for p in papers], *targets], "data/ pulled: every paper's results recomputed from the pulled per-image scores"


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Rerun the workflow and check every pinned number in reports/ against what it recomputed."""
    from shared.pins import compare_with_pins, pinned_records, pins_config_hash
    from shared.provenance_cli import config_label, used_config_hash

    root = project_root()
    _config(args.configfile, root)
    pins = pinned_records(root)  # read before the run rewrites reports/
    unknown = sorted(set(args.papers) - set(pins))
    if unknown:
        print(f"error: no pinned results for {', '.join(unknown)}; papers with pins: {', '.join(sorted(pins))}", file=sys.stderr)
        return 2
    if args.papers:
        pins = {p: pins[p] for p in args.papers}
    n = sum(len(p) for p in pins.values())
    if not n:
        print("error: no pinned results in reports/ to reproduce; `repro run` makes them", file=sys.stderr)
        return 2
    pinned_hash, used_hash = pins_config_hash(root), used_config_hash(args.configfile, root)
    if pinned_hash and used_hash and pinned_hash != used_hash:
        print(
            f"error: the pinned results were made with config sha256 {pinned_hash[:12]}…, not {config_label(args.configfile)} "
            f"({used_hash[:12]}…): reproduce with the pins' config (see `repro cite <paper> --result <key>`)",
            file=sys.stderr,
        )
        return 2
    cmd, why = reproduce_command(args, root)
    if "--forceall" in cmd and not args.rebuild:
        pulled = _pull_instead(args, root, sorted(pins))
        if pulled is not None:
            cmd, why = pulled
    print(f"reproducing {n} pinned results of {len(pins)} papers; {why}", flush=True)
    print("+", " ".join(cmd), flush=True)
    code = subprocess.call(cmd, cwd=root)
    if code != 0:
        print(f"the workflow failed (exit {code}); nothing was checked. Resume with `repro reproduce --rerun-incomplete`", file=sys.stderr)
        return code
    ok, bad = compare_with_pins(pins, root)
    for row in bad:
        got = "not recomputed" if row.get("fresh") is None else f"{row['fresh']:.6g}"
        print(f"MOVED {row['paper']}: {row['key']}: pinned {row['pinned']:.6g}, now {got} (tolerance {row['tolerance']:g})")
    print(f"{ok} of {n} pinned results reproduced within tolerance ({config_label(args.configfile)}).")
    return 0 if ok == n else 1


def cmd_report(args: argparse.Namespace) -> int:
    """Snakemake's HTML report: every figure by paper, with captions; leaderboard; claims."""
    _config(args.configfile, project_root())
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
    """The paper's BibTeX and a citation of a pinned result with its provenance; a warning when
    the data.dvc it was computed under is not the checkout's."""
    from shared.provenance_cli import cite, cited_record, data_snapshot_warning

    root = project_root()
    try:
        print(cite(args.paper, args.result, root / "papers"))
        warning = data_snapshot_warning(cited_record(args.paper, args.result, root / "papers"), args.paper, root) if args.result else None
    except (KeyError, FileNotFoundError, PaperError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    if warning:
        print(warning, file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Recompute papers and compare with their pinned results within tolerance."""
    from shared.provenance_cli import verifiable_error, verify

    root = project_root()
    _config(args.configfile, root)
    papers = args.papers or [d.name for d in paper_dirs(root / "papers") if (root / "reports" / d.name / "results.json").exists()]
    if not papers:
        print("error: no paper has pinned results (reports/<id>/results.json); make them with `repro run <id>`", file=sys.stderr)
        return 2
    for paper in papers:  # every name checked before any recomputation
        problem = verifiable_error(paper, root)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    worst = 0
    for paper in papers:
        cores = args.cores or (None if args.profile else os.cpu_count() or 1)
        code, report = verify(paper, args.configfile, cores, root, profile=args.profile)
        print(report, flush=True)
        worst = max(worst, code)
    return worst


def cmd_publish(args: argparse.Namespace) -> int:
    from shared.provenance_cli import publish

    _config(args.configfile, project_root())
    return publish(project_root(), args.configfile)


def cmd_pull(args: argparse.Namespace) -> int:
    from shared.provenance_cli import pull

    _config(args.configfile, project_root())
    return pull(args.configfile, project_root(), force=args.force)


def diff_error(methods: Sequence[str], model: str, config: dict, configfile: str | None = None) -> str | None:
    """Why `repro diff` cannot compare ``methods`` on ``model`` (one line), before any work is
    planned: an unknown method, an unknown model, or a method that does not explain the model."""
    from shared.paper_plan import method_applies, model_kind, models_for
    from shared.registry_meta import method_info, method_table

    for method in methods:
        try:
            method_info(method)
        except KeyError:
            from shared.models.adapter import nearest_names

            near = nearest_names(method, sorted(method_table()), n=3)
            return f"unknown method {method!r} (nearest: {', '.join(near)}; `repro list` shows every paper's methods)"
    models = config["models"]
    if model not in models:
        where = configfile or "config/default.yaml"
        return f"unknown model {model!r}: {where} configures {', '.join(sorted(models))}"
    for method in methods:
        if not method_applies(method, model, config):
            cfg = models[model]
            fits = models_for(method, config)
            return (
                f"method {method!r} does not apply to model {model!r} ({model_kind(cfg)}, task {cfg['task']}, arch {cfg['arch']}); "
                f"it applies to: {', '.join(fits) if fits else 'no configured model'}"
            )
    return None


def cmd_diff_definitions(args: argparse.Namespace) -> int:
    """`repro diff --definitions`: the same maps ranked under every library's definition of a metric.

    Without methods: the leaderboard job's page for the models of ``eval.definitions.models``
    (every leaderboard method). With methods: their scores on ``--model``, compared here (on a
    model outside ``eval.definitions.models`` only the definitions every pair is scored under)."""
    import json as _json

    cfg = _config(args.configfile, project_root())
    extra = ["--configfile", args.configfile] if args.configfile else []
    if not args.methods:
        wanted = (cfg["eval"].get("definitions") or {}).get("models") or []
        if not wanted:
            print("error: eval.definitions.models is empty in this config: name the models to score under every definition, "
                  "or give methods to compare on --model", file=sys.stderr)
            return 2
        cmd = [_snakemake(), "--cores", str(args.cores), "reports/definitions.md", *extra]
        print("+", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=project_root())
        if rc == 0:
            print((project_root() / "reports/definitions.md").read_text())
        return rc
    if len(args.methods) < 2:
        print("error: give at least two methods to compare (or none: every leaderboard method)", file=sys.stderr)
        return 2
    problem = diff_error(args.methods, args.model, cfg, args.configfile)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    scores = [f"data/scores/{args.model}/{m}.json" for m in args.methods]
    cmd = [_snakemake(), "--cores", str(args.cores), *scores, *extra]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd, cwd=project_root())
    if rc:
        return rc
    from shared.pipeline import definitions

    target = project_root() / "reports" / "diff" / args.model / f"{'+'.join(args.methods)}.definitions.md"
    rc = definitions.main(["--scores", *[str(project_root() / s) for s in scores], "--out", str(target),
                           "--config-json", _json.dumps({"seed": cfg["seed"], "eval": cfg["eval"]})])
    print(target.read_text())
    return rc


def cmd_diff(args: argparse.Namespace) -> int:
    """Methods from any papers on one model: snakemake makes their maps and scores, then we compare."""
    if args.definitions:
        return cmd_diff_definitions(args)
    if len(args.methods) < 2:
        print("error: give at least two methods to compare", file=sys.stderr)
        return 2
    problem = diff_error(args.methods, args.model, _config(args.configfile, project_root()), args.configfile)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
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

        from shared.pipeline import diff

        cfg = _config(args.configfile, project_root())
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
    p.add_argument("--rerun-incomplete", action="store_true", help="redo the outputs an interrupted run left incomplete (snakemake --rerun-incomplete)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("reproduce", help="rerun the workflow (from scratch when data/ is missing) and check every pinned number in reports/")
    p.add_argument("papers", nargs="*", help="paper ids (default: every paper with pins)")
    p.add_argument("-c", "--cores", help="default: every core (with --profile: the profile's own limits)")
    p.add_argument("--configfile", help="the config the pins were made with (default: config/default.yaml)")
    p.add_argument("--profile", help="a workflow profile, e.g. profiles/slurm; passed as snakemake --workflow-profile")
    p.add_argument("--rebuild", action="store_true", help="recompute everything even when data/ exists (snakemake --forceall)")
    p.add_argument("--rerun-incomplete", action="store_true", help="resume an interrupted run (snakemake --rerun-incomplete)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("diff", help="compare methods from any papers on one model (table, paired tests, agreement, plot)")
    p.add_argument("methods", nargs="*")
    p.add_argument("--model", default="resnet")
    p.add_argument("--metrics", help="comma-separated metrics (default: the common ones)")
    p.add_argument(
        "--definitions",
        action="store_true",
        help="rank the methods under every library's definition of each metric (Average Drop, deletion, ...): rank flips, Kendall tau "
        "(no methods: every leaderboard method on the models of eval.definitions.models)",
    )
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

    p = sub.add_parser("publish", help="record the config data/ was made with (data/PUBLISHED.json), dvc add data + dvc push to the default remote")
    p.add_argument("--configfile", help="the config data/ was made with (default: config/default.yaml)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("pull", help="dvc pull, then mark the pulled outputs up to date for snakemake (if they are the config's)")
    p.add_argument("--configfile", help="the config to mark the outputs up to date for; it must be the one data/ was published with")
    p.add_argument("--force", action="store_true", help="mark them up to date even if data/ was published with another config")
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


INTERRUPTED = {
    "run": "interrupted; rerun with --rerun-incomplete to resume",
    "reproduce": "interrupted; resume with `repro reproduce --rerun-incomplete`",
    "verify": "interrupted; its scratch copy is removed: rerun `repro verify` to start again",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(INTERRUPTED.get(args.command, "interrupted; if a workflow step was cut short, resume with `repro run --rerun-incomplete <targets>`"), file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
