"""`repro cite`, `repro verify`, `repro publish` and `repro pull`: trust, cite and share results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from shared import REPO_ROOT
from shared.paper_meta import PAPERS_DIR, load_paper
from shared.results import ResultRecord, read_records, result_key


def _pinned_results_path(paper: str, root: Path) -> Path:
    path = root / "reports" / paper / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run `repro run {paper}` first (or pull the pinned results)")
    return path


def pinned_results(paper: str, root: Path = REPO_ROOT) -> dict[str, ResultRecord]:
    return {result_key(r): r for r in read_records(_pinned_results_path(paper, root))}


def record_files(paper_reports: Path) -> dict[str, ResultRecord]:
    """Every result record a paper pins: ``results.json`` (keys dataset/model/method/metric) and
    the figure steps' record files that its claims also read (``sanity.json``, ``pairs.json``,
    ...; keys prefixed with the file name). JSON files that are not record lists are skipped."""
    found: dict[str, ResultRecord] = {}
    for path in sorted(paper_reports.glob("*.json")):
        try:
            records = read_records(path)
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # claims.json, agreement tables: not result records
        prefix = "" if path.name == "results.json" else f"{path.name}: "
        found.update({prefix + result_key(r): r for r in records})
    return found


def software_citation(root: Path = REPO_ROOT) -> str:
    """A BibTeX entry for saliency-repro at the pinned commit (CITATION.cff has the same facts)."""
    import yaml

    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    authors = " and ".join(a.get("name") or f"{a.get('family-names')}, {a.get('given-names')}" for a in cff["authors"])
    return (
        "@software{saliency_repro,\n"
        f"  title = {{{cff['title']}}},\n"
        f"  author = {{{authors}}},\n"
        f"  version = {{{cff['version']}}},\n"
        f"  year = {{{str(cff.get('date-released', '2026'))[:4]}}}"
        + (f",\n  url = {{{cff['repository-code']}}}" if cff.get("repository-code") else "")
        + "\n}"
    )


def cite(paper: str, result: str | None, papers_dir: Path = PAPERS_DIR) -> str:
    """The paper's BibTeX, and a citation of a pinned result with its provenance."""
    doc = load_paper(Path(papers_dir) / paper)
    lines = [f"% {doc['title']} ({doc['venue']} {doc['year']})", doc["bibtex"].strip(), ""]
    if result:
        results = pinned_results(paper, Path(papers_dir).parent)
        if result not in results:
            from shared.models.adapter import nearest_names

            raise KeyError(f"no pinned result {result!r} for {paper}; nearest keys: {', '.join(nearest_names(result, list(results)))}")
        r = results[result]
        p = r.provenance
        ci = f" (95 % CI {r.ci_low:.4g}–{r.ci_high:.4g})" if r.ci_low is not None else ""
        lines += [
            f"% Result {result}: {r.value:.4g}{ci}, n = {r.n} images,",
            f"%   reproduced with saliency-repro at commit {p.git_commit}{' (dirty tree)' if p.git_dirty else ''},",
            f"%   environment uv.lock sha256 {p.uv_lock_sha256},",
            f"%   data data.dvc sha256 {p.data_dvc_sha256},",
            f"%   config sha256 {p.config_sha256}, seed {p.seed}, device {p.device}, torch {p.torch_version}.",
            "",
        ]
    lines.append(software_citation(Path(papers_dir).parent))
    return "\n".join(lines)


def tolerance_for(doc: dict[str, Any], metric: str) -> float:
    tol = doc.get("tolerance") or {}
    return float((tol.get("metrics") or {}).get(metric, tol.get("default", 1e-6)))


def compare_results(doc: dict[str, Any], pinned: dict[str, ResultRecord], fresh: dict[str, ResultRecord]) -> list[dict[str, Any]]:
    """Per pinned key: pinned and recomputed values, the tolerance, and whether it moved."""
    rows = []
    for key in sorted(pinned):
        p = pinned[key]
        tol = tolerance_for(doc, p.metric)
        f = fresh.get(key)
        if f is None:
            rows.append({"key": key, "pinned": p.value, "fresh": None, "tolerance": tol, "moved": True, "why": "not recomputed"})
            continue
        delta = abs(f.value - p.value)
        rows.append({"key": key, "pinned": p.value, "fresh": f.value, "delta": delta, "tolerance": tol, "moved": bool(delta > tol)})
    for key in sorted(set(fresh) - set(pinned)):
        rows.append({"key": key, "pinned": None, "fresh": fresh[key].value, "tolerance": 0.0, "moved": True, "why": "new result, not pinned"})
    return rows


def _scratch_copy(root: Path, under: Path | None = None) -> Path:
    """A scratch copy of the tracked tree, with the datasets and checkpoints linked in (in the
    system's temporary directory, or ``under``)."""
    if under is not None:
        under.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="repro-verify-", dir=under))
    listing = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True, text=True)
    if listing.returncode != 0:
        shutil.rmtree(scratch)
        raise NotADirectoryError(f"{root} is not a git checkout (git ls-files: {listing.stderr.strip()}); repro verify recomputes the checkout's tracked files")
    for rel in listing.stdout.split():
        if rel.startswith("reports/"):  # recomputed, never copied: the pinned ones stay in the repo
            continue
        src = root / rel
        if src.is_file():
            dst = scratch / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (scratch / "data").mkdir(exist_ok=True)
    for sub in ("datasets", "models"):
        if (root / "data" / sub).exists():
            os.symlink(root / "data" / sub, scratch / "data" / sub)
    return scratch


def verify(paper: str, configfile: str | None, cores: int | None, root: Path = REPO_ROOT, profile: str | None = None) -> tuple[int, str]:
    """Recompute a paper from its models and data in a scratch copy; compare every pinned record
    (:func:`record_files`) with its recomputed value, within the paper's tolerances.

    ``profile`` (e.g. ``profiles/slurm``) is passed as snakemake's ``--workflow-profile``; the
    scratch copy is then made in the checkout's ``.snakemake/``, on the filesystem that a
    cluster's compute nodes share (the system's temporary directory is the login node's own).
    ``cores`` may then be None: the profile's own limits."""
    doc = load_paper(root / "papers" / paper)
    pinned = record_files(_pinned_results_path(paper, root).parent)
    try:
        scratch = _scratch_copy(root, under=root / ".snakemake" / "verify" if profile else None)
    except NotADirectoryError as exc:
        return 2, f"verify {paper}: {exc}"
    try:
        # the target comes first: --quiet takes any number of values and would swallow it
        cmd = [str(Path(sys.executable).with_name("snakemake")), paper]
        if cores:
            cmd += ["--cores", str(cores)]
        if profile:
            named = Path(profile) if Path(profile).exists() else root / "profiles" / profile
            cmd += ["--workflow-profile", str(named.resolve())]
        cmd += ["--quiet", "progress"]
        if configfile:
            cmd += ["--configfile", str(Path(configfile).resolve())]
        print(f"verify {paper}: recomputing in {scratch} ({' '.join(cmd[1:])}) ...", file=sys.stderr, flush=True)
        # only the paper's own methods are explained (rules/batch.smk), not every method of its models
        env = {**os.environ, "REPRO_BATCH_SCOPE": paper}
        run = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True, env=env)
        if run.returncode != 0:
            return 2, f"recomputing {paper} failed:\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
        fresh = record_files(scratch / "reports" / paper)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = compare_results(doc, pinned, fresh)
    moved = [r for r in rows if r["moved"]]
    lines = [f"verify {paper}: {len(rows) - len(moved)} of {len(rows)} results within tolerance"]
    for r in moved:
        fresh_s = "—" if r["fresh"] is None else f"{r['fresh']:.6g}"
        pinned_s = "—" if r["pinned"] is None else f"{r['pinned']:.6g}"
        lines.append(f"  MOVED {r['key']}: pinned {pinned_s}, now {fresh_s} (tolerance {r['tolerance']:g}){' — ' + r['why'] if 'why' in r else ''}")
    return (1 if moved else 0), "\n".join(lines)


def _run(cmd: list[str], root: Path) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=root)


def _bin(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).with_name(name))


def snakemake_running(root: Path = REPO_ROOT) -> bool:
    locks = root / ".snakemake" / "locks"
    return locks.exists() and any(locks.iterdir())


def publish(root: Path = REPO_ROOT) -> int:
    """`dvc add data` + `dvc push` to the default remote; never while Snakemake runs (repo lock)."""
    if snakemake_running(root):
        print("error: a Snakemake run holds .snakemake/locks; wait for it (or `snakemake --unlock`) before publishing", file=sys.stderr)
        return 2
    rc = _run([_bin("dvc"), "add", "data"], root) or _run([_bin("dvc"), "push"], root)
    if rc == 0:
        print("published data/ — commit data.dvc so that others can `repro pull` it")
    return rc


def pull(configfile: str | None, root: Path = REPO_ROOT) -> int:
    """`dvc pull`, then mark the pulled outputs up to date for Snakemake (no recomputation)."""
    rc = _run([_bin("dvc"), "pull"], root)
    if rc:
        return rc
    # target first (see verify); progress lines only, not every touched job
    cmd = [_bin("snakemake"), "all", "--touch", "--cores", "1", "--quiet", "host", "reason", "rules"]
    if configfile:
        cmd += ["--configfile", configfile]
    return _run(cmd, root)


def dumps_rows(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, sort_keys=True)
