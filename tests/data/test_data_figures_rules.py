"""Byte-stable figures, the dataset figure CLI, and the Snakemake rules of the data layer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from PIL import Image

from shared.data.figure import main as figure_main
from shared.data.generate import generate
from shared.figures import save_figure


def _figure() -> Figure:
    fig = Figure(figsize=(2, 2))
    ax = fig.add_subplot()
    ax.plot([0, 1, 2], [1, 0, 1])
    ax.set_title("stable")
    return fig


def test_save_figure_is_byte_stable_without_metadata(tmp_path):
    a = save_figure(_figure(), tmp_path / "a.png")
    b = save_figure(_figure(), tmp_path / "sub" / "b.png")
    assert a.read_bytes() == b.read_bytes()
    assert b"Software" not in a.read_bytes() and b"tIME" not in a.read_bytes()
    assert Image.open(a).size == (200, 200)  # 2 in x 100 dpi
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.png", "b.png", "sub"]  # no temp files


class _Exploding(Artist):
    def draw(self, renderer):  # noqa: ANN001 - matplotlib's signature
        raise RuntimeError("drawing failed")


def test_save_figure_failure_leaves_old_file_and_no_temp(tmp_path):
    target = save_figure(_figure(), tmp_path / "f.png")
    before = target.read_bytes()
    broken = _figure()
    broken.add_artist(_Exploding())
    with pytest.raises(RuntimeError, match="drawing failed"):
        save_figure(broken, target)
    assert target.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["f.png"]
    with pytest.raises(ValueError, match="PNG only"):
        save_figure(_figure(), tmp_path / "f.pdf")


def test_dataset_figure_cli(tmp_path):
    root = generate("shapes_pair", {"image_size": 32, "n_test": 4, "seed": 2, "n_classes": 3}, tmp_path / "p")
    assert figure_main(["--dataset", str(root), "--out", str(tmp_path / "a.png")]) == 0
    assert figure_main(["--dataset", str(root), "--out", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert figure_main(["--dataset", str(tmp_path / "nothing"), "--out", str(tmp_path / "c.png")]) == 1
    assert not (tmp_path / "c.png").exists()


@pytest.mark.slow
def test_data_rules_build_tiny_datasets_and_figures(tmp_path, repo_root):
    """Run rules/data.smk with the tiny config through Snakemake (real subprocesses)."""
    cfg = yaml.safe_load((repo_root / "config" / "tiny.yaml").read_text())
    datasets = {"image_size": 32, "shapes": cfg["datasets"]["shapes"], "shapes_pair": cfg["datasets"]["shapes_pair"]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"datasets": datasets}))
    shutil.copytree(repo_root / "shared", tmp_path / "shared")
    (tmp_path / "Snakefile").write_text(
        f'configfile: "config.yaml"\ninclude: "{repo_root}/rules/data.smk"\n'
        "rule all:\n    input: DATASET_FIGURES\n"
    )
    bin_dir = str(Path(sys.executable).parent)
    run = subprocess.run(
        [f"{bin_dir}/snakemake", "-c1", "--quiet"], cwd=tmp_path, capture_output=True, text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "reports/data/shapes.png").is_file() and (tmp_path / "reports/data/shapes_pair.png").is_file()
    # parts is not in this config: no rule may produce it.
    dry = subprocess.run(
        [f"{bin_dir}/snakemake", "-c1", "-n", "data/datasets/parts"], cwd=tmp_path, capture_output=True, text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=120,
    )
    assert dry.returncode != 0
