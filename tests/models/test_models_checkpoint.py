"""Checkpoints round-trip exactly; broken ones fail with a message naming the file and the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from shared.models import CheckpointError, load_checkpoint
from shared.models.gate import GateError, check_gate
from shared.models.gate import main as gate_main
from shared.models.report import main as report_main
from shared.models.train import train_model
from tiny_models import TINY_CNN, tiny_split


def test_round_trip_gives_the_same_outputs(tiny_classifier_checkpoint: Path) -> None:
    meta = json.loads(tiny_classifier_checkpoint.with_suffix(".json").read_text())
    adapter = load_checkpoint(tiny_classifier_checkpoint)
    assert adapter.name == "tiny" and adapter.classes == ["a", "b"]
    assert adapter.target_layer == meta["adapter"]["target_layer"]
    assert not adapter.training and not any(p.requires_grad for p in adapter.parameters())
    # rebuild the same network independently from the raw tensors and compare outputs
    import timm

    reference = timm.create_model("vgg_small", num_classes=2, cfg=TINY_CNN["arch_kwargs"]["cfg"])
    reference.load_state_dict(load_file(str(tiny_classifier_checkpoint)))
    reference.eval()
    x = tiny_split(8, 2, seed=7).images
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(adapter(x), reference((x - mean) / std), rtol=0, atol=0)
    # loading through the sidecar path works too
    assert torch.equal(load_checkpoint(tiny_classifier_checkpoint.with_suffix(".json"))(x), adapter(x))


def test_corrupted_checkpoint_names_file_and_remedy(tiny_classifier_checkpoint: Path) -> None:
    data = bytearray(tiny_classifier_checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tiny_classifier_checkpoint.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tiny_classifier_checkpoint)
    msg = str(err.value)
    assert str(tiny_classifier_checkpoint) in msg and "corrupted" in msg
    assert "snakemake data/models/tiny.safetensors" in msg


def test_truncated_checkpoint_is_refused(tiny_classifier_checkpoint: Path) -> None:
    data = tiny_classifier_checkpoint.read_bytes()
    tiny_classifier_checkpoint.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tiny_classifier_checkpoint)


def test_missing_sidecar_or_weights(tiny_classifier_checkpoint: Path) -> None:
    side = tiny_classifier_checkpoint.with_suffix(".json")
    moved = side.with_name("elsewhere.json")
    shutil.move(side, moved)
    with pytest.raises(CheckpointError, match=r"sidecar .*tiny\.json is missing"):
        load_checkpoint(tiny_classifier_checkpoint)
    shutil.move(moved, side)
    tiny_classifier_checkpoint.unlink()
    with pytest.raises(CheckpointError, match=r"weights .*tiny\.safetensors are missing"):
        load_checkpoint(side)


def test_sidecar_weights_mismatch_is_refused(tiny_classifier_checkpoint: Path) -> None:
    # weights of another architecture with a matching checksum: the sidecar's architecture wins
    side = tiny_classifier_checkpoint.with_suffix(".json")
    meta = json.loads(side.read_text())
    meta["model"]["arch_kwargs"] = {"cfg": [8, "M", 32]}
    side.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit the architecture"):
        load_checkpoint(tiny_classifier_checkpoint)
    # valid safetensors whose checksum is not the sidecar's
    save_file({"x": torch.zeros(1)}, str(tiny_classifier_checkpoint))
    with pytest.raises(CheckpointError, match="do not match their sidecar"):
        load_checkpoint(tiny_classifier_checkpoint)


def test_changed_architecture_is_refused(tiny_classifier_checkpoint: Path) -> None:
    # same tensor shapes, different computation (e.g. a factory lost a pool): the signature says so
    side = tiny_classifier_checkpoint.with_suffix(".json")
    meta = json.loads(side.read_text())
    assert len(meta["architecture_signature"]) == 16
    meta["architecture_signature"] = "0" * 16
    side.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="another version of architecture"):
        load_checkpoint(tiny_classifier_checkpoint)


def test_invalid_sidecar_json(tiny_classifier_checkpoint: Path) -> None:
    tiny_classifier_checkpoint.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tiny_classifier_checkpoint)


def test_gate_passes_and_fails_with_a_clear_message(tiny_classifier_checkpoint: Path, tmp_path: Path, capsys) -> None:
    side = tiny_classifier_checkpoint.with_suffix(".json")
    value = json.loads(side.read_text())["metrics"]["test_accuracy"]
    out = tmp_path / "tiny.gate.json"
    assert gate_main(["--sidecar", str(side), "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["passed"] is True and record["value"] == value
    with pytest.raises(GateError, match=r"fails its quality gate.*proves nothing.*snakemake data/models/tiny\.gate\.json"):
        check_gate(side, gate=value + 0.01)
    failed = tmp_path / "failed.gate.json"
    assert gate_main(["--sidecar", str(side), "--out", str(failed), "--gate", "1.01"]) == 1
    assert not failed.exists()
    assert "GATE FAILED" in capsys.readouterr().err


def test_report_lists_metrics_with_provenance(tiny_classifier_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "models.json"
    side = tiny_classifier_checkpoint.with_suffix(".json")
    assert report_main(["--out", str(out), str(side)]) == 0
    report = json.loads(out.read_text())
    entry = report["models"]["tiny"]
    assert entry["metric_name"] == "test_accuracy"
    assert entry["value"] == pytest.approx(json.loads(side.read_text())["metrics"]["test_accuracy"], rel=1e-5)  # 6 digits kept
    assert {"git_commit", "uv_lock_sha256", "config_sha256"} <= set(report["provenance"])
    first = out.read_bytes()
    report_main(["--out", str(out), str(side)])
    assert out.read_bytes() == first  # byte-stable
