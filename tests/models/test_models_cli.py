"""End to end through the command lines the Snakemake rules call, on a tiny generated dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import REPO_ROOT

pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SALIENCY_DEVICE": "cpu"}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shared.data.generate import generate

    out = tmp_path_factory.mktemp("data") / "shapes"
    generate("shapes", {"image_size": 32, "n_classes": 3, "n_train": 48, "n_test": 24, "seed": 1}, out)
    return out


def test_train_gate_report_command_lines(tiny_shapes: Path, tmp_path: Path) -> None:
    model = {"arch": "vgg_small", "dataset": "shapes", "task": "classifier", "epochs": 2, "batch_size": 16,
             "lr": 0.003, "gate": 0.0, "augment": {"hflip": True, "shift": 2}}
    cfg = json.dumps({"seed": 1, "device": "cpu", "threads": 2, "deterministic": True, "model": model})
    # one run: byte-identical training is test_models_training's (in process) and the tiny
    # workflow's (two cold runs through these command lines)
    outs = [tmp_path / "a" / "plaincnn.safetensors"]
    proc = _run("shared.models.train", "--name", "plaincnn", "--data", str(tiny_shapes), "--out", str(outs[0]), "--config-json", cfg)
    assert proc.returncode == 0, proc.stderr
    assert "test_accuracy" in proc.stdout
    meta = json.loads(outs[0].with_suffix(".json").read_text())
    data_meta = json.loads((tiny_shapes / "meta.json").read_text())
    assert meta["dataset"]["content_hash"] == data_meta["content_hash"]
    assert meta["classes"] == data_meta["classes"]
    assert meta["architecture"]["num_classes"] == 3
    assert meta["adapter"]["target_layer"] == "features.17"

    gate = tmp_path / "plaincnn.gate.json"
    proc = _run("shared.models.gate", "--sidecar", str(outs[0].with_suffix(".json")), "--out", str(gate))
    assert proc.returncode == 0, proc.stderr
    proc = _run("shared.models.gate", "--sidecar", str(outs[0].with_suffix(".json")), "--out", str(tmp_path / "x.json"), "--gate", "1.01")
    assert proc.returncode == 1 and "fails its quality gate" in proc.stderr

    report = tmp_path / "models.json"
    proc = _run("shared.models.report", "--out", str(report), str(outs[0].with_suffix(".json")))
    assert proc.returncode == 0, proc.stderr
    # the report keeps 6 significant digits
    assert json.loads(report.read_text())["models"]["plaincnn"]["value"] == pytest.approx(meta["metrics"]["test_accuracy"], rel=1e-5)
