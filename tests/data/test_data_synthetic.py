"""Synthetic generators: byte-stable, and their ground truth holds the invariants it promises."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.data import content_hash, load_split, read_meta, read_table
from shared.data.generate import generate, main
from shared.data.layout import DatasetError, DatasetWriter
from shared.data.synthetic import ConfigError

SHAPES = {"image_size": 32, "n_classes": 4, "n_train": 12, "n_test": 8, "seed": 3}
PAIRS = {"image_size": 40, "n_test": 12, "seed": 4, "n_classes": 5}
PARTS = {"image_size": 48, "n_train_classes": 3, "n_test_classes": 2, "per_class_train": 3, "per_class_test": 2, "seed": 5}


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("name", "cfg"), [("shapes", SHAPES), ("shapes_pair", PAIRS), ("parts", PARTS)])
def test_same_seed_same_bytes_different_seed_differs(tmp_path, name, cfg):
    a = generate(name, cfg, tmp_path / "a")
    b = generate(name, cfg, tmp_path / "b")
    assert _digest(a) == _digest(b)
    c = generate(name, {**cfg, "seed": cfg["seed"] + 1}, tmp_path / "c")
    da, dc = _digest(a), _digest(c)
    assert da.keys() == dc.keys()
    changed = [k for k in da if k.startswith("images/") and da[k] != dc[k]]
    assert len(changed) == sum(k.startswith("images/") for k in da)  # every image differs
    assert read_meta(a)["content_hash"] != read_meta(c)["content_hash"]


def test_content_hash_covers_tables_and_files(tmp_path):
    root = generate("shapes", SHAPES, tmp_path / "s")
    meta = read_meta(root)
    assert meta["content_hash"] == content_hash(root)
    image = root / "images" / "test" / "test_00000.png"
    pixels = np.asarray(Image.open(image)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(image)
    assert content_hash(root) != meta["content_hash"]


def _check_ground_truth(root: Path, split: str) -> list[dict[str, str]]:
    rows = read_table(root, split)
    size = read_meta(root)["image_size"]
    for row in rows:
        mask = np.asarray(Image.open(root / row["mask"])) > 0
        assert mask.shape == tuple(size) and mask.any()
        ys, xs = np.nonzero(mask)
        # Box == the mask's extent, inclusive-exclusive, recomputed here independently.
        assert [int(row[c]) for c in ("x0", "y0", "x1", "y1")] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert set(np.unique(np.asarray(Image.open(root / row["mask"])))) <= {0, 255}
        image = Image.open(root / row["image"])
        assert image.mode == "RGB" and image.size == (size[1], size[0])
    return rows


def test_shapes_ground_truth_and_balance(tmp_path):
    root = generate("shapes", SHAPES, tmp_path / "s")
    meta = read_meta(root)
    assert meta["classes"] == ["circle", "square", "triangle", "star"] and meta["splits"] == ["train", "test"]
    for split, n in (("train", 12), ("test", 8)):
        rows = _check_ground_truth(root, split)
        assert len(rows) == n and {r["object"] for r in rows} == {"0"}
        counts = Counter(int(r["label"]) for r in rows)
        assert sorted(counts) == [0, 1, 2, 3] and max(counts.values()) - min(counts.values()) <= 1
        for r in rows:  # objects are large: 30-55 % of the side (bounding circle), so boxes too
            assert max(int(r["x1"]) - int(r["x0"]), int(r["y1"]) - int(r["y0"])) >= 0.2 * 32


def test_pairs_have_two_different_classes_and_disjoint_masks(tmp_path):
    root = generate("shapes_pair", PAIRS, tmp_path / "p")
    rows = _check_ground_truth(root, "test")
    by_image: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_image.setdefault(r["image_id"], []).append(r)
    assert len(by_image) == 12
    for objects in by_image.values():
        assert [o["object"] for o in objects] == ["0", "1"]
        assert objects[0]["label"] != objects[1]["label"]
        m0, m1 = (np.asarray(Image.open(root / o["mask"])) > 0 for o in objects)
        assert not (m0 & m1).any()
    counts = Counter(int(r["label"]) for r in rows)
    assert set(counts) == set(range(5)) and max(counts.values()) - min(counts.values()) <= 2
    split = load_split(root, "test", limit=3)  # 3 images -> 6 rows, pairs never cut in half
    assert len(split) == 6 and split.objects.tolist() == [0, 1] * 3


def test_parts_disjoint_class_splits_and_small_part(tmp_path):
    root = generate("parts", PARTS, tmp_path / "q")
    meta = read_meta(root)
    train, test = _check_ground_truth(root, "train"), _check_ground_truth(root, "test")
    train_labels, test_labels = {int(r["label"]) for r in train}, {int(r["label"]) for r in test}
    assert train_labels == {0, 1, 2} and test_labels == {3, 4}  # test labels continue
    assert {r["class_split"] for r in train} == {"train"} and {r["class_split"] for r in test} == {"test"}
    assert set(meta["class_splits"]["train"]).isdisjoint(meta["class_splits"]["test"])
    assert Counter(r["label"] for r in train) == Counter({"0": 3, "1": 3, "2": 3})
    for r in train + test:
        x0, y0, x1, y1 = (int(r[c]) for c in ("x0", "y0", "x1", "y1"))
        # The head is whole (not clipped by the border) and small: 15-22 % of the side.
        assert 0 < x0 and 0 < y0 and x1 < 48 and y1 < 48
        assert 0.12 * 48 <= x1 - x0 <= 0.25 * 48 and 0.12 * 48 <= y1 - y0 <= 0.25 * 48


def test_bad_config_is_a_clear_error_and_leaves_nothing(tmp_path, capsys):
    with pytest.raises(ConfigError, match="only 24 colour x pattern classes"):
        generate("parts", {**PARTS, "n_train_classes": 20, "n_test_classes": 10}, tmp_path / "x")
    with pytest.raises(ConfigError, match=r"n_classes must be in 2\.\.8"):
        generate("shapes", {**SHAPES, "n_classes": 9}, tmp_path / "x")
    with pytest.raises(ConfigError, match="missing \\['seed'\\]"):
        generate("shapes", {k: v for k, v in SHAPES.items() if k != "seed"}, tmp_path / "x")
    assert main(["--name", "shapes", "--out", str(tmp_path / "x"), "--config-json", json.dumps({**SHAPES, "image_size": 8})]) == 1
    assert "image_size must be >= 16" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_ground_truth_and_leaves_nothing(tmp_path):
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:4, 3:6] = True
    with pytest.raises(DatasetError, match="empty mask"):
        with DatasetWriter(tmp_path / "d", "d", "synthetic", ["a"], (8, 8)) as writer:
            writer.add_image("test", "i0", image, [{"mask": np.zeros((8, 8), bool), "label": 0, "class_name": "a"}])
    with pytest.raises(DatasetError, match=r"box \(3, 2, 6, 5\) != mask extent \(3, 2, 6, 4\)"):
        with DatasetWriter(tmp_path / "d", "d", "synthetic", ["a"], (8, 8)) as writer:
            writer.add_image("test", "i0", image, [{"mask": mask, "box": (3, 2, 6, 5), "label": 0, "class_name": "a"}])
    with pytest.raises(DatasetError, match="unbalanced"):
        with DatasetWriter(tmp_path / "d", "d", "synthetic", ["a", "b"], (8, 8)) as writer:
            for i, label in enumerate([0, 0, 0, 1]):
                writer.add_image("test", f"i{i}", image, [{"mask": mask, "label": label, "class_name": "ab"[label]}])
            writer.check_balance("test", tolerance=1)
    assert list(tmp_path.iterdir()) == []


def test_regenerating_replaces_the_dataset_whole(tmp_path):
    out = generate("shapes", SHAPES, tmp_path / "s")
    generate("shapes", {**SHAPES, "n_test": 4}, out)
    assert len(read_table(out, "test")) == 4
    assert len(list((out / "images" / "test").iterdir())) == 4  # no stale files from the old one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
