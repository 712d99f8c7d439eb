"""Deletion / insertion and AD / IC against values worked out by hand, and the batched
implementation against the per-image, per-step reference loop."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from shared.metrics import average_drop_increase, deletion, insertion, perturbation_curve_reference
from shared.metrics._filters import gaussian_blur, rise_blur_parameters


def pixel_sum(images, index):
    """Toy additive model: the sum of the first channel."""
    return images[:, 0].flatten(1).sum(1)


# One 2x2 image whose pixels are 1, 2, 3, 4 (flat order), the same in every channel.
IMAGE = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(1, 3, 2, 2).clone()
MAP = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])  # order: pixel 1, 2, 3, 0


def test_deletion_by_hand():
    # Scores after deleting 0..4 pixels in order 1, 2, 3, 0: 10, 8, 5, 1, 0.
    res = deletion(MAP, IMAGE, pixel_sum, steps=4, return_curves=True)
    assert res.curves[0].tolist() == [10, 8, 5, 1, 0]
    assert res.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    # Trapezoid: (10/2 + 8 + 5 + 1 + 0/2) / 4 = 4.75
    assert res.auc.item() == pytest.approx(4.75)


def test_deletion_two_steps_changes_half_each_step():
    # 0, 2, 4 pixels deleted: 10, 5, 0 -> (5 + 5 + 0) / 2 = 5.0
    assert deletion(MAP, IMAGE, pixel_sum, steps=2).auc.item() == pytest.approx(5.0)


def test_insertion_by_hand_onto_given_substrate():
    # Inserting pixels 1, 2, 3, 0 onto zeros: 0, 2, 5, 9, 10 -> (0 + 2 + 5 + 9 + 5) / 4 = 5.25
    res = insertion(MAP, IMAGE, pixel_sum, steps=4, substrate=torch.zeros_like(IMAGE), return_curves=True)
    assert res.curves[0].tolist() == [0, 2, 5, 9, 10]
    assert res.auc.item() == pytest.approx(5.25)


def test_ties_delete_lower_index_first():
    flat = torch.full((1, 2, 2), 0.5)
    # Order 0, 1, 2, 3: 10, 9, 7, 4, 0 -> (5 + 9 + 7 + 4 + 0) / 4 = 6.25
    assert deletion(flat, IMAGE, pixel_sum, steps=4).auc.item() == pytest.approx(6.25)


def test_insertion_default_substrate_is_the_rise_blur():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 16, 16, generator=gen)
    maps = torch.rand(2, 16, 16, generator=gen)
    res = insertion(maps, images, pixel_sum, steps=4, return_curves=True)
    blurred = gaussian_blur(images, *rise_blur_parameters(16, 16))
    assert torch.allclose(res.curves[:, 0], pixel_sum(blurred, None).double(), atol=1e-4)
    assert torch.allclose(res.curves[:, -1], pixel_sum(images, None).double(), atol=1e-4)
    assert not torch.allclose(blurred, images)


def test_rise_blur_parameters_at_224_are_kernel_11_sigma_5():
    assert rise_blur_parameters(224, 224) == (11, 5.0)


def small_cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5),
    ).eval()


def test_batched_equals_reference_loop():
    model = small_cnn()
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(3, 3, 8, 8, generator=gen)
    maps = torch.rand(3, 8, 8, generator=gen).round(decimals=1)  # many ties
    classes = torch.tensor([0, 3, 4])

    def score(x, index):
        return model(x).softmax(1).gather(1, classes[index].view(-1, 1)).squeeze(1)

    for steps in (5, 64):
        got = deletion(maps, images, score, steps=steps, max_batch=7)
        ref_auc, _ = perturbation_curve_reference(maps, images, score, steps, finish=torch.zeros_like(images))
        assert torch.allclose(got.auc, ref_auc, atol=1e-6, rtol=0)
        blurred = gaussian_blur(images, *rise_blur_parameters(8, 8))
        got = insertion(maps, images, score, steps=steps, max_batch=5)
        ref_auc, _ = perturbation_curve_reference(maps, images, score, steps, finish=images, start=blurred)
        assert torch.allclose(got.auc, ref_auc, atol=1e-6, rtol=0)


def test_known_endpoint_scores_skip_two_steps_and_change_nothing():
    model = small_cnn()
    gen = torch.Generator().manual_seed(5)
    images = torch.rand(3, 3, 8, 8, generator=gen)
    maps = torch.rand(3, 8, 8, generator=gen).round(decimals=1)
    classes = torch.tensor([1, 2, 4])
    rows_scored = []

    def score(x, index):
        rows_scored.append(x.shape[0])
        return model(x).softmax(1).gather(1, classes[index].view(-1, 1)).squeeze(1)

    steps = 6
    everything = torch.arange(3)
    clean, blank = score(images, everything), score(torch.zeros_like(images), everything)
    blurred = gaussian_blur(images, *rise_blur_parameters(8, 8))
    on_blur = score(blurred, everything)
    rows_scored.clear()
    got = deletion(maps, images, score, steps=steps, max_batch=4, endpoint_scores=(clean, blank), return_curves=True)
    assert sum(rows_scored) == 3 * (steps - 1)  # steps 1..5 only
    ref_auc, ref_curves = perturbation_curve_reference(maps, images, score, steps, finish=torch.zeros_like(images))
    assert torch.allclose(got.curves, ref_curves, atol=1e-6, rtol=0)
    assert torch.allclose(got.auc, ref_auc, atol=1e-6, rtol=0)
    got = insertion(maps, images, score, steps=steps, endpoint_scores=(on_blur, clean))
    ref_auc, _ = perturbation_curve_reference(maps, images, score, steps, finish=images, start=blurred)
    assert torch.allclose(got.auc, ref_auc, atol=1e-6, rtol=0)
    rows_scored.clear()
    given_base = average_drop_increase(maps, images, score, base_scores=clean.double())[1.0]
    assert sum(rows_scored) == 3  # only the masked images
    assert torch.allclose(given_base.drop, average_drop_increase(maps, images, score)[1.0].drop, atol=1e-9)
    with pytest.raises(ValueError, match="endpoint_scores must be two"):
        deletion(maps, images, score, steps=steps, endpoint_scores=(clean[:2], blank))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 20))
def test_perfect_map_deletes_no_worse_than_reversed_on_additive_model(seed, steps):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 4, 5, generator=gen)
    weights = torch.rand(4, 5, generator=gen)

    def score(x, index):
        return (x[:, 0] * weights).flatten(1).sum(1)

    contribution = images[:, 0] * weights
    perfect = deletion(contribution, images, score, steps=steps).auc
    reversed_ = deletion(-contribution, images, score, steps=steps).auc
    assert torch.all(perfect <= reversed_ + 1e-9)
    assert torch.all(insertion(contribution, images, score, steps=steps).auc + 1e-9
                     >= insertion(-contribution, images, score, steps=steps).auc)


def mean_or_flipped(images, index):
    """Image 0: mean brightness; image 1: 2 - mean brightness (masking raises its score)."""
    m = images.flatten(1).mean(1)
    return torch.where(index == 0, m, 2 - m)


def test_average_drop_and_increase_by_hand():
    images = torch.ones(2, 3, 2, 2)
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 6.0], [7.0, 8.0]]])
    out = average_drop_increase(maps, images, mean_or_flipped, keep=(1.0, 0.5, 0.15))
    # Normalised maps are 0, 1/3, 2/3, 1 for both; Y = 1 for both.
    full = out[1.0]
    assert full.masked.tolist() == pytest.approx([0.5, 1.5])
    assert full.drop.tolist() == pytest.approx([50.0, 0.0])  # 100 * (1 - 0.5) / 1; O > Y -> 0
    assert full.increase.tolist() == [0.0, 100.0]
    # Top 50 %: quantile(0.5) = 0.5 keeps 2/3 and 1 -> mean 5/12.
    assert out[0.5].masked[0].item() == pytest.approx(5 / 12)
    assert out[0.5].drop[0].item() == pytest.approx(100 * 7 / 12)
    # Top 15 %: quantile(0.85) = 2/3 + 0.55/3 = 0.85 keeps only 1 -> mean 1/4.
    assert out[0.15].drop[0].item() == pytest.approx(75.0)


def test_average_drop_divides_by_the_full_image_score():
    images = torch.full((1, 3, 2, 2), 0.5)
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    out = average_drop_increase(maps, images, lambda x, i: x.flatten(1).mean(1))[1.0]
    # Y = 0.5, O = 0.25 -> 100 * 0.25 / 0.5 = 50 (without the division it would be 25).
    assert out.drop.item() == pytest.approx(50.0)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="maps contains NaN"):
        deletion(torch.tensor([[[float("nan"), 1.0], [0.0, 0.0]]]), IMAGE, pixel_sum)
    with pytest.raises(ValueError, match=r"images must be a \(B, C, H, W\)"):
        deletion(MAP, torch.ones(1, 3, 4, 4), pixel_sum)
    with pytest.raises(ValueError, match=r"maps must be a \(B, H, W\)"):
        deletion(MAP[0], IMAGE, pixel_sum)
    with pytest.raises(ValueError, match="score_fn must return one score per row"):
        deletion(MAP, IMAGE, lambda x, i: x.sum())
    with pytest.raises(ValueError, match="must be > 0"):
        average_drop_increase(MAP, IMAGE, lambda x, i: -pixel_sum(x, i))
