"""Localisation metrics against hand-computed values; connected components against scipy."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from shared.metrics import (
    cam_localisation,
    energy_pointing_game,
    max_box_accuracy,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from shared.metrics.components import box_iou, label_components, largest_component_boxes


def test_pointing_game_tolerance_in_pixels():
    maps = torch.zeros(1, 10, 10)
    maps[0, 2, 3] = 1.0
    masks = torch.zeros(1, 10, 10, dtype=torch.bool)
    masks[0, 2, 6] = True  # 3 px to the right of the maximum
    assert pointing_game(maps, masks, tolerance=2.9).item() == 0.0
    assert pointing_game(maps, masks, tolerance=3.0).item() == 1.0
    masks[0, 2, 6] = False
    masks[0, 5, 7] = True  # distance 5 (3-4-5 triangle)
    assert pointing_game(maps, masks, tolerance=4.99).item() == 0.0
    assert pointing_game(maps, masks, tolerance=5.0).item() == 1.0


def test_pointing_game_default_tolerance_scales_and_ties_take_first():
    maps = torch.zeros(1, 224, 224)
    masks = torch.zeros(1, 224, 224, dtype=torch.bool)
    masks[0, 0, 15] = True  # 15 px from (0, 0) at 224 px: a hit with the default tolerance
    maps[0, 0, 0] = 1.0
    maps[0, 200, 200] = 1.0  # tied maximum later in raster order is ignored
    assert pointing_game(maps, masks).item() == 1.0
    masks[0, 0, 15] = False
    masks[0, 0, 16] = True
    assert pointing_game(maps, masks).item() == 0.0
    # At 112 px the tolerance is 7.5 px.
    small = torch.zeros(1, 112, 112)
    small[0, 0, 0] = 1
    m = torch.zeros(1, 112, 112, dtype=torch.bool)
    m[0, 0, 7] = True
    assert pointing_game(small, m).item() == 1.0
    m[0, 0, 7] = False
    m[0, 0, 8] = True
    assert pointing_game(small, m).item() == 0.0


def test_energy_pointing_game_by_hand():
    maps = torch.ones(2, 4, 4)
    maps[1] = -1.0
    maps[1, 0, 0] = 3.0  # only positive mass counts: 3 inside, 0 outside
    boxes = torch.tensor([[0, 0, 2, 2], [0, 0, 1, 1]])
    assert energy_pointing_game(maps, boxes).tolist() == pytest.approx([0.25, 1.0])


def test_relevance_mass_and_rank_by_hand():
    maps = torch.tensor([[[4.0, -2.0], [1.0, 3.0]]])
    masks = torch.tensor([[[True, True], [False, False]]])
    # Positive relevance 4 + 1 + 3 = 8, inside 4 -> 0.5
    assert relevance_mass_accuracy(maps, masks).item() == pytest.approx(0.5)
    # |mask| = 2; the top-2 pixels are (0,0)=4 and (1,1)=3; one of them inside -> 0.5
    assert relevance_rank_accuracy(maps, masks).item() == pytest.approx(0.5)
    masks2 = torch.tensor([[[True, False], [False, True]]])
    assert relevance_rank_accuracy(maps, masks2).item() == 1.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_relevance_mass_in_unit_interval(seed):
    gen = torch.Generator().manual_seed(seed)
    maps = torch.randn(3, 6, 7, generator=gen)
    masks = torch.rand(3, 6, 7, generator=gen) > 0.6
    masks[:, 0, 0] = True
    mass = relevance_mass_accuracy(maps, masks)
    rank = relevance_rank_accuracy(maps, masks)
    assert torch.all((mass >= 0) & (mass <= 1)) and torch.all((rank >= 0) & (rank <= 1))


def test_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="empty ground-truth masks"):
        pointing_game(torch.rand(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool))


def test_box_iou_by_hand():
    a = torch.tensor([[0, 0, 4, 4], [0, 0, 4, 4], [0, 0, 0, 0]])
    b = torch.tensor([[2, 0, 6, 4], [1, 0, 5, 4], [0, 0, 2, 2]])
    assert box_iou(a, b).tolist() == pytest.approx([8 / 24, 12 / 20, 0.0])


def test_largest_component_box_uses_8_connectivity():
    fg = torch.zeros(1, 6, 6, dtype=torch.bool)
    fg[0, 0, 0] = fg[0, 1, 1] = fg[0, 2, 2] = True  # a diagonal line: one component of 3
    fg[0, 4, 4] = fg[0, 4, 5] = True  # another of 2
    assert largest_component_boxes(fg).tolist() == [[0, 0, 3, 3]]
    assert largest_component_boxes(torch.zeros(1, 3, 3, dtype=torch.bool)).tolist() == [[0, 0, 0, 0]]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), density=st.floats(0.2, 0.7))
def test_components_match_scipy(seed, density):
    gen = torch.Generator().manual_seed(seed)
    fg = torch.rand(3, 9, 11, generator=gen) < density
    labels = label_components(fg)
    for i in range(3):
        ref, _ = ndimage.label(fg[i].numpy(), structure=np.ones((3, 3)))
        ours = labels[i].numpy()
        # Same partition: a bijection between label values on the foreground.
        pairs = {(a, b) for a, b in zip(ours[fg[i].numpy()], ref[fg[i].numpy()])}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
        assert (ours[~fg[i].numpy()] == 0).all()


def test_cam_localisation_by_hand():
    maps = torch.zeros(2, 10, 10)
    maps[:, 2:6, 3:7] = 1.0  # box x 3..7, y 2..6
    maps[:, 9, 9] = 0.1  # below 20 % of the max: ignored
    boxes = torch.tensor([[3, 2, 7, 6], [4, 2, 8, 6]])  # IoU 1 and 12 / 20 = 0.6
    assert cam_localisation(maps, boxes).tolist() == [1.0, 1.0]
    boxes2 = torch.tensor([[5, 2, 9, 6], [3, 2, 7, 6]])  # IoU 8 / 24 < 0.5
    assert cam_localisation(maps, boxes2).tolist() == [0.0, 1.0]


def test_max_box_accuracy_picks_the_best_threshold():
    maps = torch.zeros(2, 12, 12)
    maps[:, 1:11, 1:11] = 0.3  # halo
    maps[:, 4:8, 4:8] = 1.0  # core
    boxes = torch.tensor([[4, 4, 8, 8], [1, 1, 11, 11]])  # image 0: the core; image 1: the halo
    thresholds = torch.tensor([0.0, 0.2, 0.5, 0.9])
    res = max_box_accuracy(maps, boxes, thresholds=thresholds, max_maps=3)
    # t=0: box of all > 0 = halo (1..11); t=0.2: halo; t=0.5, 0.9: core.
    assert res.hits.tolist() == [[0, 0, 1, 1], [1, 1, 0, 0]]
    assert res.value == 0.5 and res.best_threshold == 0.0
