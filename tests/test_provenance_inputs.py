"""Provenance names the data the scoring step read (issue 20, finding 11): the checkpoint's
weights sha256 and the dataset's content hash, from the scores file into every record made from
it; records written before these fields existed load and are written back unchanged."""

from __future__ import annotations

import json

from shared.config import workflow_config
from shared.results import Provenance, ResultRecord, read_records, write_records


def test_records_from_scores_carry_what_the_scoring_step_read(tmp_path):
    from shared.pipeline.results import records_from_scores

    scores = {"method": "m", "model": "resnet", "dataset": "shapes", "per_image": {"pointing_game": [1.0, 0.0]},
              "inputs": {"model_weights_sha256": "b" * 64, "dataset_content_hash": "c" * 64}}
    (rec,) = records_from_scores(scores, {"config_sha256": "x"}, 50, 0.95, 0)
    assert rec.provenance.model_weights_sha256 == "b" * 64 and rec.provenance.dataset_content_hash == "c" * 64
    write_records([rec], tmp_path / "r.json")
    assert read_records(tmp_path / "r.json") == [rec]
    # scores written before the step recorded its inputs: the fields stay out of the JSON
    del scores["inputs"]
    (old,) = records_from_scores(scores, {"config_sha256": "x"}, 50, 0.95, 0)
    assert "model_weights_sha256" not in old.to_dict()["provenance"]


def test_old_records_without_the_new_fields_load(tmp_path):
    # a record as written before the scoring step named its inputs (the pins up to 96afd96)
    old = {
        "metric": "average_drop", "method": "gradcam", "model": "plaincnn", "dataset": "shapes", "value": 12.2275,
        "ci_low": 7.56, "ci_high": 17.4, "n": 96, "extra": {"bootstrap_seed": 0, "ci": 0.95, "n_resamples": 1000},
        "provenance": {"config_sha256": "9fba", "data_dvc_sha256": "ac37", "device": "cpu", "git_commit": "889eef9",
                       "git_dirty": False, "seed": 0, "torch_version": "2.15.0", "uv_lock_sha256": "c5a3"},
    }
    (tmp_path / "results.json").write_text(json.dumps([old], sort_keys=True, indent=2) + "\n")
    records = read_records(tmp_path / "results.json")
    assert records and all(r.provenance.model_weights_sha256 is None for r in records)
    # and they are written back byte for byte
    r = records[0]
    assert ResultRecord.from_dict(json.loads(r.to_json())) == r
    assert set(r.to_dict()["provenance"]) == {f for f in Provenance.__dataclass_fields__} - {"model_weights_sha256", "dataset_content_hash"}


def test_score_step_names_its_checkpoint_and_dataset(tmp_path):
    from shared.pipeline.score import input_identity

    (tmp_path / "m.json").write_text(json.dumps({
        "name": "m", "model": {}, "adapter": {}, "metrics": {}, "classes": [], "format": 1, "weights": {"file": "m.safetensors", "sha256": "b" * 64}
    }))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "meta.json").write_text(json.dumps({"name": "d", "content_hash": "c" * 64}))
    assert input_identity(str(tmp_path / "m.safetensors"), str(tmp_path / "d")) == {
        "model_weights_sha256": "b" * 64, "dataset_content_hash": "c" * 64
    }


def test_batch_step_writes_what_it_read_into_every_scores_file(tmp_path, repo_root, monkeypatch):
    """shared.pipeline.batch (the explain_<model> rules) on a generated dataset and a tiny checkpoint."""
    monkeypatch.syspath_prepend(str(repo_root / "tests" / "models"))
    from tiny_models import TINY_CNN, tiny_split

    from shared import runtime
    from shared.data.generate import main as generate
    from shared.models.checkpoint import adapter_record, save_checkpoint
    from shared.models.train import train_model
    from shared.pipeline.batch import main as batch

    assert generate(["--name", "shapes", "--out", str(tmp_path / "shapes"), "--config-json",
                     json.dumps({"image_size": 16, "n_classes": 2, "n_train": 4, "n_test": 4, "seed": 1})]) == 0
    runtime.setup(seed=0, device="cpu", threads=1, deterministic=True)
    trained = train_model("tiny", {**TINY_CNN, "epochs": 1}, tiny_split(8, 2), tiny_split(4, 2, seed=1), ["a", "b"], seed=0, progress=False)
    meta = save_checkpoint(tmp_path / "tiny.safetensors", trained.adapter.model, {
        "name": "tiny", "model": TINY_CNN, "metrics": trained.metrics, "classes": ["a", "b"], "seed": 0,
        "adapter": adapter_record(trained.adapter),
    })
    config = workflow_config(repo_root / "config" / "tiny.yaml")
    cfg = {k: config[k] for k in ("seed", "device", "threads", "deterministic")} | {"eval": {**config["eval"], "n_images": 4}}
    assert batch(["--model", str(tmp_path / "tiny.safetensors"), "--dataset", str(tmp_path / "shapes"), "--methods", "gradcam",
                  "--maps-dir", str(tmp_path / "maps"), "--scores-dir", str(tmp_path / "scores"), "--config-json", json.dumps(cfg)]) == 0
    scores = json.loads((tmp_path / "scores" / "gradcam.json").read_text())
    assert scores["inputs"] == {
        "model_weights_sha256": meta["weights"]["sha256"],
        "dataset_content_hash": json.loads((tmp_path / "shapes" / "meta.json").read_text())["content_hash"],
    }
