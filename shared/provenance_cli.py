"""`repro cite`, `repro verify`, `repro publish` and `repro pull`: trust, cite and share results."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from shared import REPO_ROOT
from shared.paper_meta import PAPERS_DIR, load_paper, paper_dirs
from shared.results import ResultRecord, dumps, read_records, result_key, sha256_file


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


def _configfile(configfile: str | None, root: Path) -> Path:
    """The config file a command uses: ``configfile`` (the current directory's, else the
    checkout's, as `repro` reads it), or the checkout's config/default.yaml."""
    if not configfile:
        default = root / "config" / "default.yaml"
        return default if default.is_file() else REPO_ROOT / "config" / "default.yaml"
    path = Path(configfile)
    return path if path.exists() or path.is_absolute() else root / path


def config_label(configfile: str | None) -> str:
    return configfile or "config/default.yaml"


def _schema(root: Path) -> Path:
    schema = root / "config" / "schema.yaml"
    return schema if schema.is_file() else REPO_ROOT / "config" / "schema.yaml"


def used_config(configfile: str | None, root: Path = REPO_ROOT) -> dict[str, Any] | None:
    """The workflow's config for ``configfile`` (schema defaults filled in), or None when it
    cannot be read (the command that runs the workflow then says why)."""
    from shared.config import workflow_config

    try:
        return workflow_config(_configfile(configfile, root), _schema(root))
    except Exception:  # noqa: BLE001 — a broken config is reported by the workflow itself
        return None


def used_config_hash(configfile: str | None, root: Path = REPO_ROOT) -> str | None:
    """The ``config_sha256`` records made with ``configfile`` carry (shared.config.workflow_config_hash)."""
    from shared.config import config_hash

    config = used_config(configfile, root)
    return None if config is None else config_hash(config)


def config_files_by_hash(root: Path = REPO_ROOT) -> dict[str, str]:
    """config_sha256 -> config/<name>.yaml, for the config files of the checkout."""
    from shared.config import workflow_config_hash

    found: dict[str, str] = {}
    for path in sorted((root / "config").glob("*.yaml")):
        if path.name == "schema.yaml":
            continue
        try:
            found.setdefault(workflow_config_hash(path, _schema(root)), f"config/{path.name}")
        except Exception:  # noqa: BLE001 — a file that is not a config names nothing
            continue
    return found


def _short(sha: str | None) -> str:
    return "unknown" if not sha else sha[:12] + "…"


def pinned_config_hashes(pinned: dict[str, ResultRecord]) -> dict[str, int]:
    """config_sha256 -> how many pinned records carry it (records without one left out), most first."""
    counts: dict[str, int] = {}
    for r in pinned.values():
        if r.provenance.config_sha256:
            counts[r.provenance.config_sha256] = counts.get(r.provenance.config_sha256, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def config_mismatch(paper: str, pinned: dict[str, ResultRecord], used_hash: str | None, label: str, root: Path = REPO_ROOT) -> str | None:
    """One line when ``paper``'s pins were computed with another config than ``label`` (whose
    hash is ``used_hash``): which config the pins record, which one is used now, and how to
    verify like for like. None when they agree, or when either hash is unknown."""
    counts = pinned_config_hashes(pinned)
    if not counts or not used_hash or set(counts) == {used_hash}:
        return None
    pin_hash = next(iter(counts))
    others = len(counts) - 1
    files = config_files_by_hash(root)
    commits = sorted({r.provenance.git_commit[:7] for r in pinned.values() if r.provenance.git_commit and r.provenance.config_sha256 == pin_hash})
    at = f" at commit {commits[0]}" if len(commits) == 1 else ""
    if pin_hash in files:
        which = f"{files[pin_hash]} here"
        how = f"verify with the pins' config: `repro verify {paper}" + ("`" if files[pin_hash] == "config/default.yaml" else f" --configfile {files[pin_hash]}`")
    else:
        which = f"no config file in config/ now; the config or its schema changed since the pins were made{at}"
        how = (
            f"to compare like for like, verify at the pins' commit (`git checkout {commits[0] if len(commits) == 1 else '<commit>'}`) "
            f"or regenerate the pins with this config (`repro run {paper}`, then commit reports/{paper}/)"
        )
    mixed = f" (and {others} other config{'s' if others > 1 else ''} in some records)" if others else ""
    return (
        f"verify {paper}: NOT LIKE FOR LIKE: the pinned results were computed with config sha256 {_short(pin_hash)} "
        f"({which}){mixed}, this verify uses {label} (config sha256 {_short(used_hash)}), so numbers that differ may "
        f"differ because of the config; {how}"
    )


def checkpoint_mismatches(models: list[str], config: dict[str, Any], root: Path = REPO_ROOT) -> dict[str, str]:
    """model -> what differs, for each checkpoint in data/models/ that was trained with other
    settings than ``config`` gives it (its sidecar's ``model`` section and seed), e.g.
    ``epochs 1, not 24``. Models without a checkpoint or a readable sidecar are left out."""
    found: dict[str, str] = {}
    for model in models:
        try:
            sidecar = json.loads((root / "data" / "models" / f"{model}.json").read_text())
        except (OSError, ValueError):
            continue
        want = (config.get("models") or {}).get(model)
        if want is None:
            found[model] = "a model this config does not define"
            continue
        got = sidecar.get("model") or {}
        diffs = [f"{k} {got.get(k)!r}, not {want.get(k)!r}" for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)]
        if sidecar.get("seed") is not None and sidecar.get("seed") != config.get("seed"):
            diffs.append(f"seed {sidecar.get('seed')!r}, not {config.get('seed')!r}")
        if diffs:
            found[model] = "; ".join(diffs[:3]) + (f"; {len(diffs) - 3} more" if len(diffs) > 3 else "")
    return found


def _stale_list(stale: dict[str, str]) -> str:
    return ", ".join(f"{m} ({why})" for m, why in stale.items())


def _paper_models(paper: str, config: dict[str, Any], root: Path) -> list[str]:
    from shared.paper_plan import plan_paper

    plan = plan_paper(load_paper(root / "papers" / paper), config)
    return list(dict.fromkeys([score.split("/")[2] for score in plan.scores] + [m for step in plan.steps for m in step.models]))


def stale_checkpoint_notice(paper: str, configfile: str | None, root: Path = REPO_ROOT) -> str | None:
    """One line when data/models/ holds checkpoints of ``paper``'s models trained with other
    settings than the config verify uses (a clone run with another config): verify reuses them,
    so its numbers are not that config's. None otherwise."""
    config = used_config(configfile, root)
    if config is None:
        return None
    try:
        models = _paper_models(paper, config, root)
    except Exception:  # noqa: BLE001 — a broken plan is reported by the recomputation itself
        return None
    stale = checkpoint_mismatches(models, config, root)
    if not stale:
        return None
    label = config_label(configfile)
    return (
        f"verify {paper}: NOT LIKE FOR LIKE: data/models/ holds checkpoints trained with other settings than {label}: {_stale_list(stale)}; "
        f"verify reuses them, so its numbers are not {label}'s: retrain them first "
        f"(`repro run {' '.join(f'data/models/{m}.safetensors' for m in stale)}" + ("" if not configfile else f" --configfile {configfile}") + "`), "
        f"or verify with the config they were trained with"
    )


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


def data_dvc_commits(root: Path = REPO_ROOT) -> dict[str, str]:
    """sha256 of each version of data.dvc that git history holds -> the (short) commit that first
    committed it. Empty outside a git checkout."""
    log = subprocess.run(["git", "log", "--format=%h", "--", "data.dvc"], cwd=root, capture_output=True, text=True)
    found: dict[str, str] = {}
    for commit in log.stdout.split() if log.returncode == 0 else []:  # newest first: the oldest wins
        show = subprocess.run(["git", "show", f"{commit}:data.dvc"], cwd=root, capture_output=True)
        if show.returncode == 0:
            found[hashlib.sha256(show.stdout).hexdigest()] = commit
    return found


def _dvc_md5(path: Path) -> str | None:
    """The md5 of data/ that a data.dvc file pins (DVC's name of the snapshot)."""
    try:
        match = re.search(r"md5:\s*(\S+)", path.read_text())
    except OSError:
        return None
    return match.group(1) if match else None


def data_snapshot_warning(record: ResultRecord, paper: str, root: Path = REPO_ROOT) -> str | None:
    """A warning when the data.dvc that ``record`` was computed under (its ``data_dvc_sha256``)
    is not the checkout's data.dvc: `repro pull` would then fetch another snapshot of data/ than
    the one behind the number. None when they agree, or either is unknown."""
    recorded = record.provenance.data_dvc_sha256
    current = sha256_file(root / "data.dvc")
    if not recorded or not current or recorded == current:
        return None
    committed = data_dvc_commits(root).get(recorded)
    md5 = _dvc_md5(root / "data.dvc")
    if committed:
        origin = (
            f"committed at {committed}). `repro pull` fetches data.dvc's snapshot, not this number's data; that one is "
            f"`git show {committed}:data.dvc > data.dvc && dvc pull` (if the remote still holds it)"
        )
    else:
        origin = "which no commit holds: that data.dvc was never committed). `repro pull` fetches data.dvc's snapshot, not this number's data"
    return (
        f"warning: data.dvc (sha256 {_short(current)}{f', data/ md5 {md5}' if md5 else ''}) is not the DVC snapshot "
        f"this number was computed under (its provenance: data.dvc sha256 {_short(recorded)}, {origin}. To make them agree, "
        f"publish the data the numbers came from (`repro publish`, i.e. dvc add data + dvc push; README, Data and DVC) and "
        f"commit data.dvc, then re-aggregate the pins so they name it (`snakemake {paper} --forcerun {paper}_results --cores 1`) "
        f"and commit reports/{paper}/."
    )


def cite(paper: str, result: str | None, papers_dir: Path = PAPERS_DIR) -> str:
    """The paper's BibTeX, and a citation of a pinned result with its provenance, each hash
    saying what it is of. (:func:`data_snapshot_warning` checks the data.dvc hash.)"""
    doc = load_paper(Path(papers_dir) / paper)
    lines = [f"% {doc['title']} ({doc['venue']} {doc['year']})", doc["bibtex"].strip(), ""]
    if result:
        r = cited_record(paper, result, papers_dir)
        p = r.provenance
        ci = f" (95 % CI {r.ci_low:.4g}–{r.ci_high:.4g})" if r.ci_low is not None else ""
        root = Path(papers_dir).parent
        current = sha256_file(root / "data.dvc")
        if not p.data_dvc_sha256 or not current:
            agrees = ""
        elif p.data_dvc_sha256 == current:
            agrees = "; the same as the data.dvc committed now"
        else:
            agrees = f"; NOT the data.dvc committed now, sha256 {_short(current)}"
        config_file = config_files_by_hash(root).get(p.config_sha256 or "")
        lines += [
            f"% Result {result}: {r.value:.4g}{ci}, n = {r.n} images,",
            f"%   reproduced with saliency-repro at commit {p.git_commit}{' (dirty tree)' if p.git_dirty else ''},",
            f"%   environment: uv.lock sha256 {p.uv_lock_sha256},",
            f"%   data: data.dvc sha256 {p.data_dvc_sha256} (the data.dvc file in the tree when the number was computed, "
            f"which names the last published DVC snapshot of data/{agrees}),",
        ]
        if p.model_weights_sha256 or p.dataset_content_hash:
            lines.append(
                f"%   read by the scoring step: model weights sha256 {p.model_weights_sha256}, "
                f"dataset content hash {p.dataset_content_hash} (its tables and images),"
            )
        lines += [
            f"%   config: sha256 {p.config_sha256} (the whole workflow config, schema defaults included; "
            f"{f'{config_file} here' if config_file else 'no config file here has it now'}), "
            f"seed {p.seed}, device {p.device}, torch {p.torch_version}.",
            "",
        ]
    lines.append(software_citation(Path(papers_dir).parent))
    return "\n".join(lines)


def cited_record(paper: str, result: str, papers_dir: Path = PAPERS_DIR) -> ResultRecord:
    """The pinned record ``result`` of ``paper``; a KeyError naming the nearest keys otherwise."""
    results = pinned_results(paper, Path(papers_dir).parent)
    if result not in results:
        from shared.models.adapter import nearest_names

        raise KeyError(f"no pinned result {result!r} for {paper}; nearest keys: {', '.join(nearest_names(result, list(results)))}")
    return results[result]


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


def verifiable_error(paper: str, root: Path = REPO_ROOT) -> str | None:
    """Why ``paper`` cannot be verified (one line), or None: no such paper, or no pinned results."""
    known = [d.name for d in paper_dirs(root / "papers")]
    if paper not in known:
        return f"no paper {paper!r} (papers: {', '.join(known) or 'none'})"
    if not (root / "reports" / paper / "results.json").exists():
        return (
            f"{paper} has no pinned results (reports/{paper}/results.json), so there is nothing to verify against: "
            f"make them with `repro run {paper}` and commit reports/{paper}/"
        )
    return None


def missing_data_notice(paper: str, configfile: str | None, root: Path = REPO_ROOT) -> str | None:
    """One line when ``data/`` lacks a checkpoint that ``paper`` needs (a fresh clone): verify
    then regenerates the datasets and trains the models before recomputing. None otherwise."""
    from shared.config import load_config

    try:
        models = _paper_models(paper, load_config(configfile or root / "config" / "default.yaml"), root)
    except Exception:  # noqa: BLE001 — a broken plan is reported by the recomputation itself
        return None
    missing = [m for m in models if not (root / "data" / "models" / f"{m}.safetensors").exists()]
    if not missing:
        return None
    what = "data/ is missing" if not (root / "data").is_dir() else f"data/models/ lacks {', '.join(missing)}"
    return (
        f"verify {paper}: {what}, so verify will regenerate the datasets and train the models first (minutes); "
        f"`repro pull` fetches them where a DVC remote has them"
    )


def verify(paper: str, configfile: str | None, cores: int | None, root: Path = REPO_ROOT, profile: str | None = None) -> tuple[int, str]:
    """Recompute a paper from its models and data in a scratch copy; compare every pinned record
    (:func:`record_files`) with its recomputed value, within the paper's tolerances.

    Before any work it says, one line each, when data/ lacks what the paper needs (verify then
    trains first), when the config it recomputes with is not the one the pins record
    (``config_sha256``), and when data/models/ holds checkpoints trained with other settings:
    the comparison is then not like for like, and the report says so first (:func:`verify_report`).

    ``profile`` (e.g. ``profiles/slurm``) is passed as snakemake's ``--workflow-profile``; the
    scratch copy is then made in the checkout's ``.snakemake/``, on the filesystem that a
    cluster's compute nodes share (the system's temporary directory is the login node's own).
    ``cores`` may then be None: the profile's own limits."""
    problem = verifiable_error(paper, root)
    if problem:
        return 2, f"verify {paper}: {problem}"
    doc = load_paper(root / "papers" / paper)
    pinned = record_files(_pinned_results_path(paper, root).parent)
    label = config_label(configfile)
    used_hash = used_config_hash(configfile, root)
    stale = stale_checkpoint_notice(paper, configfile, root)
    for notice in (missing_data_notice(paper, configfile, root), config_mismatch(paper, pinned, used_hash, label, root), stale):
        if notice:
            print(notice, file=sys.stderr, flush=True)
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
    return verify_report(paper, doc, pinned, fresh, label, used_hash, root, extra=[stale] if stale else [])


def verify_report(
    paper: str,
    doc: dict[str, Any],
    pinned: dict[str, ResultRecord],
    fresh: dict[str, ResultRecord],
    label: str,
    used_hash: str | None,
    root: Path = REPO_ROOT,
    extra: list[str] | None = None,
) -> tuple[int, str]:
    """The exit code (0: every pinned number within tolerance; 1: not) and the report of a
    verification. The config hash the recomputed records carry (the workflow's own) is compared
    with the pins'; when they differ (or ``extra`` names another reason), the first line says the
    comparison is not like for like, and the numbers that differ are listed as DIFFERS, not MOVED."""
    now = pinned_config_hashes(fresh)
    now_hash = next(iter(now)) if len(now) == 1 else used_hash
    reasons = [line for line in [config_mismatch(paper, pinned, now_hash, label, root), *(extra or [])] if line]
    rows = compare_results(doc, pinned, fresh)
    moved = [r for r in rows if r["moved"]]
    if reasons:
        lines = [*reasons, f"verify {paper}: {len(rows) - len(moved)} of {len(rows)} results within tolerance, {len(moved)} differ (not like for like: see above)"]
        tag = "DIFFERS"
    else:
        lines = [f"verify {paper}: {len(rows) - len(moved)} of {len(rows)} results within tolerance"]
        tag = "MOVED"
    for r in moved:
        fresh_s = "—" if r["fresh"] is None else f"{r['fresh']:.6g}"
        pinned_s = "—" if r["pinned"] is None else f"{r['pinned']:.6g}"
        lines.append(f"  {tag} {r['key']}: pinned {pinned_s}, now {fresh_s} (tolerance {r['tolerance']:g}){' — ' + r['why'] if 'why' in r else ''}")
    return (1 if moved else 0), "\n".join(lines)


def _run(cmd: list[str], root: Path) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=root)


def _bin(name: str) -> str:
    return shutil.which(name) or str(Path(sys.executable).with_name(name))


def snakemake_running(root: Path = REPO_ROOT) -> bool:
    locks = root / ".snakemake" / "locks"
    return locks.exists() and any(locks.iterdir())


PUBLISHED = Path("data") / "PUBLISHED.json"
"""What `repro publish` records inside data/ (so it travels with the DVC snapshot): the config
data/ was made with (its workflow hash and file) and the commit published from."""


def _head(root: Path) -> str | None:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def read_published(root: Path = REPO_ROOT) -> dict[str, Any] | None:
    """data/PUBLISHED.json, or None when data/ has none (published before it was recorded)."""
    try:
        found = json.loads((root / PUBLISHED).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _checkpoints_of(config: dict[str, Any], root: Path) -> list[str]:
    """The config's models that data/models/ holds a checkpoint sidecar of."""
    return [m for m in sorted(config.get("models") or {}) if (root / "data" / "models" / f"{m}.json").is_file()]


def publish(root: Path = REPO_ROOT, configfile: str | None = None) -> int:
    """Record the config data/ was made with in data/PUBLISHED.json, then `dvc add data` +
    `dvc push` to the default remote; never while Snakemake runs (repo lock), and not when
    data/models/ holds checkpoints trained with other settings than that config."""
    if snakemake_running(root):
        print("error: a Snakemake run holds .snakemake/locks; wait for it (or `snakemake --unlock`) before publishing", file=sys.stderr)
        return 2
    if not (root / "data").is_dir():
        print("error: there is no data/ to publish: make it with `repro run` first", file=sys.stderr)
        return 2
    label = config_label(configfile)
    config = used_config(configfile, root)
    if config is None:
        print(f"error: cannot read the config {label}", file=sys.stderr)
        return 2
    stale = checkpoint_mismatches(_checkpoints_of(config, root), config, root)
    if stale:
        print(
            f"error: data/models/ holds checkpoints trained with other settings than {label}: {_stale_list(stale)}; "
            f"publish with the config data/ was made with (`repro publish --configfile <it>`), so that `repro pull` can check it",
            file=sys.stderr,
        )
        return 2
    from shared.config import config_hash

    record = {"config_sha256": config_hash(config), "configfile": label, "git_commit": _head(root)}
    (root / PUBLISHED).write_text(dumps(record))
    rc = _run([_bin("dvc"), "add", "data"], root) or _run([_bin("dvc"), "push"], root)
    if rc == 0:
        print(f"published data/ (made with {label}, config sha256 {_short(record['config_sha256'])}: data/PUBLISHED.json) — commit data.dvc so that others can `repro pull` it")
    return rc


def pull_problem(configfile: str | None, root: Path = REPO_ROOT) -> str | None:
    """Why the pulled data/ is not ``configfile``'s outputs (one line), or None: it was published
    with another config (data/PUBLISHED.json), or its checkpoints were trained with other settings."""
    label = config_label(configfile)
    config = used_config(configfile, root)
    if config is None:
        return None  # snakemake says what is wrong with it
    from shared.config import config_hash

    now = config_hash(config)
    problems = []
    published = read_published(root)
    if published and published.get("config_sha256") and published["config_sha256"] != now:
        by = published.get("configfile") or "another config"
        at = f" at commit {published['git_commit']}" if published.get("git_commit") else ""
        if by == label:
            problems.append(
                f"data/ was published with {by} as it was{at} (config sha256 {_short(published['config_sha256'])}); "
                f"{label} here has config sha256 {_short(now)}: the config or its schema changed since"
            )
        else:
            problems.append(
                f"data/ was published with {by}{at} (config sha256 {_short(published['config_sha256'])}), "
                f"not {label} (config sha256 {_short(now)}): pull with `--configfile {by}`"
            )
    stale = checkpoint_mismatches(_checkpoints_of(config, root), config, root)
    if stale:
        problems.append(f"its checkpoints were trained with other settings than {label}: {_stale_list(stale)}")
    if not problems:
        return None
    return (
        "; ".join(problems)
        + f". Marking its outputs up to date for {label} would pass them off as that config's; "
        + f"compute them instead with `repro run{'' if not configfile else ' --configfile ' + configfile}`, "
        + "or mark them anyway with `repro pull --force`"
    )


def _dvc_config(path: Path) -> dict[str, dict[str, str]]:
    """A DVC config file (``[core]``, ``['remote "name"']`` sections), section → key → value;
    a remote's section is named ``remote name``."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    if not path.is_file():
        return sections
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[\s*'?(.+?)'?\s*\]", line)
        if header:
            current = sections.setdefault(" ".join(header.group(1).replace('"', " ").split()), {})
        elif current is not None and "=" in line:
            key, value = line.split("=", 1)
            current[key.strip()] = value.strip()
    return sections


def default_remote(root: Path = REPO_ROOT) -> tuple[str, str] | None:
    """The default DVC remote (name, url) of the checkout: .dvc/config, .dvc/config.local over it."""
    config: dict[str, dict[str, str]] = {}
    for name in ("config", "config.local"):
        for section, values in _dvc_config(root / ".dvc" / name).items():
            config.setdefault(section, {}).update(values)
    name = config.get("core", {}).get("remote")
    if not name:
        return None
    return name, config.get(f"remote {name}", {}).get("url", "")


def remote_problem(root: Path = REPO_ROOT) -> str | None:
    """Why `dvc pull` cannot work here (one line), or None: a default remote that is a local
    directory this machine does not have (the shipped one, ~/.cache/saliency-repro/dvc-remote,
    is a folder on the machine that published the data).
    A default remote elsewhere (s3://, ssh://, ...), or none here, is left to dvc."""
    how = "add a remote that has the data (`dvc remote add -d myremote <url>`, then `repro pull`), or recompute everything with `repro run` (minutes)"
    remote = default_remote(root)
    if remote is None or not remote[1]:
        return None  # none in the checkout (perhaps in the user's global DVC config): dvc says
    name, url = remote
    if "://" in url and not url.startswith("file://"):
        return None  # s3://, ssh://, ...: dvc says whether it can reach it
    local = Path(os.path.expanduser(url.removeprefix("file://")))
    if not local.is_absolute():
        local = root / ".dvc" / local  # DVC reads a relative path from the config file's directory
    if local.exists():
        return None
    return (
        f"the default DVC remote {name!r} is {url}, a directory on the machine that published the data, "
        f"and this machine has no copy of it: {how}"
    )


def pull(configfile: str | None, root: Path = REPO_ROOT, force: bool = False) -> int:
    """`dvc pull`, then mark the pulled outputs up to date for Snakemake (no recomputation), but
    only when they are ``configfile``'s (:func:`pull_problem`; ``force`` marks them anyway)."""
    problem = remote_problem(root)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    rc = _run([_bin("dvc"), "pull"], root)
    if rc:
        return rc
    mismatch = pull_problem(configfile, root)
    if mismatch and not force:
        print(f"error: pulled, but nothing marked up to date: {mismatch}", file=sys.stderr)
        return 2
    if mismatch:
        print(f"warning (--force): {mismatch}", file=sys.stderr)
    elif read_published(root) is None:
        print(
            f"warning: data/ holds no PUBLISHED.json (it was published before `repro publish` recorded its config), so "
            f"beyond its checkpoints' settings nothing says it was made with {config_label(configfile)}; "
            f"`repro verify` checks the numbers",
            file=sys.stderr,
        )
    # target first (see verify); progress lines only, not every touched job
    cmd = [_bin("snakemake"), "all", "--touch", "--cores", "1", "--quiet", "host", "reason", "rules"]
    if configfile:
        cmd += ["--configfile", configfile]
    return _run(cmd, root)


def dumps_rows(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, sort_keys=True)
