"""The real fetcher against a local HTTP server: conversion, resume, and every failure mode."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from shared.data import load_split, read_meta
from shared.data.errors import FetchError
from shared.data.fetch import fetch


def _serve(http_server, filename: str, data: bytes) -> dict:
    base, served = http_server
    served.files[f"/{filename}"] = data
    return {"url": f"{base}/{filename}", "md5": hashlib.md5(data).hexdigest(), "size": len(data), "image_size": 16}


def _leftovers(parent: Path) -> list[str]:
    """Everything in the output's parent except the download cache."""
    return sorted(p.name for p in parent.iterdir() if p.name != "cache")


def test_cub_converts_with_scaled_box_masks_and_disjoint_class_splits(http_server, build_archive, fixture_facts, tmp_path):
    cfg = _serve(http_server, *build_archive("cub"))
    out = fetch("cub", cfg, tmp_path / "cub", cache_dir=tmp_path / "cache", progress=False)
    meta = read_meta(out)
    assert meta["classes"] == ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross", "Groove_billed_Ani"]
    train, test = load_split(out, "train"), load_split(out, "test")
    assert train.labels.tolist() == [0, 1] and test.labels.tolist() == [2, 3]
    assert set(train.class_names).isdisjoint(test.class_names)
    assert train.class_splits == ["train", "train"] and test.class_splits == ["test", "test"]
    # Box of image 1: x, y, w, h = 2, 3, 10, 8 on 40 x 30 -> [2, 12) x [3, 11), scaled to 16 px
    # outwards: x 2*0.4=0.8 -> 0, 12*0.4=4.8 -> 5; y 3*16/30=1.6 -> 1, 11*16/30=5.87 -> 6.
    assert train.boxes[0].tolist() == [0, 1, 5, 6]
    assert train.boxes[1].tolist() == [0, 0, 16, 16]  # image 2's box is the whole image
    expected = np.zeros((16, 16), dtype=bool)
    expected[1:6, 0:5] = True
    assert np.array_equal(train.masks[0].numpy(), expected)
    assert train.images.shape == (2, 3, 16, 16)


def test_voc_one_row_per_object(http_server, build_archive, tmp_path):
    cfg = _serve(http_server, *build_archive("voc2007"))
    out = fetch("voc2007", cfg, tmp_path / "voc", cache_dir=tmp_path / "cache", progress=False)
    split = load_split(out, "test")
    assert split.image_ids == ["000001", "000001", "000004"]
    assert split.objects.tolist() == [0, 1, 0]
    assert split.class_names == ["dog", "person", "car"]
    assert split.labels.tolist() == [11, 14, 6]  # VOC class order
    # Pair rows of one image share its pixels.
    assert np.array_equal(split.images[0].numpy(), split.images[1].numpy())
    # VOC "person" 21..40 x 5..30 (1-based inclusive) = [20, 40) x [4, 30) on 40 x 30 -> 16 px:
    # x 20*0.4 = 8, 40*0.4 = 16; y 4*16/30 = 2.13 -> 2, 30 -> 16.
    assert split.boxes[1].tolist() == [8, 2, 16, 16]
    # what the square images lose, for the pointing game: each JPEG's size and the difficult flags
    meta = read_meta(out)
    assert meta["original_sizes"] == {"000001": [30, 40], "000004": [30, 40]}
    assert meta["pascal_difficult"] == {"000001": [1]}  # the person; 000004 has no difficult object


def test_imagenette_uses_imagenet_indices_and_full_image_boxes(http_server, build_archive, tmp_path):
    cfg = _serve(http_server, *build_archive("imagenette"))
    out = fetch("imagenette", cfg, tmp_path / "nette", image_size=20, cache_dir=tmp_path / "cache", progress=False)
    meta = read_meta(out)
    assert meta["splits"] == ["train", "val"] and meta["image_size"] == [20, 20]
    val = load_split(out, "val")
    assert sorted(val.labels.tolist()) == [0, 701]  # tench, parachute in ImageNet-1k
    assert val.masks.all() and val.boxes.tolist() == [[0, 0, 20, 20]] * 2
    assert len(load_split(out, "train")) == 4


def test_resumes_a_dropped_download_with_a_range_request(http_server, build_archive, tmp_path):
    filename, data = build_archive("voc2007")
    cfg = _serve(http_server, filename, data)
    _, served = http_server
    served.drop_after[f"/{filename}"] = len(data) // 3
    with pytest.raises(FetchError, match="rerun to resume"):
        fetch("voc2007", cfg, tmp_path / "voc", cache_dir=tmp_path / "cache", progress=False)
    part = tmp_path / "cache" / f"{filename}.part"
    assert part.stat().st_size == len(data) // 3
    assert not (tmp_path / "voc").exists() and _leftovers(tmp_path) == []
    fetch("voc2007", cfg, tmp_path / "voc", cache_dir=tmp_path / "cache", progress=False)
    assert served.ranges_seen[-1] == f"bytes={len(data) // 3}-"
    assert (tmp_path / "cache" / filename).read_bytes() == data and not part.exists()
    assert len(load_split(tmp_path / "voc", "test")) == 3


def test_server_without_range_support_restarts_cleanly(http_server, build_archive, tmp_path):
    filename, data = build_archive("voc2007")
    cfg = _serve(http_server, filename, data)
    _, served = http_server
    served.honour_range = False
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{filename}.part").write_bytes(data[:100])
    fetch("voc2007", cfg, tmp_path / "voc", cache_dir=cache, progress=False)
    assert (cache / filename).read_bytes() == data


def test_truncated_archive_is_refused(http_server, build_archive, tmp_path):
    filename, data = build_archive("cub")
    cfg = _serve(http_server, filename, data[: len(data) // 2])
    cfg["size"], cfg["md5"] = len(data), hashlib.md5(data).hexdigest()  # the pinned, true values
    with pytest.raises(FetchError, match=rf"{re.escape(filename)}(\.part)? is truncated: {len(data) // 2} bytes, expected {len(data)}"):
        fetch("cub", cfg, tmp_path / "cub", cache_dir=tmp_path / "cache", progress=False)
    assert _leftovers(tmp_path) == []


def test_corrupted_archive_fails_its_checksum_and_is_deleted(http_server, build_archive, tmp_path):
    filename, data = build_archive("cub")
    corrupted = bytearray(data)
    corrupted[len(data) // 2] ^= 0xFF
    cfg = _serve(http_server, filename, bytes(corrupted))
    cfg["md5"] = hashlib.md5(data).hexdigest()
    actual = hashlib.md5(bytes(corrupted)).hexdigest()
    with pytest.raises(FetchError, match=rf"md5 checksum mismatch: expected {cfg['md5']}, got {actual}.*rerun"):
        fetch("cub", cfg, tmp_path / "cub", cache_dir=tmp_path / "cache", progress=False)
    assert _leftovers(tmp_path) == [] and list((tmp_path / "cache").iterdir()) == []


def test_wrong_pinned_checksum_names_expected_and_actual(http_server, build_archive, tmp_path):
    filename, data = build_archive("imagenette")
    cfg = _serve(http_server, filename, data)
    cfg.pop("md5")
    cfg["sha256"] = "0" * 64
    with pytest.raises(FetchError, match=rf"sha256 checksum mismatch: expected {'0' * 64}, got {hashlib.sha256(data).hexdigest()}"):
        fetch("imagenette", cfg, tmp_path / "nette", cache_dir=tmp_path / "cache", progress=False)
    assert _leftovers(tmp_path) == []


def test_damaged_archive_with_matching_checksum_gives_an_extraction_error(http_server, tmp_path):
    cfg = _serve(http_server, "CUB_200_2011.tgz", b"this is not a gzip file at all")
    with pytest.raises(FetchError, match="cannot extract .*CUB_200_2011.tgz.*checksum"):
        fetch("cub", cfg, tmp_path / "cub", cache_dir=tmp_path / "cache", progress=False)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("cub", "CUB_200_2011/bounding_boxes.txt"),
        ("voc2007", "VOCdevkit/VOC2007/JPEGImages/000004.jpg"),
        ("imagenette", None),
    ],
)
def test_missing_file_inside_archive_is_named(http_server, build_archive, tmp_path, name, missing):
    if missing is None:  # an Imagenette archive without its val/ folder
        filename, data = build_archive(name, drop_prefix="imagenette2-320/val/")
        missing = "imagenette2-320/val"
    else:
        filename, data = build_archive(name, drop=missing)
    cfg = _serve(http_server, filename, data)
    with pytest.raises(FetchError, match=rf"{missing} is missing from {filename}.*delete"):
        fetch(name, cfg, tmp_path / name, cache_dir=tmp_path / "cache", progress=False)
    assert _leftovers(tmp_path) == []


def test_http_error_and_missing_checksum(http_server, tmp_path):
    base, _ = http_server
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch("cub", {"url": f"{base}/nope.tgz", "md5": "0" * 32, "image_size": 16}, tmp_path / "cub",
              cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(FetchError, match="pins no checksum"):
        fetch("cub", {"url": f"{base}/nope.tgz", "image_size": 16}, tmp_path / "cub",
              cache_dir=tmp_path / "cache", progress=False)
    assert _leftovers(tmp_path) == []


def test_cli_reports_errors_without_traceback(http_server, tmp_path, capsys):
    from shared.data.fetch import main

    base, _ = http_server
    cfg = '{"url": "%s/missing.tar", "md5": "%s", "image_size": 16}' % (base, "0" * 32)
    assert main(["--name", "voc2007", "--out", str(tmp_path / "voc"), "--config-json", cfg,
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"]) == 1
    assert "HTTP 404" in capsys.readouterr().err


def test_class_interleaved_spreads_the_first_rows_over_every_class():
    """The evaluation subset is a split's first eval.n_images rows: in the publishers' folder
    order those were one or two Imagenette classes (found by the published-number audit)."""
    from shared.data.convert import class_interleaved

    items = [("b", 1), ("b", 2), ("b", 3), ("a", 1), ("c", 1), ("c", 2)]
    assert class_interleaved(items, lambda i: i[0]) == [("a", 1), ("b", 1), ("c", 1), ("b", 2), ("c", 2), ("b", 3)]
    assert class_interleaved([], lambda i: i) == []
