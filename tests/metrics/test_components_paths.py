"""The CPU (SciPy labeller) and GPU (label propagation) paths of the largest-component boxes agree."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.metrics.components import _largest_component_boxes_propagation, _largest_component_boxes_scipy


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.1, 0.9), st.integers(1, 6))
def test_scipy_and_propagation_paths_agree(seed, density, n):
    g = torch.Generator().manual_seed(seed)
    fg = torch.rand(n, 9, 11, generator=g) < density
    assert torch.equal(_largest_component_boxes_scipy(fg), _largest_component_boxes_propagation(fg))


def test_ties_go_to_the_component_ending_later():
    fg = torch.zeros(1, 5, 5, dtype=torch.bool)
    fg[0, 0, 0:2] = True  # two pixels, ends at flat index 1
    fg[0, 4, 3:5] = True  # two pixels, ends at flat index 24: wins the tie
    expected = torch.tensor([[3, 4, 5, 5]])
    assert torch.equal(_largest_component_boxes_scipy(fg), expected)
    assert torch.equal(_largest_component_boxes_propagation(fg), expected)


def test_empty_masks_give_empty_boxes():
    fg = torch.zeros(2, 4, 4, dtype=torch.bool)
    fg[1, 1, 1] = True
    assert _largest_component_boxes_scipy(fg).tolist() == [[0, 0, 0, 0], [1, 1, 2, 2]]
