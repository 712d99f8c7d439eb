"""The aggregation steps on hand-made scores: CIs, tables, claim verdicts, verify's comparison."""

from __future__ import annotations

import json
import shutil
import tempfile

import pytest
import torch

from shared.pipeline import table
from shared.pipeline.io import load_maps, positive_references, save_maps
from shared.pipeline.results import records_from_scores, result_key
from shared.provenance_cli import compare_results, record_files, verify
from shared.results import ResultRecord, write_records


def scores(method: str, values: list[float], hits: list[list[int]] | None = None) -> dict:
    return {
        "method": method,
        "model": "resnet",
        "dataset": "shapes",
        "per_image": {"pointing_game": values},
        "maxboxacc": {"thresholds": [0.1, 0.5], "hits": hits or [[1, 0]] * len(values)},
        "image_ids": [str(i) for i in range(len(values))],
    }


def test_positive_references_pick_the_next_same_class_row():
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    assert positive_references(labels).tolist() == [2, 4, 5, 3, 1, 0]


def test_records_from_scores_mean_ci_and_maxboxacc():
    recs = {r.metric: r for r in records_from_scores(scores("a", [1, 0, 1, 1], [[1, 0], [1, 1], [0, 1], [1, 1]]), {}, 200, 0.95, 0)}
    pg = recs["pointing_game"]
    assert pg.value == pytest.approx(0.75) and pg.n == 4
    assert 0 <= pg.ci_low <= 0.75 <= pg.ci_high <= 1
    mba = recs["maxboxacc"]
    assert mba.value == pytest.approx(0.75)  # both thresholds reach 3/4; the first is reported
    assert mba.extra["best_threshold"] == 0.1


def test_table_renders_values_and_missing_cells():
    recs = records_from_scores(scores("gradcam", [1, 1, 0, 1]), {}, 100, 0.95, 0)
    md, csv_text = table.render(recs, ["pointing_game", "deletion"], None, None, "Localisation")
    row = [line for line in md.splitlines() if "| gradcam |" in line][0]
    assert "0.750 [" in row and row.rstrip().endswith("| — |")
    assert csv_text.splitlines()[1].startswith("shapes,resnet,gradcam,0.75,")


def test_verify_comparison_flags_what_moved():
    def rec(v: float) -> ResultRecord:
        return ResultRecord("pointing_game", "a", "resnet", "shapes", v, None, None, 10)

    doc = {"tolerance": {"default": 0.01, "metrics": {"pointing_game": 0.05}}}
    rows = compare_results(doc, {"k1": rec(0.5), "k2": rec(0.5)}, {"k1": rec(0.54), "k2": rec(0.6), "k3": rec(0.1)})
    by = {r["key"]: r for r in rows}
    assert not by["k1"]["moved"] and by["k2"]["moved"] and by["k3"]["moved"]


def test_verify_compares_every_record_file_of_a_paper_not_only_results(tmp_path):
    def rec(metric: str, v: float) -> ResultRecord:
        return ResultRecord(metric, "a", "resnet", "shapes", v, None, None, 10)

    write_records([rec("pointing_game", 0.5)], tmp_path / "results.json")
    write_records([rec("randomised_spearman", 0.1)], tmp_path / "sanity.json")
    (tmp_path / "claims.json").write_text(json.dumps([{"id": "c", "verdict": "reproduced"}]))
    (tmp_path / "agreement.json").write_text(json.dumps({"pairs": []}))
    found = record_files(tmp_path)
    assert sorted(found) == ["sanity.json: shapes/resnet/a/randomised_spearman", "shapes/resnet/a/pointing_game"]


def test_verify_outside_a_git_checkout_says_so_and_leaves_no_scratch(tmp_path, repo_root, monkeypatch):
    shutil.copytree(repo_root / "papers" / "gradcampp", tmp_path / "papers" / "gradcampp")
    shutil.copytree(repo_root / "reports" / "gradcampp", tmp_path / "reports" / "gradcampp")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    code, report = verify("gradcampp", None, 1, tmp_path)
    assert code == 2 and "is not a git checkout" in report
    assert not any((tmp_path / "tmp").iterdir())


def test_maps_round_trip(tmp_path):
    maps = torch.rand(3, 5, 5)
    save_maps(tmp_path / "m.safetensors", maps, {"method": "x"})
    back, meta = load_maps(tmp_path / "m.safetensors")
    assert torch.equal(back, maps) and meta == {"method": "x"}
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
