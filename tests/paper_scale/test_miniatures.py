"""The paper-scale fetch rehearsed offline: miniature archives in the publishers' formats go
through the real ``shared.data.fetch.fetch`` (download over HTTP, checksum, extraction,
conversion) and the written datasets are compared with what the builders put in."""

from __future__ import annotations

import colorsys
import math
import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from shared.data import load_split, read_meta
from shared.data.convert import IMAGENETTE_WNIDS, VOC_CLASSES
from shared.data.errors import FetchError
from shared.data.fetch import fetch

from .miniatures import (
    CUB_CLASSES,
    FILENAMES,
    TAR_MTIME,
    archive_entry,
    build_all,
    build_cub,
    build_imagenette,
    build_voc2007_test,
    cub_plan,
    imagenette_plan,
    md5_of,
    voc2007_plan,
)
from .server import serve

REPO = Path(__file__).resolve().parents[2]
SIZE = 64  # side of the converted images


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, Path]:
    return build_all(tmp_path_factory.mktemp("archives"))


@pytest.fixture(scope="module")
def base(archives):
    with serve(archives["cub"].parent) as url:
        yield url


def entry(archives: dict[str, Path], base: str, name: str) -> dict:
    return archive_entry(archives[name], f"{base}/{archives[name].name}")


@pytest.fixture(scope="module")
def fetched(archives, base, tmp_path_factory) -> dict[str, Path]:
    """Each miniature downloaded, verified, extracted and converted by the real fetcher."""
    root = tmp_path_factory.mktemp("datasets")
    return {
        name: fetch(name, entry(archives, base, name), root / name, image_size=SIZE, cache_dir=root / "cache",
                    progress=False)
        for name in archives
    }


def outward(box: tuple[float, float, float, float], width: int, height: int) -> list[int]:
    """An inclusive-exclusive pixel box scaled to SIZE x SIZE, rounded outwards."""
    x0, y0, x1, y1 = box
    return [math.floor(x0 * SIZE / width), math.floor(y0 * SIZE / height),
            math.ceil(x1 * SIZE / width), math.ceil(y1 * SIZE / height)]


# ----------------------------------------------------------------------------- the archives themselves


def test_builders_are_byte_deterministic_and_small(archives, tmp_path):
    again = build_all(tmp_path / "again")
    digests = {name: md5_of(path) for name, path in archives.items()}
    assert {name: md5_of(path) for name, path in again.items()} == digests
    assert sum(path.stat().st_size for path in archives.values()) < 3_000_000
    # The seed changes the content (so the determinism above is not a constant output).
    assert md5_of(build_imagenette(tmp_path / "seed1", seed=1)) != md5_of(archives["imagenette"])
    assert md5_of(build_voc2007_test(tmp_path / "seed1", seed=1)) != md5_of(archives["voc2007"])
    assert md5_of(build_cub(tmp_path / "seed1", seed=1)) != md5_of(archives["cub"])


def test_archive_names_and_entries_match_the_paper_scale_config(archives):
    datasets = yaml.safe_load((REPO / "config" / "paper-scale.yaml").read_text())["datasets"]
    for name, path in archives.items():
        assert path.name == FILENAMES[name] == datasets[name]["url"].rsplit("/", 1)[-1]
        cfg = archive_entry(path, f"http://example.invalid/{path.name}")
        assert set(cfg) == {"url", "md5", "size"} and set(cfg) <= set(datasets[name]) | {"size"}
        assert cfg["size"] == path.stat().st_size and len(cfg["md5"]) == 32


def test_archives_have_the_publishers_containers_and_layout(archives):
    raw = {name: path.read_bytes() for name, path in archives.items()}
    assert raw["imagenette"][:2] == raw["cub"][:2] == b"\x1f\x8b"  # gzip
    assert raw["cub"][4:8] == raw["imagenette"][4:8] == b"\0\0\0\0"  # gzip header mtime 0
    assert raw["voc2007"][257:262] == b"ustar"  # a plain, uncompressed tar
    tops = {}
    for name, path in archives.items():
        with tarfile.open(path) as tar:
            members = tar.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        assert {m.mtime for m in members} == {TAR_MTIME} and {m.uname for m in members} == {"repro"}
        tops[name] = {m.name.split("/")[0] for m in members}
        names = {m.name for m in members}
        if name == "imagenette":
            assert "imagenette2-320/noisy_imagenette.csv" in names
            assert {n.split("/")[2] for n in names if n.count("/") >= 3} == set(IMAGENETTE_WNIDS)
        elif name == "voc2007":
            assert {"VOCdevkit/VOC2007/ImageSets/Main/test.txt", "VOCdevkit/VOC2007/ImageSets/Main/cat_test.txt",
                    "VOCdevkit/VOC2007/Annotations/000001.xml", "VOCdevkit/VOC2007/JPEGImages/000001.jpg"} <= names
        else:
            assert {f"CUB_200_2011/{f}" for f in ("images.txt", "image_class_labels.txt", "bounding_boxes.txt",
                                                   "classes.txt", "train_test_split.txt", "parts/parts.txt")} <= names
    assert tops == {"imagenette": {"imagenette2-320"}, "voc2007": {"VOCdevkit"},
                    "cub": {"CUB_200_2011", "attributes.txt"}}


def test_voc_plan_has_what_the_pairs_experiments_need():
    plan = voc2007_plan()
    pairs = [image for image in plan if len(image.objects) == 2 and len(set(image.classes)) == 2]
    pair_classes = Counter(frozenset(image.classes) for image in pairs)
    assert pair_classes[frozenset({"cat", "dog"})] >= 3
    assert pair_classes[frozenset({"car", "bus"})] >= 1 and pair_classes[frozenset({"horse", "person"})] >= 1
    assert any(len(image.objects) == 1 for image in plan) and any(len(image.objects) == 3 for image in plan)
    assert any(obj.difficult for image in plan for obj in image.objects)
    assert any(min(obj.area for obj in image.objects) < image.width * image.height / 4 for image in pairs)
    assert {(image.width, image.height) for image in plan} >= {(500, 375), (375, 500)}
    for image in plan:  # 1-based inclusive boxes inside the image
        for obj in image.objects:
            xmin, ymin, xmax, ymax = obj.box
            assert 1 <= xmin < xmax <= image.width and 1 <= ymin < ymax <= image.height


# ----------------------------------------------------------------------------- through the real fetcher


def test_imagenette_converts_with_imagenet_indices(fetched):
    plan = imagenette_plan()
    out = fetched["imagenette"]
    meta = read_meta(out)
    assert meta["splits"] == ["train", "val"] and meta["image_size"] == [SIZE, SIZE]
    assert meta["label_space"] == "imagenet-1k"
    for split_name in ("train", "val"):
        split = load_split(out, split_name)
        expected = {image.image_id: image.label for image in plan if image.split == split_name}
        assert len(split) == len(expected) == 10 * 2
        assert dict(zip(split.image_ids, split.labels.tolist())) == expected
        assert Counter(split.labels.tolist()) == {index: 2 for index, _ in IMAGENETTE_WNIDS.values()}
        assert split.boxes.tolist() == [[0, 0, SIZE, SIZE]] * len(split) and bool(split.masks.all())
        assert split.images.shape == (len(split), 3, SIZE, SIZE)
    train = load_split(out, "train")
    tench = [image.image_id for image in plan if image.split == "train" and image.wnid == "n01440764"]
    assert [int(train.labels[train.image_ids.index(i)]) for i in tench] == [0, 0]  # tench is ImageNet class 0
    gray = next(image.image_id for image in plan if image.grayscale)
    pixels = train.images[train.image_ids.index(gray)]
    assert bool((pixels[0] == pixels[1]).all() and (pixels[1] == pixels[2]).all())  # a 1-channel JPEG, now RGB


def test_voc_converts_one_row_per_object_with_difficult_ones_kept(fetched):
    plan = voc2007_plan()
    split = load_split(fetched["voc2007"], "test")
    rows = [(image.image_id, obj) for image in plan for obj in image.objects]
    assert len(split) == len(rows) and len(set(split.image_ids)) == len(plan) == 12
    assert split.image_ids == [image_id for image_id, _ in rows]  # test.txt order, objects in XML order
    assert split.class_names == [obj.name for _, obj in rows]
    assert split.labels.tolist() == [VOC_CLASSES.index(obj.name) for _, obj in rows]
    assert sum(obj.difficult for _, obj in rows) >= 3  # ... and every one of them has its row
    # Image 000001 (500 x 375): cat at VOC (30, 60, 229, 330), 1-based inclusive = [29, 229) x [59, 330)
    # in pixels; to 64 px: x 29 * 64/500 = 3.71 -> 3, 229 * 0.128 = 29.31 -> 30;
    # y 59 * 64/375 = 10.07 -> 10, 330 * 64/375 = 56.32 -> 57.
    assert split.boxes[0].tolist() == [3, 10, 30, 57]
    # dog (270, 40, 480, 350) = [269, 480) x [39, 350): x 34.43 -> 34, 61.44 -> 62; y 6.66 -> 6, 59.73 -> 60.
    assert split.boxes[1].tolist() == [34, 6, 62, 60]
    sizes = {image.image_id: (image.width, image.height) for image in plan}
    for row, (image_id, obj) in enumerate(rows):
        xmin, ymin, xmax, ymax = obj.box
        assert split.boxes[row].tolist() == outward((xmin - 1, ymin - 1, xmax, ymax), *sizes[image_id])
        x0, y0, x1, y1 = split.boxes[row].tolist()
        assert int(split.masks[row].sum()) == (x1 - x0) * (y1 - y0)
    # The cat is drawn as a filled shape inside its box: the middle of its box has the cat's colour.
    cat = np.array(colorsys.hsv_to_rgb(VOC_CLASSES.index("cat") / 20, 0.8, 0.9))
    x0, y0, x1, y1 = split.boxes[0].tolist()
    assert np.abs(split.images[0, :, (y0 + y1) // 2, (x0 + x1) // 2].numpy() - cat).max() < 0.1


def test_voc_converted_images_support_the_pairs_experiments(fetched):
    split = load_split(fetched["voc2007"], "test")
    objects: dict[str, list[int]] = {}
    for row, image_id in enumerate(split.image_ids):
        objects.setdefault(image_id, []).append(row)
    pairs = {i: rows for i, rows in objects.items()
             if len(rows) == 2 and len({split.class_names[r] for r in rows}) == 2}
    assert sum({split.class_names[r] for r in rows} == {"cat", "dog"} for rows in pairs.values()) >= 3
    # A small object (< 1/4 of the image) beside an object of another class.
    assert any(min(int(split.masks[r].sum()) for r in rows) < SIZE * SIZE / 4 for rows in pairs.values())
    assert {len(rows) for rows in objects.values()} == {1, 2, 3}


def test_cub_splits_by_class_halves_and_ignores_extra_files(fetched):
    plan = cub_plan()
    out = fetched["cub"]
    names = [folder.split(".", 1)[1] for folder in CUB_CLASSES[:8]]
    meta = read_meta(out)
    assert meta["classes"] == names
    assert meta["class_splits"] == {"train": names[:4], "test": names[4:]}
    train, test = load_split(out, "train"), load_split(out, "test")
    assert len(train) == len(test) == 4 * 3
    assert Counter(train.labels.tolist()) == {0: 3, 1: 3, 2: 3, 3: 3}
    assert Counter(test.labels.tolist()) == {4: 3, 5: 3, 6: 3, 7: 3}
    assert set(train.class_names) == set(names[:4]) and set(test.class_names) == set(names[4:])
    assert train.class_splits == ["train"] * 12 and test.class_splits == ["test"] * 12
    by_id = {f"cub_{image.image_id:05d}": image for image in plan}
    for split in (train, test):
        for row, image_id in enumerate(split.image_ids):
            image = by_id[image_id]
            assert split.class_names[row] == image.class_name
            x, y, w, h = image.box
            assert split.boxes[row].tolist() == outward((x, y, x + w, y + h), image.width, image.height)
    # train_test_split.txt is not the metric-learning split: images it calls training land in test.
    assert any(by_id[i].is_training for i in test.image_ids) and any(not by_id[i].is_training for i in train.image_ids)


# ----------------------------------------------------------------------------- resume and failure


def test_interrupted_download_resumes_with_a_range_request(archives, base, tmp_path):
    filename = FILENAMES["voc2007"]
    data = archives["voc2007"].read_bytes()
    cache = tmp_path / "cache"
    cache.mkdir()
    half = len(data) // 2
    (cache / f"{filename}.part").write_bytes(data[:half])
    seen = len(base.requests_for(filename))
    out = fetch("voc2007", entry(archives, base, "voc2007"), tmp_path / "voc", image_size=SIZE, cache_dir=cache,
                progress=False)
    new = base.requests_for(filename)[seen:]
    assert [(r.range, r.status) for r in new] == [(f"bytes={half}-", 206)]
    assert (cache / filename).read_bytes() == data and not (cache / f"{filename}.part").exists()
    assert len(load_split(out, "test")) == sum(len(image.objects) for image in voc2007_plan())
    # The verified archive in the cache is used again without another request.
    fetch("voc2007", entry(archives, base, "voc2007"), tmp_path / "voc2", image_size=SIZE, cache_dir=cache,
          progress=False)
    assert len(base.requests_for(filename)) == seen + 1


@pytest.mark.parametrize("name", ["imagenette", "voc2007", "cub"])
def test_wrong_md5_fails_and_leaves_no_output(archives, base, tmp_path, name):
    cfg = entry(archives, base, name)
    cfg["md5"] = "0" * 32
    message = rf"{re.escape(FILENAMES[name])}.*md5 checksum mismatch: expected 0{{32}}, got {md5_of(archives[name])}"
    with pytest.raises(FetchError, match=message):
        fetch(name, cfg, tmp_path / name, image_size=SIZE, cache_dir=tmp_path / "cache", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no output, no extraction folder
    assert list((tmp_path / "cache").iterdir()) == []  # the wrong file was deleted, not kept to resume
