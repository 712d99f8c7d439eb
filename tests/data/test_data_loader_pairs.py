"""Loader (in-memory and lazy) and the pair sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from shared.data import ImageTable, load_split, read_table
from shared.data.generate import generate
from shared.data.pairs import sample_pairs


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


@settings(max_examples=40, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=3, max_size=40), n=st.integers(1, 30), seed=st.integers(0, 2**31))
def test_sample_pairs_properties(labels, n, seed):
    labels = np.array(labels)
    counts = np.bincount(labels)
    if (counts < 2).all() or np.unique(labels).size < 2:
        with pytest.raises(ValueError):
            sample_pairs(labels, max(n, 2), seed)
        return
    query, ref, same = sample_pairs(labels, n, seed)
    assert query.shape == ref.shape == same.shape == (n,)
    assert same.sum() == n // 2  # half same, half different
    assert (query != ref).all()
    assert np.array_equal(labels[query] == labels[ref], same)
    again = sample_pairs(torch.tensor(labels), n, seed)
    assert all(np.array_equal(a, b) for a, b in zip((query, ref, same), again))


def test_sample_pairs_covers_all_candidates():
    labels = np.array([0, 0, 0, 1, 1, 2])
    query, ref, same = sample_pairs(labels, 4000, seed=0)
    pairs = set(zip(query[same].tolist(), ref[same].tolist()))
    # Every ordered same-class pair of distinct rows occurs: 3*2 (class 0) + 2*1 (class 1).
    assert pairs == {(a, b) for a in range(6) for b in range(6) if a != b and labels[a] == labels[b]}
    diff = set(zip(query[~same].tolist(), ref[~same].tolist()))
    assert diff == {(a, b) for a in range(6) for b in range(6) if labels[a] != labels[b]}
    assert not np.array_equal(sample_pairs(labels, 50, 1)[0], sample_pairs(labels, 50, 2)[0])
