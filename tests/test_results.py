"""Result records: JSON round trip, stable output, provenance from the repository files."""

import hashlib
import json
import subprocess

import pytest
import torch

from shared.results import Provenance, ResultRecord, dumps, provenance, read_records, record_from_values, write_records


def make_record(**kw):
    base = dict(metric="deletion", method="gradcam", model="resnet10t", dataset="shapes", value=0.123456789,
                ci_low=0.1, ci_high=0.15, n=64, provenance=Provenance(git_commit="abc", seed=0))
    base.update(kw)
    return ResultRecord(**base)


def test_json_round_trip_and_rounding():
    rec = make_record()
    text = rec.to_json()
    back = ResultRecord.from_json(text)
    assert back.value == 0.123457  # 6 significant digits
    assert back.provenance == rec.provenance
    assert back.to_json() == text
    # Keys are sorted at every level, so the file diffs cleanly.
    data = json.loads(text)
    assert list(data) == sorted(data) and list(data["provenance"]) == sorted(data["provenance"])


def test_nan_is_written_as_null_and_unknown_keys_rejected():
    assert json.loads(dumps({"x": float("nan")})) == {"x": None}
    data = make_record().to_dict()
    data["valeu"] = 1
    with pytest.raises(ValueError, match="unknown result record keys"):
        ResultRecord.from_dict(data)


def test_provenance_reads_files_and_tolerates_missing_ones(tmp_path):
    prov = provenance({"seed": 5, "device": "cpu"}, root=tmp_path)
    assert prov["git_commit"] is None and prov["uv_lock_sha256"] is None and prov["data_dvc_sha256"] is None
    assert prov["seed"] == 5 and prov["device"] == "cpu" and prov["torch_version"] == torch.__version__
    (tmp_path / "uv.lock").write_bytes(b"lock\n")
    (tmp_path / "data.dvc").write_bytes(b"outs: []\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "."], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"], cwd=tmp_path, check=True)
    prov = provenance({"b": 1, "a": 2}, root=tmp_path)
    assert prov["uv_lock_sha256"] == hashlib.sha256(b"lock\n").hexdigest()
    assert prov["data_dvc_sha256"] == hashlib.sha256(b"outs: []\n").hexdigest()
    assert len(prov["git_commit"]) == 40 and prov["git_dirty"] is False
    # rewriting an output under reports/ is not a dirty tree; changing an input is
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r.json").write_text("1")
    subprocess.run(["git", "add", "reports"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "r"], cwd=tmp_path, check=True)
    (tmp_path / "reports" / "r.json").write_text("2")
    assert provenance({}, root=tmp_path)["git_dirty"] is False
    (tmp_path / "uv.lock").write_bytes(b"changed\n")
    assert provenance({}, root=tmp_path)["git_dirty"] is True
    # Key order does not change the config hash; a value does.
    assert prov["config_sha256"] == provenance({"a": 2, "b": 1}, root=tmp_path)["config_sha256"]
    assert prov["config_sha256"] != provenance({"a": 3, "b": 1}, root=tmp_path)["config_sha256"]


def test_record_from_values_and_files(tmp_path):
    rec = record_from_values([1.0, 2.0, 3.0, 4.0], metric="m", method="x", model="y", dataset="z",
                             provenance={"seed": 1}, n_resamples=200)
    assert rec.value == 2.5 and rec.n == 4 and rec.ci_low <= 2.5 <= rec.ci_high
    path = tmp_path / "r.json"
    write_records([rec, make_record()], path)
    assert [r.metric for r in read_records(path)] == ["deletion", "m"]


def test_an_undefined_value_leaves_its_image_out_and_tables_count_only_their_metrics():
    from shared.pipeline import table
    from shared.pipeline.results import records_from_scores

    scores = {
        "method": "m", "model": "resnet", "dataset": "d", "image_ids": [0, 1, 2],
        "per_image": {"complexity": [1.0, None, 3.0], "insertion": [0.5, 0.25, 0.75]},
    }
    by_metric = {r.metric: r for r in records_from_scores(scores, {}, n_resamples=20, ci=0.95, seed=0)}
    assert by_metric["complexity"].value == 2.0 and by_metric["complexity"].n == 2
    assert by_metric["complexity"].extra["undefined"] == 1 and "undefined" not in by_metric["insertion"].extra
    md, _ = table.render(list(by_metric.values()), ["insertion"], None, None, None)
    assert "n = 3 images" in md  # complexity's n = 2 is not a cell of this table
    md, _ = table.render(list(by_metric.values()), ["insertion", "complexity"], None, None, None)
    assert "n = 2, 3 images" in md


def test_a_paper_whose_numbers_are_all_step_records_has_empty_results_and_judged_claims(tmp_path):
    """`results: []` (TraNCE: no shared per-image method): the results job reads no scores file,
    writes an empty results.json, and judges the claims from the step records alone."""
    from shared.pipeline import results

    out = tmp_path / "results.json"
    cfg = {"seed": 0, "device": "cpu", "eval": {"bootstrap": 10, "ci": 0.95}}
    assert results.main(["--paper", "trance", "--out", str(out), "--config-json", json.dumps(cfg)]) == 0
    assert read_records(out) == []
