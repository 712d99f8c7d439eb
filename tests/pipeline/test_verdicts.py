"""Claim verdicts on hand-made per-image values: every verdict path, ties, a floor metric, Holm."""

from __future__ import annotations

import json

import pytest
import torch

from shared.pipeline import claims
from shared.verdicts import MIN_IMAGES, NotEvaluable, Side, holm, paired_test, statistic, verdicts

N = 40


def side(name: str, values, metric: str = "pointing_game", ids=None) -> Side:
    key = f"shapes/resnet/{name}/{metric}"
    return Side(key, values=torch.as_tensor(values, dtype=torch.float64), image_ids=ids)


def claim(cid: str, lhs: str, op: str, rhs, **kw) -> dict:
    return {"id": cid, "statement": cid, "source": {"ref": "Table 1", "quote": "q", "reading": "paper"}, "lhs": lhs, "op": op, "rhs": rhs, **kw}


def judge(rows_of_claims, sides):
    return {r["id"]: r for r in claims.judge_all(rows_of_claims, {s.key: s for s in sides})}


A_BETTER = [1.0] * 36 + [0.0] * 4  # 0.9
B_WORSE = [1.0] * 8 + [0.0] * 32  # 0.2


def test_clear_difference_is_reproduced_and_its_converse_not_reproduced():
    a, b = side("a", A_BETTER), side("b", B_WORSE)
    out = judge([claim("ab", a.key, ">", b.key), claim("ba", b.key, ">", a.key)], [a, b])
    assert out["ab"]["verdict"] == "reproduced" and out["ba"]["verdict"] == "not reproduced"
    assert out["ab"]["value"] == pytest.approx(0.7) and out["ab"]["n"] == N
    assert out["ab"]["ci_low"] > 0.5 and out["ab"]["ci_high"] <= 0.9


def test_a_difference_whose_interval_straddles_zero_is_inconclusive():
    # 3 images better, 2 worse, the rest equal: a mean difference of 1/40 with a CI across 0
    a = side("a", [1.0] * 3 + [0.0] * 2 + [1.0] * 35)
    b = side("b", [0.0] * 3 + [1.0] * 2 + [1.0] * 35)
    out = judge([claim("c", a.key, ">", b.key)], [a, b])["c"]
    assert out["value"] == pytest.approx(1 / 40) and out["ci_low"] < 0 < out["ci_high"]
    assert out["verdict"] == "inconclusive"


def test_ties_never_pass():
    # the same per-image values (not constant): the difference is 0 on every image
    v = [float(i % 3) for i in range(N)]
    a, b = side("a", v, "deletion"), side("b", v, "deletion")
    out = judge([claim("t", a.key, ">", b.key), claim("u", a.key, "<", b.key)], [a, b])
    assert out["t"]["verdict"] == "not reproduced" and out["u"]["verdict"] == "not reproduced"
    assert out["t"]["ci_low"] == out["t"]["ci_high"] == 0.0


def test_a_metric_at_its_floor_for_both_methods_is_not_evaluable():
    a, b = side("a", [0.0] * N, "wsol_fixed"), side("b", [0.0] * N, "wsol_fixed")
    out = judge([claim("f", a.key, ">", b.key)], [a, b])["f"]
    assert out["verdict"] == "not evaluable" and "every image scores 0 under both" in out["reason"]
    assert "value" not in out


def test_floor_for_one_side_only_still_orders_them():
    a, b = side("a", A_BETTER, "wsol_fixed"), side("b", [0.0] * N, "wsol_fixed")
    assert judge([claim("f", a.key, ">", b.key)], [a, b])["f"]["verdict"] == "reproduced"


def test_too_few_images_or_a_missing_result_is_not_evaluable():
    a, b = side("a", A_BETTER[: MIN_IMAGES - 1]), side("b", B_WORSE[: MIN_IMAGES - 1])
    out = judge([claim("few", a.key, ">", b.key), claim("gone", a.key, ">", "shapes/resnet/zz/pointing_game")], [a, b])
    assert out["few"]["verdict"] == "not evaluable" and f"fewer than {MIN_IMAGES}" in out["few"]["reason"]
    assert out["gone"]["verdict"] == "not evaluable" and "shapes/resnet/zz/pointing_game" in out["gone"]["reason"]


def test_undefined_images_are_left_out_and_counted():
    # NaN: a constant map has no rank correlation; those images drop out of the pair
    a = side("a", [float("nan")] * 5 + [0.1] * 35, "class_sensitivity")
    b = side("b", [0.9] * 38 + [float("nan")] * 2, "class_sensitivity")
    out = judge([claim("c", a.key, "<", b.key)], [a, b])["c"]
    assert out["n"] == 33 and out["excluded"] == 7 and out["verdict"] == "reproduced"


def test_sides_scored_on_different_images_are_refused():
    a, b = side("a", A_BETTER, ids=tuple(map(str, range(N)))), side("b", B_WORSE, ids=tuple(map(str, range(1, N + 1))))
    with pytest.raises(NotEvaluable, match="different images"):
        paired_test(a, b, ">")


def test_relative_margin_is_a_paired_linear_statistic():
    # lhs > 1.12 * rhs  <=>  mean(lhs - 1.12 rhs) > 0: 0.5 vs 1.12 * 0.45 = 0.504 fails narrowly
    a = side("a", [1.0] * 20 + [0.0] * 20)
    b = side("b", [1.0] * 18 + [0.0] * 22)
    t = paired_test(a, b, ">", margin=0.12, relative=True)
    assert t.value == pytest.approx(0.5 - 1.12 * 0.45) and t.bound == 0.0
    assert t.ci[0] < t.bound < t.ci[1]
    # an absolute margin moves the bound, not the statistic
    t2 = paired_test(a, b, ">", margin=0.1)
    assert t2.value == pytest.approx(0.05) and t2.bound == pytest.approx(0.1)
    t3 = paired_test(a, b, "<", margin=0.1)
    assert t3.bound == pytest.approx(-0.1)


def test_threshold_claims_test_the_mean_against_the_number():
    a, b = side("a", A_BETTER), side("b", B_WORSE)
    out = judge(
        [claim("hi", a.key, ">", 0.7, threshold="ours"), claim("lo", b.key, ">", 0.5, threshold="ours"), claim("mid", a.key, ">", 0.9, threshold="ours")],
        [a, b],
    )
    assert out["hi"]["verdict"] == "reproduced" and out["lo"]["verdict"] == "not reproduced"
    assert out["mid"]["verdict"] in ("inconclusive", "not reproduced")  # the mean sits on the bound: never a pass


def test_maxboxacc_rechooses_its_threshold_in_every_resample():
    hits = torch.zeros(N, 3, dtype=torch.float64)
    hits[:30, 1] = 1  # threshold 1 localises 30 of 40
    hits[:10, 2] = 1
    a = Side("shapes/resnet/a/maxboxacc", hits=hits)
    assert float(statistic(hits)[0]) == pytest.approx(0.75)
    idx = torch.arange(N)[None].repeat(2, 1)
    idx[1] = 0  # a resample made only of image 0, a hit at thresholds 1 and 2
    assert statistic(hits, idx).tolist() == [0.75, 1.0]
    b = Side("shapes/resnet/b/maxboxacc", hits=torch.zeros(N, 3, dtype=torch.float64))
    t = paired_test(a, b, ">")
    assert t.value == pytest.approx(0.75) and t.p_hold < 0.001


def test_holm_matches_hand_computed_adjustment():
    # sorted p: 0.01 (x3), 0.02 (x2), 0.04 (x1) -> 0.03, 0.04, 0.04; original order restored
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_holm_can_turn_a_lone_pass_into_inconclusive_in_a_large_family():
    from shared.verdicts import Test

    borderline = Test(value=0.1, ci=(0.01, 0.2), n=40, bound=0.0, p_hold=0.02, p_fail=0.98)
    assert verdicts([borderline])[0][0] == "reproduced"
    family = [borderline] + [Test(value=0.0, ci=(-1, 1), n=40, bound=0.0, p_hold=0.5, p_fail=0.5)] * 4
    assert verdicts(family)[0][0] == "inconclusive"  # 5 x 0.02 > 0.025
    assert verdicts([None, borderline])[0] == ("not evaluable", None, None)


def test_same_inputs_same_verdicts_and_seeds_per_claim():
    a, b = side("a", A_BETTER), side("b", [float(i % 2) for i in range(N)])
    one = judge([claim("x", a.key, ">", b.key)], [a, b])
    two = judge([claim("y", a.key, ">", b.key), claim("x", a.key, ">", b.key)], [a, b])
    assert one["x"]["ci_low"] == two["x"]["ci_low"] and one["x"]["ci_high"] == two["x"]["ci_high"]


def test_claims_step_reads_scores_and_step_records(tmp_path):
    from shared.results import ResultRecord, write_records

    ids = [f"img{i}" for i in range(N)]
    for name, v in (("a", A_BETTER), ("b", B_WORSE)):
        scores = {"method": name, "model": "resnet", "dataset": "shapes", "image_ids": ids, "per_image": {"pointing_game": v},
                  "maxboxacc": {"thresholds": [0.5], "hits": [[int(x)] for x in v]}}
        (tmp_path / f"{name}.json").write_text(json.dumps(scores))
    rec = ResultRecord("mass_object_minus_other", "a", "resnet", "pairs", 0.3, 0.2, 0.4, N, extra={"per_image": [0.3] * (N - 1) + [None]})
    write_records([rec], tmp_path / "pairs.json")
    paper = tmp_path / "papers" / "p"
    paper.mkdir(parents=True)
    (paper / "paper.yaml").write_text(
        "id: p\ntitle: t\nauthors: [x]\nvenue: v\nyear: 2020\nbibtex: b\nstatus: in-progress\nmethods: [gradcam]\n"
        "results: [{models: [resnet], methods: [gradcam]}]\n"
        "claims:\n"
        "  - {id: pg, statement: s, source: {ref: T1, quote: q, reading: paper}, lhs: '{classification}/resnet/a/pointing_game', op: '>', rhs: '{classification}/resnet/b/pointing_game'}\n"
        "  - {id: mba, statement: s, source: {ref: T1, quote: q, reading: ours}, lhs: '{classification}/resnet/a/maxboxacc', op: '>', rhs: '{classification}/resnet/b/maxboxacc'}\n"
        "  - {id: mass, statement: s, source: {ref: F1, quote: q, reading: ours}, lhs: '{pairs}/resnet/a/mass_object_minus_other', op: '>', rhs: 0, threshold: 'ours: positive'}\n"
    )
    for f in ("method.py", "README.md"):
        (paper / f).write_text("")
    out = tmp_path / "claims.md"
    claims.main(["--paper", "p", "--scores", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--records", str(tmp_path / "pairs.json"),
                 "--out", str(out), "--benchmark-json", '{"classification": "shapes", "pairs": "pairs"}', "--papers-dir", str(tmp_path / "papers")])
    rows = {r["id"]: r for r in json.loads(out.with_suffix(".json").read_text())["claims"]}
    assert rows["pg"]["verdict"] == rows["mba"]["verdict"] == "reproduced"
    assert rows["mass"]["verdict"] == "reproduced" and rows["mass"]["n"] == N - 1 and rows["mass"]["excluded"] == 1
    text = out.read_text()
    assert "3 reproduced, 0 inconclusive, 0 not reproduced, 0 not evaluable." in text and "(our operationalisation)" in text
    # the workflow judges them in the paper's results job (no process of their own): the same files
    from shared.pipeline import results

    merged = tmp_path / "merged" / "claims.md"
    results.main(["--paper", "p", "--scores", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "merged" / "results.json"),
                  "--config-json", json.dumps({"seed": 0, "device": "cpu", "eval": {"bootstrap": 200, "ci": 0.95}}),
                  "--claims-out", str(merged), "--records", str(tmp_path / "pairs.json"),
                  "--benchmark-json", '{"classification": "shapes", "pairs": "pairs"}', "--papers-dir", str(tmp_path / "papers")])
    assert merged.read_bytes() == out.read_bytes() and merged.with_suffix(".json").read_bytes() == out.with_suffix(".json").read_bytes()


def test_a_numeric_rhs_must_say_whose_threshold(tmp_path):
    from shared.paper_meta import PaperError, load_paper

    paper = tmp_path / "p"
    paper.mkdir()
    (paper / "paper.yaml").write_text(
        "id: p\ntitle: t\nauthors: [x]\nvenue: v\nyear: 2020\nbibtex: b\nstatus: in-progress\nmethods: [gradcam]\n"
        "results: [{models: [resnet], methods: [gradcam]}]\n"
        "claims:\n  - {id: c, statement: s, source: {ref: T1, quote: q, reading: paper}, lhs: 'x/resnet/a/pointing_game', op: '>', rhs: 0.8}\n"
    )
    for f in ("method.py", "README.md"):
        (paper / f).write_text("")
    with pytest.raises(PaperError, match="whose threshold"):
        load_paper(paper)


def test_readme_verdict_counts_are_the_pinned_reports(repo_root):
    text = (repo_root / "README.md").read_text()
    start = text.index("<!-- claims-summary")
    block = text[text.index("\n", start) + 1 : text.index("<!-- /claims-summary -->")]
    assert block == claims.summary(repo_root / "reports"), "README's verdict table is stale: regenerate it from reports/"
