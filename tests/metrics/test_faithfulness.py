"""Deletion / insertion and AD / IC against values worked out by hand, and the batched
implementation against the per-image, per-step reference loop."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from shared.metrics import average_drop_increase, deletion, insertion, perturbation_curve_reference
from shared.metrics._filters import gaussian_blur, rise_blur_parameters, rise_kernel1d
from shared.metrics.faithfulness import perturbation_endpoints


def pixel_sum(images, index):
    """Toy additive model: the sum of the first channel."""
    return images[:, 0].flatten(1).sum(1)


# One 2x2 image whose pixels are 1, 2, 3, 4 (flat order), the same in every channel.
IMAGE = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).expand(1, 3, 2, 2).clone()
MAP = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])  # order: pixel 1, 2, 3, 0


def test_deletion_by_hand():
    # Scores after deleting 0..4 pixels in order 1, 2, 3, 0: 10, 8, 5, 1, 0.
    res = deletion(MAP, IMAGE, pixel_sum, steps=4, return_curves=True, perturbation="black")
    assert res.curves[0].tolist() == [10, 8, 5, 1, 0]
    assert res.fractions.tolist() == [0, 0.25, 0.5, 0.75, 1]
    # Trapezoid: (10/2 + 8 + 5 + 1 + 0/2) / 4 = 4.75
    assert res.auc.item() == pytest.approx(4.75)


def test_deletion_two_steps_changes_half_each_step():
    # 0, 2, 4 pixels deleted: 10, 5, 0 -> (5 + 5 + 0) / 2 = 5.0
    assert deletion(MAP, IMAGE, pixel_sum, steps=2, perturbation="black").auc.item() == pytest.approx(5.0)


def test_insertion_by_hand_onto_given_substrate():
    # Inserting pixels 1, 2, 3, 0 onto zeros: 0, 2, 5, 9, 10 -> (0 + 2 + 5 + 9 + 5) / 4 = 5.25
    res = insertion(MAP, IMAGE, pixel_sum, steps=4, substrate=torch.zeros_like(IMAGE), return_curves=True)
    assert res.curves[0].tolist() == [0, 2, 5, 9, 10]
    assert res.auc.item() == pytest.approx(5.25)


def test_ties_delete_lower_index_first():
    flat = torch.full((1, 2, 2), 0.5)
    # Order 0, 1, 2, 3: 10, 9, 7, 4, 0 -> (5 + 9 + 7 + 4 + 0) / 4 = 6.25
    assert deletion(flat, IMAGE, pixel_sum, steps=4, perturbation="black").auc.item() == pytest.approx(6.25)


def test_insertion_black_substrate_is_the_reflect_padded_gaussian_blur():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 16, 16, generator=gen)
    maps = torch.rand(2, 16, 16, generator=gen)
    res = insertion(maps, images, pixel_sum, steps=4, return_curves=True, perturbation="black")
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
        got = deletion(maps, images, score, steps=steps, max_batch=7, perturbation="black")
        ref_auc, _ = perturbation_curve_reference(maps, images, score, steps, finish=torch.zeros_like(images))
        assert torch.allclose(got.auc, ref_auc, atol=1e-6, rtol=0)
        blurred = gaussian_blur(images, *rise_blur_parameters(8, 8))
        got = insertion(maps, images, score, steps=steps, max_batch=5, perturbation="black")
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
    got = deletion(maps, images, score, steps=steps, max_batch=4, endpoint_scores=(clean, blank), return_curves=True,
                   perturbation="black")
    assert sum(rows_scored) == 3 * (steps - 1)  # steps 1..5 only
    ref_auc, ref_curves = perturbation_curve_reference(maps, images, score, steps, finish=torch.zeros_like(images))
    assert torch.allclose(got.curves, ref_curves, atol=1e-6, rtol=0)
    assert torch.allclose(got.auc, ref_auc, atol=1e-6, rtol=0)
    got = insertion(maps, images, score, steps=steps, endpoint_scores=(on_blur, clean), perturbation="black")
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
    perfect = deletion(contribution, images, score, steps=steps, perturbation="black").auc
    reversed_ = deletion(-contribution, images, score, steps=steps, perturbation="black").auc
    assert torch.all(perfect <= reversed_ + 1e-9)
    assert torch.all(insertion(contribution, images, score, steps=steps, perturbation="black").auc + 1e-9
                     >= insertion(-contribution, images, score, steps=steps, perturbation="black").auc)


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


# --- perturbation conventions: RISE's code (eclique/RISE, commit d91ea00) vs black ----------------

RISE_MEAN = (0.485, 0.456, 0.406)  # RISE utils.py lines 19-20 (transforms.Normalize)
RISE_STD = (0.229, 0.224, 0.225)


def rise_gkern(klen, nsig):
    """RISE's evaluation.py lines 10-23, verbatim but for the import."""
    from scipy.ndimage import gaussian_filter

    inp = np.zeros((klen, klen))
    inp[klen // 2, klen // 2] = 1
    k = gaussian_filter(inp, nsig)
    kern = np.zeros((3, 3, klen, klen))
    kern[0, 0] = k
    kern[1, 1] = k
    kern[2, 2] = k
    return torch.from_numpy(kern.astype("float32"))


def rise_evaluate(model, mode, step, substrate_fn, img_batch, exp_batch):
    """RISE's CausalMetric.evaluate (evaluation.py lines 113-161) on the CPU, one batch, no tqdm.

    ``img_batch``: normalised images; ``model``: takes normalised images, returns probabilities.
    Returns the per-image AUC with RISE's ``auc`` (lines 25-27)."""
    n_samples, _, h, w = img_batch.shape
    hw = h * w
    with torch.no_grad():
        top = np.argmax(model(img_batch).numpy(), -1)
        n_steps = (hw + step - 1) // step
        scores = np.empty((n_steps + 1, n_samples))
        salient_order = np.flip(np.argsort(exp_batch.reshape(-1, hw), axis=1), axis=-1)
        r = np.arange(n_samples).reshape(n_samples, 1)
        substrate = substrate_fn(img_batch).contiguous()
        if mode == "del":
            start, finish = img_batch.clone(), substrate
        else:
            start, finish = substrate, img_batch.clone()
        for i in range(n_steps + 1):
            scores[i] = model(start).numpy()[range(n_samples), top]
            coords = salient_order[:, step * i:step * (i + 1)]
            start.numpy().reshape(n_samples, 3, hw)[r, :, coords] = finish.numpy().reshape(n_samples, 3, hw)[r, :, coords]
    return (scores.sum(0) - scores[0] / 2 - scores[-1] / 2) / (scores.shape[0] - 1)


def normalise(x, mean=RISE_MEAN, std=RISE_STD):
    return (x - torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)) / torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)


@pytest.mark.parametrize("klen,nsig", [(11, 5.0), (3, 5.0 * 64 / 224), (3, 5.0 * 32 / 224), (7, 1.5), (1, 0.3), (21, 10.0)])
def test_rise_kernel_is_scipys_smoothed_delta(klen, nsig):
    k1 = rise_kernel1d(klen, nsig, dtype=torch.float64)
    assert torch.allclose(torch.outer(k1, k1).float(), rise_gkern(klen, nsig)[0, 0], atol=1e-8, rtol=0)
    assert abs(float(k1.sum()) - 1.0) < 1e-12  # reflection moves the tails' weight, never drops it


def test_rise_code_equals_an_independent_replica_of_rises_evaluation_code():
    # At 224 x 224 our kernel parameters are RISE's (11, 5); a step that divides H*W makes
    # RISE's ceil(HW / step) steps ours; continuous maps have no ties (RISE orders ties otherwise).
    # a tiny, spatially sensitive classifier of normalised images: random weights on 8 x 8 patch means
    torch.manual_seed(2)
    net = nn.Sequential(nn.AvgPool2d(28), nn.Flatten(), nn.Linear(3 * 8 * 8, 5))
    with torch.no_grad():
        net[-1].weight.mul_(5.0)  # logits of a few units: the probabilities move along the curves
    model = nn.Sequential(net, nn.Softmax(dim=1)).eval()  # as RISE's notebook wraps resnet50
    gen = torch.Generator().manual_seed(7)
    images = torch.rand(2, 3, 224, 224, generator=gen)
    maps = torch.rand(2, 224, 224, generator=gen)
    steps = 8
    kern = rise_gkern(11, 5)

    def blur(x):  # RISE's Evaluation.ipynb: blur = lambda x: nn.functional.conv2d(x, kern, padding=klen//2)
        return nn.functional.conv2d(x, kern, padding=11 // 2)

    normed = normalise(images)
    rise_del = rise_evaluate(model, "del", 224 * 224 // steps, torch.zeros_like, normed, maps.numpy())
    rise_ins = rise_evaluate(model, "ins", 224 * 224 // steps, blur, normed, maps.numpy())
    with torch.no_grad():
        classes = model(normed).argmax(1)

    def score(x, index):  # images in [0, 1], normalised inside as the model adapter does
        return model(normalise(x)).gather(1, classes[index].view(-1, 1)).squeeze(1)

    ours_del = deletion(maps, images, score, steps=steps, perturbation="rise_code", mean=RISE_MEAN).auc
    ours_ins = insertion(maps, images, score, steps=steps, perturbation="rise_code", mean=RISE_MEAN).auc
    assert torch.allclose(ours_del, torch.from_numpy(rise_del), atol=1e-6, rtol=0)
    assert torch.allclose(ours_ins, torch.from_numpy(rise_ins), atol=1e-6, rtol=0)
    # the default convention is rise_code, and the default mean is ImageNet's (RISE's)
    assert torch.equal(deletion(maps, images, score, steps=steps).auc, ours_del)
    assert torch.equal(insertion(maps, images, score, steps=steps).auc, ours_ins)
    # the curves are not flat (the comparison says something), and black gives other numbers
    assert float((torch.from_numpy(rise_del) - torch.from_numpy(rise_ins)).abs().min()) > 1e-2
    black_del = deletion(maps, images, score, steps=steps, perturbation="black").auc
    assert float((black_del - ours_del).abs().min()) > 1e-2


def test_rise_code_endpoints_are_rises_in_normalised_space_for_any_mean_and_std():
    gen = torch.Generator().manual_seed(11)
    images = torch.rand(3, 3, 32, 32, generator=gen, dtype=torch.float64)
    mean, std = (0.3, 0.6, 0.1), (0.2, 0.5, 0.9)
    baseline, substrate = perturbation_endpoints(images, mean, "rise_code")
    assert torch.allclose(normalise(baseline, mean, std), torch.zeros_like(images), atol=1e-12)
    size, sigma = rise_blur_parameters(32, 32)
    kern = rise_gkern(size, sigma).double()
    expected = nn.functional.conv2d(normalise(images, mean, std), kern, padding=size // 2)
    assert torch.allclose(normalise(substrate, mean, std), expected, atol=1e-6, rtol=0)
    # the border is pulled towards the mean colour, not towards black
    assert not torch.allclose(substrate, perturbation_endpoints(images, mean, "black")[1], atol=1e-3)


def old_reflect_blur(images):
    """The insertion substrate before the conventions existed: a sampled Gaussian (RISE's size and
    sigma scaled with the side), reflect padding, in [0, 1] space — restated independently."""
    size, sigma = rise_blur_parameters(images.shape[2], images.shape[3])
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = (k / k.sum()).to(images.dtype)
    n, c, h, w = images.shape
    r = size // 2
    out = nn.functional.pad(images.reshape(n * c, 1, h, w), (r, r, r, r), mode="reflect")
    out = nn.functional.conv2d(nn.functional.conv2d(out, k.view(1, 1, 1, size)), k.view(1, 1, size, 1))
    return out.reshape(n, c, h, w)


def test_black_reproduces_the_earlier_behaviour():
    model = small_cnn(seed=4)
    gen = torch.Generator().manual_seed(13)
    images = torch.rand(2, 3, 32, 32, generator=gen)
    maps = torch.rand(2, 32, 32, generator=gen)
    classes = torch.tensor([1, 3])

    def score(x, index):
        return model(x).softmax(1).gather(1, classes[index].view(-1, 1)).squeeze(1)

    baseline, substrate = perturbation_endpoints(images, RISE_MEAN, "black")
    assert torch.equal(baseline, torch.zeros_like(images))
    assert torch.equal(substrate, old_reflect_blur(images))
    assert torch.equal(
        deletion(maps, images, score, steps=6, perturbation="black").auc,
        deletion(maps, images, score, steps=6, baseline=0.0).auc,
    )
    assert torch.equal(
        insertion(maps, images, score, steps=6, perturbation="black").auc,
        insertion(maps, images, score, steps=6, substrate=old_reflect_blur(images)).auc,
    )


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 12))
def test_deleting_to_the_mean_colour_scores_higher_than_to_black_on_a_positive_linear_model(seed, steps):
    # score = sum(w * x), w > 0: a deleted pixel adds w * mean under rise_code, 0 under black
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 8, 8, generator=gen, dtype=torch.float64)
    maps = torch.rand(2, 8, 8, generator=gen, dtype=torch.float64)
    weights = torch.rand(3, 8, 8, generator=gen, dtype=torch.float64) + 0.1

    def score(x, index):
        return (x * weights).flatten(1).sum(1)

    rise = deletion(maps, images, score, steps=steps, perturbation="rise_code").auc
    black = deletion(maps, images, score, steps=steps, perturbation="black").auc
    assert torch.all(rise > black)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), level=st.floats(0.55, 1.0), steps=st.integers(1, 12))
def test_inserting_onto_the_rise_blur_of_a_bright_flat_image_scores_lower_than_onto_the_reflect_blur(seed, level, steps):
    # A flat image brighter than the mean colour: the reflect-padded blur leaves it unchanged,
    # RISE's (zero padding in normalised space) darkens its border towards the mean colour.
    gen = torch.Generator().manual_seed(seed)
    images = torch.full((2, 3, 32, 32), level, dtype=torch.float64)
    maps = torch.rand(2, 32, 32, generator=gen, dtype=torch.float64)
    weights = torch.rand(3, 32, 32, generator=gen, dtype=torch.float64) + 0.1

    def score(x, index):
        return (x * weights).flatten(1).sum(1)

    rise = insertion(maps, images, score, steps=steps, perturbation="rise_code").auc
    black = insertion(maps, images, score, steps=steps, perturbation="black").auc
    assert torch.allclose(black, score(images, None), rtol=1e-12)  # nothing to insert
    assert torch.all(rise < black - 1e-6)


def test_unknown_perturbation_and_bad_mean_are_named():
    with pytest.raises(ValueError, match="perturbation convention must be one of"):
        deletion(MAP, IMAGE, pixel_sum, perturbation="zeros")
    with pytest.raises(ValueError, match="mean must have one value per channel"):
        insertion(MAP, IMAGE, pixel_sum, mean=(0.5, 0.5))


def test_pipeline_reference_scores_follow_eval_perturbation_and_the_adapter_mean():
    from types import SimpleNamespace

    from shared.models.adapter import ModelAdapter
    from shared.pipeline.score import reference_scores

    mean = (0.2, 0.4, 0.6)
    adapter = ModelAdapter(small_cnn(seed=6), "cnn", "classifier", "0", mean=mean, std=(0.3, 0.3, 0.3)).eval()
    gen = torch.Generator().manual_seed(17)
    images = torch.rand(3, 3, 32, 32, generator=gen)
    classes = torch.tensor([0, 2, 4])
    target = SimpleNamespace(probability=lambda logits, index: logits.softmax(1).gather(1, classes[index].view(-1, 1)).squeeze(1))
    batch = SimpleNamespace(adapter=adapter, images=images, target=target)
    cfg = {"batch_size": 2, "deletion_steps": 4}
    ref = reference_scores(batch, cfg)  # no eval.perturbation: rise_code
    assert ref.perturbation == "rise_code"
    assert torch.equal(ref.baseline, torch.tensor(mean).view(1, 3, 1, 1).expand_as(images))
    with torch.no_grad():
        assert torch.allclose(ref.blank, target.probability(adapter(ref.baseline), torch.arange(3)).double())
    black = reference_scores(batch, {**cfg, "perturbation": "black"})
    assert torch.equal(black.baseline, torch.zeros_like(images))
    assert torch.equal(black.substrate, old_reflect_blur(images))
