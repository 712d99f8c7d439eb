"""Step: judge a paper's claims (from its paper.yaml) against its results.

    python -m shared.pipeline.claims --paper eigencam --results reports/eigencam/results.json \
        --out reports/eigencam/claims.md --benchmark-json '{"classification": "shapes", ...}'
                                                    (claims.json is written beside it)

A claim is ``lhs op rhs (+ margin)`` over result keys ``{role}/model/method/metric`` (the role,
``{classification}``, ``{pairs}`` or ``{retrieval}``, is replaced by the config's benchmark
dataset, so one paper.yaml is judged on any config; rhs may be a number), or a Python expression ``expr`` over ``r[key]`` (the values) and ``ci[key]``
((low, high)). Verdicts: ``reproduced``, ``not reproduced``, or ``not evaluated`` when a key is
missing. Claims are science, not tests: a claim that does not hold is reported with its numbers.
"""

from __future__ import annotations

import argparse
import operator
from pathlib import Path
from typing import Any

import json

from shared.paper_meta import PAPERS_DIR, load_paper
from shared.paper_plan import resolve_claim
from shared.atomic import write_text
from shared.results import ResultRecord, dumps, read_records, result_key

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _value(side: str | float, results: dict[str, ResultRecord]) -> tuple[float, ResultRecord | None]:
    if isinstance(side, (int, float)):
        return float(side), None
    if side not in results:
        raise KeyError(side)
    return results[side].value, results[side]


def judge(claim: dict[str, Any], results: dict[str, ResultRecord]) -> dict[str, Any]:
    """The verdict of one claim, with the numbers it rests on."""
    out: dict[str, Any] = {"id": claim["id"], "statement": claim["statement"], "paper_ref": claim.get("paper_ref", "")}
    try:
        if "expr" in claim:
            values = {k: r.value for k, r in results.items()}
            cis = {k: (r.ci_low, r.ci_high) for k, r in results.items()}
            holds = bool(eval(claim["expr"], {"__builtins__": {"abs": abs, "min": min, "max": max}}, {"r": values, "ci": cis}))  # noqa: S307 - our own paper.yaml
            out.update(expr=claim["expr"], holds=holds)
        else:
            lv, lr = _value(claim["lhs"], results)
            rv, rr = _value(claim["rhs"], results)
            margin = float(claim.get("margin", 0.0))
            if claim.get("relative") and rv == 0:
                # "x % better than a baseline of 0" says nothing: no verdict rather than a free pass
                out.update(lhs=claim["lhs"], lhs_value=lv, op=claim["op"], rhs=claim["rhs"], rhs_value=rv, margin=margin)
                out.update(verdict="not evaluated", missing=f"{claim['rhs']} is 0: a relative margin is undefined")
                return out
            bound = rv * (1 + margin) if claim.get("relative") else rv + margin
            holds = OPS[claim["op"]](lv, bound)
            out.update(lhs=claim["lhs"], lhs_value=lv, op=claim["op"], rhs=claim["rhs"], rhs_value=rv, margin=margin, holds=holds)
            for name, r in (("lhs_ci", lr), ("rhs_ci", rr)):
                if r is not None and r.ci_low is not None:
                    out[name] = [r.ci_low, r.ci_high]
            if lr is not None and rr is not None and lr.ci_low is not None and rr.ci_low is not None:
                overlap = lr.ci_low <= rr.ci_high and rr.ci_low <= lr.ci_high
                out["confidence_intervals_overlap"] = overlap
        out["verdict"] = "reproduced" if out["holds"] else "not reproduced"
    except KeyError as missing:
        out.update(verdict="not evaluated", missing=str(missing).strip("'"))
    return out


def render(paper_id: str, verdicts: list[dict[str, Any]]) -> str:
    lines = [f"# Claims of `{paper_id}`", "", "| claim | paper | verdict | numbers |", "|---|---|---|---|"]
    for v in verdicts:
        if "lhs_value" in v:
            nums = f"{v['lhs']} = {v['lhs_value']:.4g} {v['op']} {v['rhs']} = {v['rhs_value']:.4g}"
            if v.get("margin"):
                nums += f" (margin {v['margin']:+g})"
            if v.get("confidence_intervals_overlap"):
                nums += "; the 95 % CIs overlap"
        elif "expr" in v:
            nums = f"`{v['expr']}`"
        else:
            nums = f"missing result {v.get('missing')}"
        if v["verdict"] == "not evaluated" and "lhs_value" in v:
            nums += f" — {v.get('missing')}"
        lines.append(f"| {v['statement']} | {v['paper_ref']} | **{v['verdict']}** | {nums} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--paper", required=True)
    p.add_argument("--results", required=True, nargs="+", help="results.json files (the paper's, and any it compares with)")
    p.add_argument("--out", required=True, help="claims.md (claims.json is written beside it)")
    p.add_argument("--benchmark-json", required=True, help="the config's benchmark section: dataset role -> dataset")
    p.add_argument("--papers-dir", default=str(PAPERS_DIR))
    args = p.parse_args(argv)
    benchmark = json.loads(args.benchmark_json)
    doc = load_paper(Path(args.papers_dir) / args.paper)
    results: dict[str, ResultRecord] = {}
    for path in args.results:
        results.update({result_key(r): r for r in read_records(path)})
    verdicts = [judge(resolve_claim(c, benchmark), results) for c in doc.get("claims", [])]
    write_text(Path(args.out).with_suffix(".json"), dumps(verdicts))
    write_text(args.out, render(args.paper, verdicts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
