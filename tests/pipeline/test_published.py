"""Published numbers (shared/published.py): verdicts on hand-made per-image values, the setting
check, the paper.yaml schema, the claims step's output, and that the synthetic default never
compares with a published number while paper scale's roles reach every setting."""

from __future__ import annotations

import json

import pytest
import torch

from shared.config import load_config
from shared.paper_meta import PAPERS_DIR, PaperError, load_paper
from shared.pipeline import claims
from shared.published import PUBLISHED_VERDICTS, arch_matches, band_verdict, compare, setting_mismatch
from shared.verdicts import MIN_IMAGES, Side

N = 40
PAPER_SCALE = {"classification": "imagenette", "pairs": "voc2007", "retrieval": "cub"}
MODELS = {"plaincnn": "vgg16.tv_in1k", "resnet": "resnet50"}
KEY = "imagenette/plaincnn/gradcam/average_drop"


def entry(eid: str = "e", value: float = 50.0, scale: float = 1.0, tolerance: float = 5.0, dataset: str = "imagenette", arch: str = "vgg16", ours: str = "{classification}/plaincnn/gradcam/average_drop") -> dict:
    return {
        "id": eid, "statement": "s", "source": {"ref": "Table 1, row r, column c", "quote": "r | 50.00"}, "value": value, "scale": scale,
        "ours": ours, "tolerance": tolerance, "tolerance_reason": "why", "setting": {"dataset": dataset, "arch": arch}, "setting_note": "note",
    }


def side(values, key: str = KEY) -> Side:
    return Side(key, values=torch.as_tensor(values, dtype=torch.float64))


def judge(e: dict, values, key: str = KEY, models: dict | None = None) -> dict:
    return compare(e, key, side(values, key) if values is not None else None, MODELS if models is None else models, seed=0)


def test_a_ci_inside_the_band_is_reproduced():
    out = judge(entry(value=50.0, tolerance=5.0), [49.0, 51.0] * (N // 2))
    assert out["verdict"] == "reproduced" and out["ours"]["mean"] == pytest.approx(50.0) and out["ours"]["n"] == N
    assert 49.0 <= out["ours"]["ci"][0] <= out["ours"]["ci"][1] <= 51.0
    assert out["band"] == [45.0, 55.0] and "lies within" in out["reason"]


def test_a_ci_entirely_outside_the_band_is_not_reproduced_on_either_side():
    above = judge(entry(value=50.0, tolerance=5.0), [69.0, 71.0] * (N // 2))
    below = judge(entry(value=50.0, tolerance=5.0), [29.0, 31.0] * (N // 2))
    assert above["verdict"] == below["verdict"] == "not reproduced"
    assert "lies outside" in above["reason"]


def test_a_ci_across_an_edge_of_the_band_is_inconclusive():
    # hits 0/1 with mean 0.5 on 40 images: the CI (about ±0.15) is wider than the ±0.05 band
    out = judge(entry(value=50.0, scale=0.01, tolerance=0.05, dataset="voc2007"), [0.0, 1.0] * (N // 2), key="voc2007/plaincnn/gradcam/pointing_game_all")
    assert out["published"] == pytest.approx(0.5) and out["ours"]["mean"] == pytest.approx(0.5)
    assert out["verdict"] == "inconclusive" and out["ours"]["ci"][0] < 0.45 and out["ours"]["ci"][1] > 0.55
    assert "crosses an edge" in out["reason"]


def test_band_verdict_edges():
    assert band_verdict((0.45, 0.55), 0.45, 0.55) == "reproduced"  # the band is closed
    assert band_verdict((0.56, 0.6), 0.45, 0.55) == "not reproduced"
    assert band_verdict((0.3, 0.44), 0.45, 0.55) == "not reproduced"
    assert band_verdict((0.5, 0.6), 0.45, 0.55) == "inconclusive"
    assert band_verdict((0.3, 0.7), 0.45, 0.55) == "inconclusive"  # wider than the band


def test_scale_converts_the_printed_value_to_our_units():
    out = judge(entry(value=86.6, scale=0.01, tolerance=0.05, dataset="voc2007"), [0.86, 0.87] * (N // 2), key="voc2007/plaincnn/gradcam/pointing_game_all")
    assert out["published"] == 0.866 and out["band"] == [0.816, 0.916] and out["verdict"] == "reproduced"


def test_another_setting_is_not_applicable_and_says_which_condition_failed():
    synthetic = {"plaincnn": "vgg_small", "resnet": "resnet_small"}
    out = judge(entry(), [50.0] * N, key="shapes/plaincnn/gradcam/average_drop", models=synthetic)
    assert out["verdict"] == "not applicable" and "ours" in out and "mean" not in out["ours"]
    assert out["reason"] == "measured on shapes with vgg_small; the paper's number is for imagenette with vgg16 (the dataset and the architecture differ)"
    only_arch = judge(entry(), [50.0] * N, models={"plaincnn": "vgg19"})
    assert only_arch["verdict"] == "not applicable" and only_arch["reason"].endswith("vgg19; the paper's number is for imagenette with vgg16 (the architecture differs)")
    only_data = judge(entry(dataset="voc2007"), [50.0] * N)
    assert only_data["verdict"] == "not applicable" and only_data["reason"].endswith("(the dataset differs)")
    unknown = judge(entry(), [50.0] * N, models={})
    assert unknown["verdict"] == "not applicable" and "whose architecture this run does not give" in unknown["reason"]


def test_not_applicable_comes_before_a_missing_result():
    out = judge(entry(), None, key="shapes/plaincnn/gradcam/average_drop", models={"plaincnn": "vgg_small"})
    assert out["verdict"] == "not applicable"


def test_architecture_matching_ignores_only_the_pretrained_tag():
    assert arch_matches("vgg16.tv_in1k", "vgg16") and arch_matches("vgg16", "vgg16") and arch_matches("resnet50.a1_in1k", "resnet50")
    assert not arch_matches("vgg16_bn", "vgg16") and not arch_matches("resnet50d", "resnet50") and not arch_matches("vgg_small", "vgg16")
    assert setting_mismatch(entry(), KEY, MODELS) is None


def test_too_few_images_or_a_missing_result_is_not_evaluable():
    few = judge(entry(), [50.0] * (MIN_IMAGES - 1))
    assert few["verdict"] == "not evaluable" and f"fewer than {MIN_IMAGES}" in few["reason"] and "mean" not in few["ours"]
    undefined = judge(entry(), [float("nan")] * (N - MIN_IMAGES + 1) + [50.0] * (MIN_IMAGES - 1))
    assert undefined["verdict"] == "not evaluable" and "left out where the metric is undefined" in undefined["reason"]
    missing = judge(entry(), None)
    assert missing["verdict"] == "not evaluable" and KEY in missing["reason"]


def test_seeded_per_entry_id_whatever_the_order():
    values = [float(i % 7) * 10 for i in range(N)]
    sides = {KEY: side(values)}
    alone = claims.judge_published([entry("x")], sides, PAPER_SCALE, MODELS, seed=3)
    after = claims.judge_published([entry("y"), entry("x")], sides, PAPER_SCALE, MODELS, seed=3)
    assert alone[0]["ours"]["ci"] == after[1]["ours"]["ci"]
    assert alone[0]["ours"]["ci"] != claims.judge_published([entry("x")], sides, PAPER_SCALE, MODELS, seed=4)[0]["ours"]["ci"]


def write_paper(tmp_path, published_yaml: str):
    paper = tmp_path / "papers" / "p"
    paper.mkdir(parents=True)
    (paper / "paper.yaml").write_text(
        "id: p\ntitle: t\nauthors: [x]\nvenue: v\nyear: 2020\nbibtex: b\nstatus: in-progress\nmethods: [gradcam]\n"
        "results: [{models: [plaincnn], methods: [gradcam]}]\n"
        "claims:\n  - {id: c, statement: s, source: {ref: T1, quote: q, reading: paper}, lhs: '{classification}/plaincnn/a/average_drop', op: '<', rhs: '{classification}/plaincnn/b/average_drop'}\n"
        + published_yaml
    )
    for f in ("method.py", "README.md"):
        (paper / f).write_text("")
    return paper


GOOD = (
    "  - {id: pa, statement: s, source: {ref: 'Table 1, row AD, column A', quote: 'AD | 46.56'}, value: 46.56, scale: 1, "
    "ours: '{classification}/plaincnn/a/average_drop', tolerance: 5, tolerance_reason: r, setting: {dataset: imagenette, arch: vgg16}, setting_note: n}\n"
)


@pytest.mark.parametrize(
    "bad, message",
    [
        (GOOD.replace("'{classification}/plaincnn/a/average_drop'", "'imagenette/plaincnn/a/average_drop'"), "is not a result key"),
        (GOOD.replace("'{classification}/plaincnn/a/average_drop'", "'{classification}/plaincnn/average_drop'"), "is not a result key"),
        (GOOD.replace("tolerance_reason: r, ", ""), "'tolerance_reason' is a required property"),
        (GOOD.replace("setting: {dataset: imagenette, arch: vgg16}", "setting: {dataset: imagenette}"), "field published.0.setting: 'arch' is a required property"),
        (GOOD.replace("scale: 1", "scale: 0"), "field published.0.scale"),
        (GOOD.replace("value: 46.56", "value: '46.56 %'"), "field published.0.value"),
        (GOOD.replace("quote: 'AD | 46.56'", "quote: 'AD | 46.56', reading: paper"), "Additional properties are not allowed"),
        (GOOD + GOOD, "the id is used twice"),
    ],
)
def test_a_bad_published_entry_is_a_clear_error(tmp_path, bad, message):
    paper = write_paper(tmp_path, "published:\n" + bad)
    with pytest.raises(PaperError, match="published") as err:
        load_paper(paper)
    assert message in str(err.value)


def test_claims_step_writes_published_comparisons_and_the_summary_reads_old_and_new(tmp_path):
    ids = [f"img{i}" for i in range(N)]
    for name, v in (("a", [44.0, 46.0] * (N // 2)), ("b", [60.0, 62.0] * (N // 2))):
        scores = {"method": name, "model": "plaincnn", "dataset": "imagenette", "image_ids": ids, "per_image": {"average_drop": v}}
        (tmp_path / f"{name}.json").write_text(json.dumps(scores))
    write_paper(tmp_path, "published:\n" + GOOD + GOOD.replace("id: pa", "id: pb").replace("/a/", "/b/"))
    out = tmp_path / "reports" / "p" / "claims.md"
    out.parent.mkdir(parents=True)
    argv = ["--paper", "p", "--scores", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out), "--papers-dir", str(tmp_path / "papers")]
    claims.main([*argv, "--benchmark-json", json.dumps(PAPER_SCALE), "--models-json", json.dumps(MODELS)])
    doc = json.loads(out.with_suffix(".json").read_text())
    assert [c["id"] for c in doc["claims"]] == ["c"] and doc["claims"][0]["verdict"] == "reproduced"
    rows = {r["id"]: r for r in doc["published"]}
    assert rows["pa"]["verdict"] == "reproduced" and rows["pb"]["verdict"] == "not reproduced"
    assert rows["pa"]["ours"]["key"] == "imagenette/plaincnn/a/average_drop" and rows["pa"]["source"]["quote"] == "AD | 46.56"
    assert set(rows["pa"]) >= {"id", "statement", "source", "value", "scale", "published", "ours", "tolerance", "tolerance_reason", "setting", "setting_note", "verdict", "reason"}
    text = out.read_text()
    assert "## Published numbers" in text and "1 reproduced, 0 inconclusive, 1 not reproduced, 0 not evaluable, 0 not applicable." in text
    assert "No Holm correction" in text and "“AD | 46.56”" in text

    # another architecture on the role (as on the synthetic default): the same scores are never compared
    claims.main([*argv, "--benchmark-json", json.dumps(PAPER_SCALE), "--models-json", json.dumps({"plaincnn": "vgg_small"})])
    assert {r["verdict"] for r in json.loads(out.with_suffix(".json").read_text())["published"]} == {"not applicable"}

    # README's summary: a published column once any claims.json has one, "—" for an old file
    old = tmp_path / "reports" / "old"
    old.mkdir()
    (old / "claims.json").write_text(json.dumps([{"id": "c", "verdict": "inconclusive"}]))
    table = claims.summary(tmp_path / "reports")
    assert table.splitlines()[0].endswith("| not evaluable | published numbers |")
    assert "| [old](reports/old/claims.md) | 0 | 1 | 0 | 0 | — |" in table
    assert "| [p](reports/p/claims.md) | 1 | 0 | 0 | 0 | 2 not applicable |" in table
    # old files alone: the table README has today
    (tmp_path / "reports" / "p" / "claims.json").unlink()
    assert claims.summary(tmp_path / "reports") == "| paper | reproduced | inconclusive | not reproduced | not evaluable |\n|---|---|---|---|---|\n| [old](reports/old/claims.md) | 0 | 1 | 0 | 0 |\n"


PAPERS = ("gradcam", "gradcampp", "eigencam")


def _published(config_path: str) -> list[dict]:
    config = load_config(config_path)
    models = {role: m["arch"] for role, m in config["models"].items()}
    rows = []
    for pid in PAPERS:
        doc = load_paper(PAPERS_DIR / pid)
        rows += claims.judge_published(doc.get("published", []), {}, config["benchmark"], models)
    return rows


@pytest.mark.parametrize("config_path", ["config/default.yaml", "config/tiny.yaml"])
def test_on_the_synthetic_configs_every_published_entry_is_not_applicable(config_path):
    rows = _published(config_path)
    assert len(rows) >= 12  # Grad-CAM++ Tables 1 and 10, TorchRay's pointing game
    assert {r["verdict"] for r in rows} == {"not applicable"}, [(r["id"], r["verdict"]) for r in rows]
    assert all(r["reason"].startswith("measured on shapes") for r in rows)


def test_at_paper_scale_every_published_entry_reaches_its_setting():
    # no per-image values given: every entry gets past the setting check and stops at "missing"
    rows = _published("config/paper-scale.yaml")
    assert {r["verdict"] for r in rows} == {"not evaluable"}, [(r["id"], r["reason"]) for r in rows if r["verdict"] != "not evaluable"]
    assert all(v in PUBLISHED_VERDICTS for v in {r["verdict"] for r in rows})


def test_the_templates_commented_example_is_a_valid_entry(tmp_path):
    text = (PAPERS_DIR / "_template" / "paper.yaml").read_text()
    example = [line[2:] for line in text.splitlines() if line.startswith("# published:") or line.startswith("#   ")]
    assert example and example[0] == "published:"
    paper = write_paper(tmp_path, "\n".join(example) + "\n")
    assert load_paper(paper)["published"][0]["ours"] == "{classification}/plaincnn/template_cam/pointing_game"
