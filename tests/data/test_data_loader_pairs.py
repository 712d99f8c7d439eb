"""Loader (in-memory and lazy), on the shapes_pair dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from shared.data import ImageTable, load_split, read_table
from shared.data.generate import generate


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory):
    cfg = {"image_size": 32, "n_test": 6, "seed": 1, "n_classes": 4}
    return generate("shapes_pair", cfg, tmp_path_factory.mktemp("ds") / "shapes_pair")


def test_load_split_matches_files(pairs_root):
    split = load_split(pairs_root, "test")
    rows = read_table(pairs_root, "test")
    assert split.images.dtype == torch.float32 and split.images.shape == (12, 3, 32, 32)
    assert split.labels.dtype == torch.int64 and split.boxes.dtype == torch.int64
    assert split.masks.dtype == torch.bool and split.masks.shape == (12, 32, 32)
    for i in (0, 5):
        pixels = np.asarray(Image.open(pairs_root / rows[i]["image"]))
        assert torch.equal(split.images[i], torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255)
        assert np.array_equal(split.masks[i].numpy(), np.asarray(Image.open(pairs_root / rows[i]["mask"])) == 255)
        assert split.labels[i] == int(rows[i]["label"]) and split.image_ids[i] == rows[i]["image_id"]
    assert split.classes == ["circle", "square", "triangle", "star"]
    assert split.class_names == [split.classes[int(label)] for label in split.labels]
    with pytest.raises(FileNotFoundError, match="split 'train' not found.*has splits \\['test'\\]"):
        load_split(pairs_root, "train")


def test_image_table_resizes_lazily(pairs_root):
    table = ImageTable(pairs_root, "test", size=16)
    assert len(table) == 12
    item = table[3]
    assert item["image"].shape == (3, 16, 16) and item["mask"].shape == (16, 16) and item["mask"].dtype == torch.bool
    full = load_split(pairs_root, "test")
    # Boxes scale by 1/2, rounding outwards; the resized mask stays inside the scaled box.
    x0, y0, x1, y1 = full.boxes[3].tolist()
    assert item["box"].tolist() == [x0 // 2, y0 // 2, -(-x1 // 2), -(-y1 // 2)]
    ys, xs = torch.nonzero(item["mask"], as_tuple=True)
    assert xs.min() >= item["box"][0] and xs.max() < item["box"][2]
    assert ImageTable(pairs_root, "test")[3]["image"].equal(full.images[3])



def test_load_split_keeps_only_the_given_images_in_file_order(pairs_root):
    every = load_split(pairs_root, "test")
    ids = list(dict.fromkeys(every.image_ids))
    chosen = load_split(pairs_root, "test", image_ids={ids[4], ids[1]})  # a set: the split's order decides
    assert chosen.image_ids == [ids[1], ids[1], ids[4], ids[4]]
    assert torch.equal(chosen.images, every.images[[2, 3, 8, 9]]) and torch.equal(chosen.masks, every.masks[[2, 3, 8, 9]])
    assert load_split(pairs_root, "test", limit=1, image_ids=[ids[4], ids[1]]).image_ids == [ids[1], ids[1]]
