"""ROAD (Rong et al., ICML 2022): the batched conjugate-gradient imputation against the authors'
sparse system solved by scipy, its properties, curves worked out by hand, and Quantus 0.6."""

import numpy as np
import pytest
import torch
from scipy.sparse import csc_matrix, lil_matrix
from scipy.sparse.linalg import spsolve
from torch import nn

from shared.metrics.road import counter_normals, noisy_linear_imputation, road

quantus = pytest.importorskip("quantus")

# The authors' neighbour weights (tleemann/road_evaluation, road/imputations.py, neighbors_weights).
NEIGHBORS_WEIGHTS = [((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12),
                     ((0, -1), 1 / 6), ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6)]


def authors_linear_imputation(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Transcription of NoisyLinearImputer.setup_sparse_system + __call__ (noise 0), one image.

    img (C, H, W); mask (H, W) with 1 = pixel present, 0 = removed (the authors' convention).
    """
    maskflt = mask.flatten()
    imgflat = img.reshape((img.shape[0], -1))
    indices = np.argwhere(maskflt == 0).flatten()
    coords_to_vidx = np.zeros(len(maskflt), dtype=int)
    coords_to_vidx[indices] = np.arange(len(indices))
    num = len(indices)
    A = lil_matrix((num, num))
    b = np.zeros((num, img.shape[0]))
    sum_neighbors = np.ones(num)
    h, w = mask.shape
    for offset, weight in NEIGHBORS_WEIGHTS:
        cord1 = indices % w + offset[1]
        cord0 = indices // w + offset[0]
        valid = ~((cord0 < 0) | (cord1 < 0) | (cord0 >= h) | (cord1 >= w))
        new_coords = indices + offset[0] * w + offset[1]
        valid_coords = new_coords[valid]
        valid_ids = np.argwhere(valid == 1).flatten()
        has_values_coords = valid_coords[maskflt[valid_coords] > 0.5]
        has_values_ids = valid_ids[maskflt[valid_coords] > 0.5]
        b[has_values_ids, :] -= weight * imgflat[:, has_values_coords].T
        has_no_values = valid_coords[maskflt[valid_coords] < 0.5]
        variable_ids = coords_to_vidx[has_no_values]
        has_no_values_ids = valid_ids[maskflt[valid_coords] < 0.5]
        A[has_no_values_ids, variable_ids] = weight
        sum_neighbors[np.argwhere(valid == 0).flatten()] -= weight
    A[np.arange(num), np.arange(num)] = -sum_neighbors
    res = spsolve(csc_matrix(A), b).reshape(num, -1)
    out = imgflat.copy()
    out[:, indices] = res.T
    return out.reshape(img.shape)


def random_case(seed, shape=(2, 3, 9, 11), density=0.6):
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(shape, generator=gen, dtype=torch.float64)
    removed = torch.rand(shape[0], *shape[2:], generator=gen) < density
    removed[:, 0, 0] = False  # at least one known pixel
    return images, removed


@pytest.mark.parametrize("seed, density", [(0, 0.3), (1, 0.6), (2, 0.95), (3, 1.0)])
def test_imputation_matches_the_authors_sparse_system(seed, density):
    # density 1.0: every pixel but (0, 0) removed, the hardest system.
    images, removed = random_case(seed, density=density)
    ours = noisy_linear_imputation(images, removed, noise=0.0)
    for i in range(images.shape[0]):
        ref = authors_linear_imputation(images[i].numpy(), (~removed[i]).numpy().astype(np.uint8))
        assert np.abs(ours[i].numpy() - ref).max() < 1e-8


def test_imputation_matches_quantus_noisy_linear_imputation():
    # Quantus 0.6's port of the same system (flat pixel indices of the removed pixels), noise 0.
    images, removed = random_case(4, shape=(2, 3, 16, 16), density=0.7)
    ours = noisy_linear_imputation(images, removed, noise=0.0)
    for i in range(2):
        idx = np.flatnonzero(removed[i].numpy().ravel())
        ref = quantus.functions.perturb_func.noisy_linear_imputation(images[i].numpy(), idx, noise=0.0)
        assert np.abs(ours[i].numpy() - ref).max() < 1e-8


def test_known_pixels_unchanged_and_noise_only_on_removed_pixels():
    images, removed = random_case(5, density=0.5)
    images = images.float()
    gen = torch.Generator().manual_seed(0)
    out = noisy_linear_imputation(images, removed, noise=0.1, generator=gen)
    assert out.dtype == torch.float32
    keep = ~removed.unsqueeze(1).expand_as(images)
    assert torch.equal(out[keep], images[keep])
    clean = noisy_linear_imputation(images, removed, noise=0.0)
    diff = (out - clean)[~keep].double()
    assert diff.std().item() == pytest.approx(0.1, rel=0.15)  # ~300 draws of N(0, 0.1^2)


def test_constant_image_stays_constant():
    images = torch.full((2, 3, 9, 11), 0.37, dtype=torch.float64)
    _, removed = random_case(6, density=0.9)
    out = noisy_linear_imputation(images, removed, noise=0.0)
    assert (out - 0.37).abs().max().item() < 1e-9  # the solver's tolerance (relative residual 1e-10)


def test_linear_ramp_is_reproduced_in_an_interior_hole():
    # Away from the border every equation is the symmetric stencil's mean, which is exact for
    # affine functions: the harmonic fill of a hole in a ramp is the ramp.
    ys, xs = torch.meshgrid(torch.arange(12.0, dtype=torch.float64), torch.arange(14.0, dtype=torch.float64), indexing="ij")
    ramp = 0.1 + 0.03 * xs - 0.02 * ys
    images = torch.stack([ramp, 1 - ramp, 0.5 * ramp]).unsqueeze(0)
    removed = torch.zeros(1, 12, 14, dtype=torch.bool)
    removed[0, 2:10, 3:11] = True
    removed[0, 5, 1] = True
    out = noisy_linear_imputation(images, removed, noise=0.0)
    assert (out - images).abs().max().item() < 1e-9


def test_affine_equivariance_per_channel():
    # The fill commutes with per-channel affine maps such as the model's normalisation.
    images, removed = random_case(7, density=0.7)
    scale = torch.tensor([2.0, 0.5, -1.5], dtype=torch.float64).view(1, 3, 1, 1)
    shift = torch.tensor([-0.485, 0.1, 3.0], dtype=torch.float64).view(1, 3, 1, 1)
    a = noisy_linear_imputation(images * scale + shift, removed, noise=0.0)
    b = noisy_linear_imputation(images, removed, noise=0.0) * scale + shift
    assert (a - b).abs().max().item() < 1e-9


def test_noise_is_reproducible_for_a_seed_and_zero_noise_is_deterministic():
    images, removed = random_case(8)

    def run(seed):
        return noisy_linear_imputation(images, removed, noise=0.01, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
    assert torch.equal(noisy_linear_imputation(images, removed, 0.0), noisy_linear_imputation(images, removed, 0.0))


def test_bad_inputs_are_refused():
    images, removed = random_case(9)
    everything = torch.ones_like(removed)
    everything[0, 0, 0] = False  # image 1 has every pixel removed
    with pytest.raises(ValueError, match=r"every pixel of images \[1\]"):
        noisy_linear_imputation(images, everything)
    with pytest.raises(ValueError, match="bool"):
        noisy_linear_imputation(images, removed.float())
    with pytest.raises(ValueError, match="did not converge"):
        noisy_linear_imputation(images, removed, noise=0.0, max_iter=1)


def test_counter_normals_are_standard_normal_and_batch_invariant():
    z = counter_normals(0, torch.arange(20), (3, 16, 16))
    assert abs(z.mean().item()) < 0.02 and z.std().item() == pytest.approx(1.0, abs=0.02)
    assert torch.equal(z[:7], counter_normals(0, torch.arange(7), (3, 16, 16)))
    assert torch.equal(z[5:6], counter_normals(0, torch.tensor([5]), (3, 16, 16)))
    assert not torch.equal(z, counter_normals(1, torch.arange(20), (3, 16, 16)))


# --- road --------------------------------------------------------------------------------------

def channel0_mean(images, index):
    return images[:, 0].flatten(1).mean(1)


def test_road_curves_by_hand():
    # Channel 0 is [[9, 0, 0], [0, 0, 0], [0, 0, 3]] (mean 12/9); channel 1 is ignored by the score.
    image = torch.zeros(1, 2, 3, 3, dtype=torch.float64)
    image[0, 0, 0, 0], image[0, 0, 2, 2] = 9.0, 3.0
    image[0, 1] = torch.rand(3, 3, dtype=torch.float64)
    # Relevance order: centre, top-middle, ..., bottom-right last.
    relevance = torch.tensor([[[5.0, 8.0, 4.0], [3.0, 9.0, 2.0], [1.5, 1.0, 0.0]]])
    # int(9 p) = 0, 1, 2 pixels removed.
    p = (0.0, 0.12, 0.25)
    morf = road(relevance, image, channel0_mean, percentages=p, order="morf", noise=0.0)
    # 1 removed: the centre = (1/6)(0+0+0+0) + (1/12)(9+0+0+3) = 1 -> mean 13/9.
    # 2 removed: centre c and top-middle t (border pixel, in-image weights sum 3/6 + 2/12 = 2/3):
    #   c = t/6 + 1,  (2/3) t = (9 + 0 + c)/6  ->  c = 33/23, t = 60/23  ->  mean (12 + 93/23)/9 = 41/23.
    expected = [12 / 9, 13 / 9, 41 / 23]
    assert morf.curves[0].tolist() == pytest.approx(expected, abs=1e-9)
    assert morf.area.item() == pytest.approx(sum(expected) / 3, abs=1e-9)
    assert morf.percentages.tolist() == list(p)
    # LeRF removes the bottom-right 3 (its in-image neighbours are all 0), then the bottom-middle
    # too (neighbours 0 or removed): mean 9/9 for both.
    lerf = road(relevance, image, channel0_mean, percentages=p, order="lerf", noise=0.0)
    assert lerf.curves[0].tolist() == pytest.approx([12 / 9, 1.0, 1.0], abs=1e-9)


def test_road_is_batch_and_chunk_invariant_with_noise():
    gen = torch.Generator().manual_seed(10)
    images = torch.rand(5, 3, 12, 12, generator=gen)
    maps = torch.rand(5, 12, 12, generator=gen)
    full = road(maps, images, channel0_mean, percentages=(0.2, 0.6), order="morf", noise=0.05, seed=3)
    chunked = road(maps, images, channel0_mean, percentages=(0.2, 0.6), order="morf", noise=0.05, seed=3, max_batch=3)
    prefix = road(maps[:2], images[:2], channel0_mean, percentages=(0.2, 0.6), order="morf", noise=0.05, seed=3)
    assert torch.allclose(full.curves, chunked.curves, atol=1e-12, rtol=0)
    assert torch.allclose(full.curves[:2], prefix.curves, atol=1e-12, rtol=0)
    other_seed = road(maps, images, channel0_mean, percentages=(0.2, 0.6), order="morf", noise=0.05, seed=4)
    assert not torch.allclose(full.curves, other_seed.curves, atol=1e-9, rtol=0)


def test_road_refuses_bad_arguments():
    maps, images = torch.rand(1, 4, 4), torch.rand(1, 3, 4, 4)
    with pytest.raises(ValueError, match="order"):
        road(maps, images, channel0_mean, order="most")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        road(maps, images, channel0_mean, percentages=(0.5, 1.0))


def tiny_model(channels):
    """A linear classifier on the pixels: its prediction changes as pixels are imputed."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * 64, 4)).eval()


def test_road_matches_quantus_road_on_single_channel_images():
    """Quantus 0.6 ``ROAD``: per percentage, the accuracy over images of y == argmax(model(x)).

    Same convention here: ``score_fn`` is the correctness indicator, MoRF, noise 0, and
    Quantus' ``normalise=False, abs=False`` (its default normalise_by_max would not change the
    order of these positive maps). Quantus removes ``int(H*W*p/100)`` pixels for p in per cent,
    we ``int(H*W*p)`` for the fraction p: equal for these percentages (asserted). Quantus
    orders by ``np.argsort(-a)`` (unstable), we stably: the maps have no ties. Quantus returns
    only the mean over images, compared with ``curves.mean(0)``.
    """
    gen = torch.Generator().manual_seed(11)
    x = torch.rand(8, 1, 8, 8, generator=gen)
    a = torch.rand(8, 8, 8, generator=gen)
    model = tiny_model(1)
    with torch.no_grad():
        y = model(x).argmax(1)
    percent = [10, 30, 50, 70, 90]
    assert [int(64 * p / 100) for p in percent] == [int(64 * (p / 100)) for p in percent]
    metric = quantus.ROAD(percentages=percent, noise=0.0, normalise=False, abs=False, disable_warnings=True)
    ref = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), device="cpu", channel_first=True)

    def correct(images, index):
        with torch.no_grad():
            return (model(images).argmax(1) == y[index]).double()

    ours = road(a, x, correct, percentages=[p / 100 for p in percent], order="morf", noise=0.0)
    assert ours.curves.mean(0).tolist() == pytest.approx([ref[p] for p in percent], abs=1e-12)
    assert len(set(ours.curves.mean(0).tolist())) > 1  # the removal changes the predictions


def test_quantus_road_fails_on_rgb_images_with_pixel_maps():
    """Documented difference: Quantus 0.6 ``ROAD`` broadcasts the (1, H, W) attribution over the
    C channels and ranks all C*H*W entries, but removes ``int(H*W*p/100)`` of those flat indices
    as *pixel* indices of an H*W mask, so with C = 3 it indexes past the mask (IndexError).
    ``road`` ranks pixels; on RGB inputs the comparison is done on the imputation function
    (``test_imputation_matches_quantus_noisy_linear_imputation``)."""
    gen = torch.Generator().manual_seed(12)
    x = torch.rand(2, 3, 8, 8, generator=gen).numpy()
    a = torch.rand(2, 8, 8, generator=gen).numpy()
    metric = quantus.ROAD(percentages=[30], noise=0.0, normalise=False, disable_warnings=True)
    with pytest.raises(IndexError):
        metric(model=tiny_model(3), x_batch=x, y_batch=np.array([0, 1]), a_batch=a, device="cpu", channel_first=True)
