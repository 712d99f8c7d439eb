"""Step: judge a paper's claims (from its paper.yaml) with paired tests on the per-image values.

    python -m shared.pipeline.claims --paper eigencam --scores data/scores/resnet/eigencam.json ... \
        --records reports/eigencam/adversarial.json ... --out reports/eigencam/claims.md \
        --benchmark-json '{"classification": "shapes", ...}' --models-json '{"resnet": "resnet_small", ...}' --seed 0
                                                    (claims.json is written beside it)

In the workflow the paper's results job judges them in its own process
(``shared.pipeline.results --claims-out``, which calls :func:`write_claims`); this CLI stays for
judging by hand and for the tests.

A claim is ``lhs op rhs`` (``op`` is ``>`` or ``<``; equal is never better) over result keys
``{role}/model/method/metric`` — the role (``{classification}``, ``{pairs}``, ``{retrieval}``) is
replaced by the config's dataset, so one paper.yaml is judged on any config — or ``lhs op
number`` with the threshold's owner in ``threshold``. The per-image values come from the scores
files (every metric of ``shared.pipeline.score``, MaxBoxAcc from its per-threshold hits) and from
the paper's step records (``extra.per_image``). Verdicts and the family-wise reading are those
of :mod:`shared.verdicts`: reproduced, inconclusive, not reproduced, not evaluable.

The paper's ``published:`` numbers are compared with ours in the same step
(:mod:`shared.published`): on the paper's own setting (the dataset a role resolves to, the
architecture of the model role, given by ``--models-json``) our CI against the published value ±
a tolerance; on any other setting "not applicable". ``claims.json`` holds both:
``{"claims": [...], "published": [...]}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from shared.atomic import write_text
from shared.paper_meta import PAPERS_DIR, load_paper
from shared.paper_plan import resolve_claim, resolve_key
from shared.published import PUBLISHED_VERDICTS, compare
from shared.results import dumps, read_records, result_key
from shared.verdicts import ALPHA, CLAIM_RESAMPLES, MIN_IMAGES, VERDICTS, NotEvaluable, Side, Test, finite_or_nan, paired_test, verdicts


def sides_from_scores(scores: dict[str, Any]) -> dict[str, Side]:
    """Every metric of one scores file (``shared.pipeline.score``) as a :class:`Side`, by result key."""
    prefix = f"{scores['dataset']}/{scores['model']}/{scores['method']}"
    ids = tuple(str(i) for i in scores["image_ids"])
    out = {f"{prefix}/{metric}": Side(f"{prefix}/{metric}", values=finite_or_nan(v), image_ids=ids) for metric, v in scores["per_image"].items()}
    if scores.get("maxboxacc"):
        hits = torch.tensor(scores["maxboxacc"]["hits"], dtype=torch.float64)
        out[f"{prefix}/maxboxacc"] = Side(f"{prefix}/maxboxacc", hits=hits, image_ids=ids)
    return out


def sides_from_records(path: str | Path) -> dict[str, Side]:
    """The records of a step that kept their per-image values (``extra.per_image``), by result key."""
    out = {}
    for r in read_records(path):
        if "per_image" in r.extra:
            key = result_key(r)
            out[key] = Side(key, values=finite_or_nan(r.extra["per_image"]))
    return out


def _seed(base: int, claim_id: str) -> int:
    # one stream per claim, stable across runs and independent of the claims' order
    return (base * 1_000_003 + sum((i + 1) * ord(c) for i, c in enumerate(claim_id))) % 2**31


def claim_test(claim: dict[str, Any], sides: dict[str, Side], seed: int = 0) -> tuple[dict[str, Any], Test | None]:
    """One claim's paired test and the numbers it rests on; (row, None) when not evaluable."""
    row: dict[str, Any] = {k: claim[k] for k in ("id", "statement", "source", "lhs", "op", "rhs") if k in claim}
    row.update(margin=float(claim.get("margin", 0.0)), relative=bool(claim.get("relative", False)))
    if "threshold" in claim:
        row["threshold"] = claim["threshold"]
    try:
        missing = [k for k in (claim["lhs"], claim["rhs"]) if isinstance(k, str) and k not in sides]
        if missing:
            raise NotEvaluable(f"no per-image result {', '.join(missing)} in this run (is the method defined on that model?)")
        rhs = sides[claim["rhs"]] if isinstance(claim["rhs"], str) else float(claim["rhs"])
        test = paired_test(sides[claim["lhs"]], rhs, claim["op"], row["margin"], row["relative"], seed=_seed(seed, claim["id"]))
    except NotEvaluable as why:
        row["reason"] = str(why)
        return row, None
    row.update(value=test.value, ci_low=test.ci[0], ci_high=test.ci[1], n=test.n, bound=test.bound, excluded=test.excluded)
    row.update(p_hold=test.p_hold, p_fail=test.p_fail)
    return row, test


def judge_all(claims: list[dict[str, Any]], sides: dict[str, Side], seed: int = 0) -> list[dict[str, Any]]:
    """Every claim of one paper tested, then read as one family (Holm, :func:`shared.verdicts.verdicts`)."""
    rows, tests = zip(*(claim_test(c, sides, seed) for c in claims)) if claims else ((), ())
    out = []
    for row, (verdict, hold, fail) in zip(rows, verdicts(list(tests))):
        row["verdict"] = verdict
        if hold is not None:
            row.update(p_hold_holm=hold, p_fail_holm=fail)
        out.append(row)
    return out


def judge_published(entries: list[dict[str, Any]], sides: dict[str, Side], benchmark: dict[str, str], models: dict[str, str], seed: int = 0) -> list[dict[str, Any]]:
    """Every ``published:`` entry of one paper compared with our number (:func:`shared.published.compare`);
    each on its own, no family-wise adjustment. ``models``: model role -> timm architecture."""
    out = []
    for entry in entries:
        key = resolve_key(entry["ours"], benchmark)
        out.append(compare(entry, key, sides.get(key), models, _seed(seed, entry["id"])))
    return out


def read_claims(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(claims, published) of a ``claims.json``; published is None for a file written before the
    published comparisons existed (a plain list of claims)."""
    doc = json.loads(Path(path).read_text())
    if isinstance(doc, list):
        return doc, None
    return doc["claims"], doc.get("published", [])


def describe_test(v: dict[str, Any]) -> str:
    """What was tested, in words: ``a − b`` or ``a − 1.12 × b`` or ``a``, against which bound."""
    lhs = v["lhs"].split("/", 1)[1]
    if isinstance(v["rhs"], str):
        rhs = v["rhs"].split("/", 1)[1]
        k = 1 + (1 if v["op"] == ">" else -1) * v["margin"] if v["relative"] else 1.0
        stat = f"{lhs} − {k:g} × {rhs}" if k != 1 else f"{lhs} − {rhs}"
        bound = 0.0 if v["relative"] else (v["margin"] if v["op"] == ">" else -v["margin"])
    else:
        stat, bound = lhs, float(v["rhs"]) + (v["margin"] if v["op"] == ">" else -v["margin"])
    return f"{stat} {v['op']} {bound + 0.0:g}"  # + 0.0: no "-0" for a zero margin on a "<" claim


def _source(v: dict[str, Any]) -> str:
    src = v.get("source") or {}
    quote = f" — “{src['quote']}”" if src.get("quote") else ""
    reading = " (our operationalisation)" if src.get("reading") == "ours" else ""
    return f"{src.get('ref', '?')}{quote}{reading}"


def render(paper_id: str, rows: list[dict[str, Any]], published: list[dict[str, Any]] | None = None) -> str:
    counts = {k: sum(r["verdict"] == k for r in rows) for k in VERDICTS}
    lines = [
        f"# Claims of `{paper_id}`",
        "",
        ", ".join(f"{counts[k]} {k}" for k in VERDICTS) + ".",
        "",
        f"Each claim is a paired test on the same images: the difference (or the value, against a stated "
        f"threshold) with its paired bootstrap 95 % CI ({CLAIM_RESAMPLES:,} resamples); the paper's claims "
        f"are one family, Holm-adjusted at α = {ALPHA} (α/2 per direction). *reproduced*: the interval lies "
        f"beyond the bound on the claimed side; *not reproduced*: on the other side or on it (ties never pass); "
        f"*inconclusive*: it straddles the bound; *not evaluable*: no meaningful test (reason given; "
        f"fewer than {MIN_IMAGES} images, a metric at its floor or ceiling for both sides, a missing result). "
        f"See shared/verdicts.py.",
        "",
        "| claim | verdict | tested | estimate [95 % CI] | n | p (Holm) |",
        "|---|---|---|---|---|---|",
    ]
    for v in rows:
        if "value" in v:
            p = v["p_hold_holm"] if v["verdict"] != "not reproduced" else v["p_fail_holm"]
            excl = f" ({v['excluded']} undefined left out)" if v.get("excluded") else ""
            nums = f"{v['value']:.4g} [{v['ci_low']:.4g}, {v['ci_high']:.4g}] | {v['n']}{excl} | {p:.2g}"
        else:
            nums = f"{v.get('reason')} | — | —"
        lines.append(f"| `{v['id']}` | **{v['verdict']}** | `{describe_test(v)}` | {nums} |")
    lines += ["", "## Statements and sources", ""]
    for v in rows:
        lines.append(f"- **`{v['id']}`** — {v['statement']}  ")
        lines.append(f"  Source: {_source(v)}.")
        if "threshold" in v:
            lines.append(f"  Threshold: {v['threshold']}.")
    if published:
        lines += ["", *render_published(published)]
    return "\n".join(lines) + "\n"


def _counts(rows: list[dict[str, Any]], names: tuple[str, ...]) -> str:
    return ", ".join(f"{sum(r['verdict'] == k for r in rows)} {k}" for k in names) + "."


def render_published(rows: list[dict[str, Any]]) -> list[str]:
    """claims.md's "Published numbers" section (:mod:`shared.published`)."""
    lines = [
        "## Published numbers",
        "",
        _counts(rows, PUBLISHED_VERDICTS),
        "",
        f"Our number (the mean over images; MaxBoxAcc: the best threshold's) with its bootstrap 95 % CI "
        f"({CLAIM_RESAMPLES:,} resamples, seeded per entry) against the number the paper publishes, in our units "
        f"(printed value × scale), within a tolerance fixed beforehand (its reason is below). *reproduced*: the whole "
        f"CI lies within published ± tolerance; *not reproduced*: entirely outside it; *inconclusive*: across an edge; "
        f"*not evaluable*: the result is missing or has fewer than {MIN_IMAGES} images; *not applicable*: this run is "
        f"not on the paper's setting (dataset and architecture; the synthetic default never is), so nothing is compared. "
        f"No Holm correction across these: each is a single equivalence-style comparison of one number, not one of a "
        f"family of tests of the paper's claims. See shared/published.py.",
        "",
        "| entry | verdict | ours [95 % CI] | n | published (× scale) ± tolerance | reason |",
        "|---|---|---|---|---|---|",
    ]
    for v in rows:
        ours = v["ours"]
        if "mean" in ours:
            excl = f" ({ours['excluded']} undefined left out)" if ours.get("excluded") else ""
            nums = f"{ours['mean']:.4g} [{ours['ci'][0]:.4g}, {ours['ci'][1]:.4g}] | {ours['n']}{excl}"
        else:
            nums = "— | —"
        pub = f"{v['value']:g} (× {v['scale']:g}) = {v['published']:.4g} ± {v['tolerance']:g}"
        lines.append(f"| `{v['id']}` | **{v['verdict']}** | {nums} | {pub} | {v['reason']} |")
    lines += ["", "### Sources and settings", ""]
    for v in rows:
        src, setting = v["source"], v["setting"]
        lines.append(f"- **`{v['id']}`** — {v['statement']} Ours: `{v['ours']['key']}`.  ")
        lines.append(f"  Source: {src['ref']} — “{src['quote']}”.  ")
        lines.append(f"  Setting: {setting['dataset']}, {setting['arch']}. {v['setting_note']}  ")
        lines.append(f"  Tolerance ± {v['tolerance']:g}: {v['tolerance_reason']}")
    return lines


def summary(reports: str | Path) -> str:
    """README's table: per paper (``reports/<id>/claims.json``), how many claims reach each verdict.

    Once any claims.json holds published comparisons (``{"claims", "published"}``), a last column
    counts their verdicts ("none": the paper records no published number; "—": a claims.json
    written before published comparisons existed). Old files alone give the old table."""
    papers = [(path.parent.name, *read_claims(path)) for path in sorted(Path(reports).glob("*/claims.json"))]
    with_published = any(published is not None for _, _, published in papers)
    extra = " published numbers |" if with_published else ""
    lines = ["| paper | " + " | ".join(VERDICTS) + " |" + extra, "|---|" + "---|" * (len(VERDICTS) + bool(with_published))]
    for name, rows, published in papers:
        line = f"| [{name}](reports/{name}/claims.md) | " + " | ".join(str(sum(r["verdict"] == k for r in rows)) for k in VERDICTS) + " |"
        if with_published:
            line += f" {_published_cell(published)} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _published_cell(published: list[dict[str, Any]] | None) -> str:
    if published is None:
        return "—"
    counts = [f"{n} {k}" for k in PUBLISHED_VERDICTS if (n := sum(r["verdict"] == k for r in published))]
    return ", ".join(counts) if counts else "none"


def write_claims(
    paper: str,
    out: str | Path,
    scores: list[dict[str, Any]],
    records: list[str | Path],
    benchmark: dict[str, str],
    models: dict[str, str],
    seed: int = 0,
    papers_dir: str | Path = PAPERS_DIR,
    rehearsal: str | None = None,
) -> None:
    """Judge one paper's claims and published numbers and write ``out`` (claims.md) and claims.json
    beside it. ``scores``: the parsed scores files, in order; ``records``: the step record files.
    The CLI below and the paper's results job (``shared.pipeline.results --claims-out``, one process
    fewer per paper) both call this."""
    doc = load_paper(Path(papers_dir) / paper)
    sides: dict[str, Side] = {}
    for s in scores:
        sides.update(sides_from_scores(s))
    for path in records:
        sides.update(sides_from_records(path))
    rows = judge_all([resolve_claim(c, benchmark) for c in doc.get("claims", [])], sides, seed)
    published = judge_published(doc.get("published", []), sides, benchmark, models, seed)
    judged: dict[str, Any] = {"claims": rows, "published": published}
    text = render(paper, rows, published)
    if rehearsal:  # stand-in weights and data: the verdicts only show that the path runs
        judged["rehearsal"] = rehearsal
        title, rest = text.split("\n", 1)
        text = f"{title}\n\n> **REHEARSAL** — {rehearsal}\n{rest}"
    write_text(Path(out).with_suffix(".json"), dumps(judged))
    write_text(out, text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paper", required=True)
    p.add_argument("--scores", nargs="*", default=[], help="scores files of the paper's results (per-image values)")
    p.add_argument("--records", nargs="*", default=[], help="the paper's step records (per-image values in extra.per_image)")
    p.add_argument("--out", required=True, help="claims.md (claims.json is written beside it)")
    p.add_argument("--benchmark-json", required=True, help="the config's benchmark section: dataset role -> dataset")
    p.add_argument("--models-json", default="{}", help="model role -> timm architecture (config models.<role>.arch): the published numbers' setting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--papers-dir", default=str(PAPERS_DIR))
    p.add_argument("--rehearsal", default=None, help="the config's rehearsal note: written above the verdicts, and into claims.json")
    args = p.parse_args(argv)
    write_claims(
        args.paper,
        args.out,
        [json.loads(Path(path).read_text()) for path in args.scores],
        args.records,
        json.loads(args.benchmark_json),
        json.loads(args.models_json),
        args.seed,
        args.papers_dir,
        args.rehearsal,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
