"""RFxG's step pieces (papers/rfxg/method.py): the quadrants' targets on hand-made logits, the
masking faithfulness against the suite's deletion curve (black baseline) and a hand-written
masking, determinism."""

from __future__ import annotations

import pytest
import torch

from papers.rfxg.method import group_of, masked_drop_auc, quadrant_targets
from shared.metrics import deletion
from tests.tiny_zoo import role

GROUPS = [[0, 2], [1, 3]]
LOGITS = torch.tensor([[2.0, 1.0, 0.0, 3.0], [0.0, 3.0, 1.0, -1.0]])


def test_quadrant_targets_by_hand() -> None:
    t = quadrant_targets(LOGITS, torch.tensor([0, 1]), GROUPS)
    assert t["pointwise_class"](LOGITS).tolist() == [2.0, 3.0]
    assert t["contrastive_class"](LOGITS).tolist() == [2.0 - 3.0, 3.0 - 1.0]  # runner-ups: class 3, class 2
    assert t["pointwise_group"](LOGITS).tolist() == [2.0 + 0.0, 3.0 - 1.0]
    assert t["contrastive_group"](LOGITS).tolist() == [(2.0 + 0.0) - (1.0 + 3.0), (3.0 - 1.0) - (0.0 + 1.0)]
    p = LOGITS.softmax(1)
    torch.testing.assert_close(t["contrastive_group"].probability(LOGITS),
                               torch.stack([p[0, 0] + p[0, 2] - p[0, 1] - p[0, 3], p[1, 1] + p[1, 3] - p[1, 0] - p[1, 2]]))


def test_foil_group_is_the_most_probable_other_one() -> None:
    groups = [[0], [1], [2, 3]]
    t = quadrant_targets(LOGITS, torch.tensor([0, 0]), groups)
    assert t["contrastive_group"].foil.group.tolist() == [2, 1]  # P{2,3} = e^0+e^3 > e^1; image 2: e^3 > e^1 + e^-1


def test_class_in_no_group_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"classes \[3\] are in no group"):
        group_of([[0], [1, 2]], torch.tensor([3, 1]))
    with pytest.raises(ValueError, match="at least two groups"):
        quadrant_targets(LOGITS, torch.tensor([0, 1]), [[0, 1, 2, 3]])


@pytest.fixture(scope="module")
def resnet():
    return role("resnet")


def test_masking_matches_the_suite_deletion_and_a_hand_masking(resnet) -> None:
    adapter, images, target = resnet
    maps = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
    alphas = [0.1 * k for k in range(1, 10)]
    ours = masked_drop_auc(adapter, images, maps, [target], alphas, max_batch=7)[0]

    @torch.no_grad()
    def score(x, index):
        return target.probability(adapter(x), index)

    curves = deletion(maps, images, score, steps=10, baseline=0.0, return_curves=True).curves  # fractions k/10
    drop = curves[:, :1] - curves[:, 1:10]
    torch.testing.assert_close(ours, torch.trapezoid(drop, dx=0.1, dim=1), rtol=0, atol=1e-6)
    # by hand, image 1 at α = 0.3: black out its 307 highest pixels
    flat = maps[1].flatten()
    keep = torch.ones(1024)
    keep[torch.argsort(flat, descending=True, stable=True)[:307]] = 0
    with torch.no_grad():
        s = target.probability(adapter(torch.stack([images[1], images[1] * keep.view(1, 32, 32)])), torch.tensor([1, 1]))
    torch.testing.assert_close(float(drop[1, 2]), float(s[0] - s[1]), rtol=0, atol=1e-6)


def test_deterministic(resnet) -> None:
    adapter, images, target = resnet
    maps = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = adapter(images)
    targets = list(quadrant_targets(logits, target.labels, [[0, 1], [2, 3]]).values())
    a = masked_drop_auc(adapter, images, maps, targets, [0.2, 0.5, 0.8], max_batch=4)
    b = masked_drop_auc(adapter, images, maps, targets, [0.2, 0.5, 0.8], max_batch=9)
    assert a.shape == (4, 3) and torch.equal(a, b)
