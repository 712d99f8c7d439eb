"""The VOC -> ImageNet-1k class mapping (shared.data.voc_imagenet) against timm's ImageNet metadata."""

from __future__ import annotations

import pytest
import torch
from timm.data import ImageNetInfo

from shared.data.convert import VOC_CLASSES
from shared.data.voc_imagenet import (
    UNMAPPED,
    VOC_TO_IMAGENET,
    imagenet_indices,
    imagenet_name,
    imagenet_wnids,
    is_mapped,
    mapped_targets,
)


def test_every_voc_class_is_mapped_or_listed_as_unmapped():
    assert list(VOC_TO_IMAGENET) == list(VOC_CLASSES)
    assert UNMAPPED == ("person",)
    assert not is_mapped("person") and imagenet_indices("person") == ()
    assert all(is_mapped(c) for c in VOC_CLASSES if c != "person")
    with pytest.raises(KeyError, match="not a PASCAL VOC class"):
        imagenet_indices("tiger")


def test_every_wnid_is_in_timms_imagenet_list_and_indices_follow_its_order():
    info = ImageNetInfo()
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and len(set(wnids)) == 1000
    assert list(wnids) == [info.index_to_label_name(i) for i in range(1000)]
    for voc, ids in VOC_TO_IMAGENET.items():
        assert len(set(ids)) == len(ids), voc
        for wnid in ids:
            assert wnid in info.label_names(), (voc, wnid)
        assert [info.index_to_label_name(i) for i in imagenet_indices(voc)] == sorted(ids, key=wnids.index)


def test_spot_checks_by_lemma_name():
    info = ImageNetInfo()
    assert info.index_to_description(281).startswith("tabby")
    assert info.index_to_description(282) == "tiger cat"
    assert info.index_to_description(242) == "boxer"
    assert (imagenet_name(281), imagenet_name(282), imagenet_name(242)) == ("tabby", "tiger cat", "boxer")
    assert imagenet_indices("cat") == (281, 282, 283, 284, 285)
    assert 242 in imagenet_indices("dog")
    assert imagenet_indices("dog") == tuple(range(151, 269))  # the 118 breeds
    assert imagenet_indices("bird") == (*range(7, 25), *range(80, 101), *range(127, 147))  # 59 birds
    assert [info.index_to_description(i).split(",")[0] for i in imagenet_indices("bus")] == ["minibus", "school bus", "trolleybus"]
    car = {info.index_to_description(i).split(",")[0] for i in imagenet_indices("car")}
    assert {"sports car", "convertible", "cab", "beach wagon", "jeep", "limousine", "minivan", "Model T", "racer"} <= car


def test_sets_are_disjoint():
    seen: dict[int, str] = {}
    for voc in VOC_TO_IMAGENET:
        for i in imagenet_indices(voc):
            assert i not in seen, f"ImageNet class {i} maps to both {seen[i]} and {voc}"
            seen[i] = voc
    assert len(seen) == 243


def test_mapped_target_is_the_best_class_within_the_rows_set():
    logits = torch.zeros(3, 1000)
    logits[0, 282] = 2.0  # tiger cat
    logits[0, 281] = 1.0  # tabby
    logits[0, 242] = 9.0  # boxer scores higher, but is not a cat
    logits[1, 242] = 3.0
    logits[1, 151] = 3.0  # a tie within the dog set: the lower index wins (torch.argmax)
    logits[2, :] = -5.0
    logits[2, 817] = -1.0  # sports car, the best car even though every score is negative
    logits[2, 0] = 10.0  # tench: not a car
    targets = mapped_targets(logits, ["cat", "dog", "car"])
    assert targets.tolist() == [282, 151, 817]
    assert targets.dtype == torch.int64
    with pytest.raises(ValueError, match="unmapped"):
        mapped_targets(logits[:1], ["person"])
    with pytest.raises(ValueError, match=r"\(B, 1000\)"):
        mapped_targets(torch.zeros(2, 10), ["cat", "dog"])
    with pytest.raises(ValueError, match="2 VOC classes for 3 rows"):
        mapped_targets(logits, ["cat", "dog"])
