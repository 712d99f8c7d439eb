"""RISE (Petsiuk et al. 2018) against independent computations.

1. The masks equal the authors' ``generate_masks`` (eclique/RISE, explanations.py) given the same
   grids and shifts: skimage ``resize(grid, (s+1)·C, order=1, mode='reflect',
   anti_aliasing=False)[x:x+H, y:y+W]``, one mask at a time: equal to float32 rounding (their grid
   is float32, so skimage interpolates in float32; ours is float64: max diff ~3e-8, tolerance 1e-6;
   with a float64 grid the two agree to 2e-16).
2. The saliency in the authors' matrix form (``RISEBatch.forward`` + ``RISE.forward``'s
   ``sal / N / p1``), with an explicit loop over the masks: the raw model (no adapter) on the
   *normalised* image times M_i, softmax over all classes, Σ_i p_i M_i / (N p1) for every class,
   then the target's row. Ours scores [0, 1] images mean + M (x − mean), the same tensor after
   normalisation; the model's float32 forward of the two differs by rounding (tolerance 1e-5
   of the map's scale).
3. Mask statistics: values in [0, 1], pixel mean ≈ p1 (for p1 = 0.5 and 0.2).
4. Batch invariance and the seed: an image alone gets its map from the batch; another seed,
   another map.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import shared.models  # noqa: F401
from papers.rise.method import RISE, RiseMasks
from shared.explain import ClassTarget
from shared.explain.pair import PairTarget
from shared.models import build_adapter
from shared.models.adapter import ModelAdapter

CLASSES = ["a", "b", "c", "d"]
SIZE = 32


@pytest.fixture(scope="module")
def resnet() -> ModelAdapter:
    torch.manual_seed(0)
    return build_adapter("resnet", {"arch": "resnet_small", "task": "classifier"}, CLASSES).explain_mode()


@pytest.mark.parametrize(("s", "height", "width"), [(7, 64, 64), (7, 224, 224), (3, 30, 33), (5, 17, 20)])
def test_masks_equal_the_authors_generate_masks(s: int, height: int, width: int) -> None:
    resize = pytest.importorskip("skimage.transform").resize
    masks = RiseMasks(12, s, 0.5, height, width, seed=3)
    ours = masks(torch.arange(12)).numpy()
    cell = np.ceil(np.array((height, width)) / s)  # explanations.py: cell_size = np.ceil(input_size / s)
    up_size = (s + 1) * cell
    for i in range(12):
        grid = masks.grid[i].numpy().astype("float32")  # grid = (np.random.rand(N, s, s) < p1).astype('float32')
        x, y = int(masks.shift_h[i]), int(masks.shift_w[i])
        theirs = resize(grid, up_size, order=1, mode="reflect", anti_aliasing=False)[x : x + height, y : y + width]
        np.testing.assert_allclose(ours[i], theirs, rtol=0, atol=1e-6)


def test_saliency_equals_the_authors_matrix_form(resnet: ModelAdapter) -> None:
    n, p1 = 12, 0.5
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([2, 0])
    ours = RISE(resnet, n_masks=n, s=4, p1=p1, max_batch=7, seed=5)(images, ClassTarget(labels))

    masks = RiseMasks(n, 4, p1, SIZE, SIZE, seed=5)(torch.arange(n)).float()  # (N, H, W)
    normalised = (images - resnet._mean) / resnet._std  # utils.preprocess: Normalize(mean, std)
    p = []
    with torch.no_grad():
        for i in range(n):  # stack = masks * x (normalised); p = softmax(model(stack))
            p.append(resnet.model(masks[i] * normalised).softmax(dim=1))
    p = torch.stack(p).double()  # (N, B, CL)
    sal = torch.matmul(p.permute(1, 2, 0), masks.double().view(n, SIZE * SIZE))  # (B, CL, H·W)
    sal = sal.view(2, len(CLASSES), SIZE, SIZE) / n / p1  # sal = sal / N / p1
    expected = sal[torch.arange(2), labels].float()
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("p1", [0.5, 0.2])
def test_mask_statistics(p1: float) -> None:
    masks = RiseMasks(1000, 7, p1, SIZE, SIZE, seed=0)(torch.arange(1000))
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    # 1000 masks × 49 cells: the mean of the kept cells' fraction has s.d. ≈ √(p(1−p)/49000) ≈ 0.002
    assert abs(float(masks.mean()) - p1) < 0.01
    per_pixel = masks.mean(dim=0)  # E[M(λ)] = p1 at every pixel (the shifts make it stationary)
    assert float((per_pixel - p1).abs().max()) < 0.08


def test_batch_invariance_and_seed(resnet: ModelAdapter) -> None:
    images = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    target = ClassTarget([0, 1, 3])
    rise = RISE(resnet, n_masks=16, max_batch=5, seed=1)
    batch = rise(images, target)
    alone = RISE(resnet, n_masks=16, max_batch=16, seed=1)(images[1:2], ClassTarget([1]))
    torch.testing.assert_close(batch[1:2], alone, rtol=0, atol=1e-5 * float(batch.abs().max()))
    other = RISE(resnet, n_masks=16, max_batch=5, seed=2)(images, target)
    assert (other - batch).abs().max() > 1e-3


def test_embedding_similarity_and_bad_knobs() -> None:
    torch.manual_seed(0)
    adapter = build_adapter("embed", {"arch": "resnet_small", "task": "embedding", "metric": "cosine", "embedding_dim": 8}, CLASSES).explain_mode()
    g = torch.Generator().manual_seed(4)
    images, refs = torch.rand(2, 3, SIZE, SIZE, generator=g), torch.rand(2, 3, SIZE, SIZE, generator=g)
    target = PairTarget.from_images(adapter, refs)
    maps = RISE(adapter, n_masks=8, s=4)(images, target)
    masks = RiseMasks(8, 4, 0.5, SIZE, SIZE, seed=0)(torch.arange(8))
    mean = torch.tensor(adapter.mean).view(1, 3, 1, 1)
    with torch.no_grad():
        scores = torch.stack([target(adapter(mean + masks[i, None].float() * (images - mean))) for i in range(8)])  # (N, B)
    expected = torch.einsum("nb,nhw->bhw", scores.double(), masks) / 8 / 0.5
    torch.testing.assert_close(maps, expected.float(), rtol=0, atol=1e-5 * float(expected.abs().max()))
    with pytest.raises(ValueError, match="p1"):
        RISE(adapter, p1=0)
    with pytest.raises(ValueError, match="n_masks"):
        RISE(adapter, n_masks=0)
    with pytest.raises(ValueError, match="grid cells"):
        RISE(adapter, s=40, n_masks=2)(images, target)
