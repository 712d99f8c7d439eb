"""RFxG's targets (shared/explain/targets.py): ContrastiveTarget and GroupTarget against scores
computed by hand on hand-made logits, and every gradient method accepting them unchanged on the
tiny zoo: the map under a contrast equals the map under the same difference written as an
independent linear read-out of the logits; linear-in-the-score methods split exactly
(map(c − c′) = map(c) − map(c′)); Grad-CAM (ReLU) on its raw layer gradients and weights."""

from __future__ import annotations

import math

import pytest
import torch

from shared.explain import ClassTarget, Target
from shared.explain.base import layer_signals
from shared.explain.gradients import input_gradients
from shared.explain.registry import build_explainer
from shared.explain.targets import ContrastiveTarget, GroupTarget
from tests.tiny_zoo import role

LOGITS = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.5, 3.0, 0.5, 1.0]])


def _softmax(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_contrastive_scores_by_hand() -> None:
    t = ContrastiveTarget([0, 1], [2, 3])
    assert t(LOGITS).tolist() == [2.0, 2.0]  # 2 − 0, 3 − 1
    p = [_softmax(r) for r in LOGITS.tolist()]
    torch.testing.assert_close(t.probability(LOGITS), torch.tensor([p[0][0] - p[0][2], p[1][1] - p[1][3]]))
    # index= picks each row's image: rows 0, 0, 1 of a repeated batch
    rows = LOGITS[[0, 0, 1]]
    assert t(rows, torch.tensor([0, 0, 1])).tolist() == [2.0, 2.0, 2.0]
    assert t.subset(torch.tensor([1]))(LOGITS[1:]).tolist() == [2.0]


def test_runner_up_is_the_best_other_class() -> None:
    t = ContrastiveTarget.runner_up(LOGITS, [0, 1])
    assert t.foil.labels.tolist() == [1, 3]
    assert t(LOGITS).tolist() == [1.0, 2.0]
    t = ContrastiveTarget.runner_up(LOGITS, [3, 3])  # a non-top class: foil is the top one
    assert t.foil.labels.tolist() == [0, 1]


def test_group_scores_by_hand() -> None:
    groups = [[0, 2], [1], [1, 3]]
    t = GroupTarget(groups, [0, 2])
    assert t(LOGITS).tolist() == [2.0 + 0.0, 3.0 + 1.0]
    p = [_softmax(r) for r in LOGITS.tolist()]
    torch.testing.assert_close(t.probability(LOGITS), torch.tensor([p[0][0] + p[0][2], p[1][1] + p[1][3]]))
    # group vs group, class vs group
    gg = ContrastiveTarget(GroupTarget(groups, [0, 0]), GroupTarget(groups, [2, 2]))
    assert gg(LOGITS).tolist() == [(2.0 + 0.0) - (1.0 - 1.0), (0.5 + 0.5) - (3.0 + 1.0)]
    cg = ContrastiveTarget(ClassTarget([1, 1]), GroupTarget(groups, [2, 2]))
    torch.testing.assert_close(cg.probability(LOGITS), torch.tensor([p[0][1] - p[0][1] - p[0][3], p[1][1] - p[1][1] - p[1][3]]))
    assert t.subset(torch.tensor([1])).group.tolist() == [2]


def test_one_class_group_is_the_class_target() -> None:
    g = GroupTarget([[3], [0], [1]], [1, 2])
    c = ClassTarget([0, 1])
    assert torch.equal(g(LOGITS), c(LOGITS)) and torch.equal(g.probability(LOGITS), c.probability(LOGITS))


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        GroupTarget([[0], []], [0])
    with pytest.raises(IndexError, match="out of range for 2 groups"):
        GroupTarget([[0], [1]], [2])
    with pytest.raises(ValueError, match="twice"):
        GroupTarget([[0, 0]], [0])
    with pytest.raises(IndexError, match="class 7 is out of range for a model with 4 classes"):
        GroupTarget([[0, 7]], [0, 0])(LOGITS)
    with pytest.raises(ValueError, match="one entry per image"):
        ContrastiveTarget([0, 1], [2])
    with pytest.raises(TypeError, match="not contrasts"):
        ContrastiveTarget(ContrastiveTarget([0], [1]), [2])
    with pytest.raises(ValueError, match="2 entries but the batch has 3"):
        ContrastiveTarget([0, 1], [2, 3])(torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        GroupTarget([[0]], [0])(torch.zeros(4))


class Readout(Target):
    """An independent score: output · w_i per image (w: (B, K) rows written by hand)."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w = w

    def __len__(self) -> int:
        return self.w.shape[0]

    def subset(self, index: torch.Tensor) -> "Readout":
        return Readout(self.w[index])

    def __call__(self, output: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        w = self.w.to(output) if index is None else self.w.to(output)[index]
        return (output * w).sum(dim=1)


FACT, FOIL = [0, 1, 3], [2, 0, 1]
GRADIENT_METHODS = ["gradcam", "gradcampp", "hirescam", "layercam", "saliency", "integrated_gradients",
                    "smoothgrad", "gradient_x_input", "normgrad"]
CHEAP = {"integrated_gradients": {"steps": 3}, "smoothgrad": {"samples": 2}}
LINEAR = {"integrated_gradients": {}, "gradient_x_input": {}, "smoothgrad": {"reduce": "sum"}, "saliency": None}
CASES = [(m, r) for m in GRADIENT_METHODS for r in ("resnet", "vit")]


@pytest.fixture(scope="module")
def zoo():
    return {r: role(r) for r in ("resnet", "vit")}


def _diff_rows(k: int) -> torch.Tensor:
    w = torch.zeros(3, k)
    w[torch.arange(3), FACT] += 1.0
    w[torch.arange(3), FOIL] -= 1.0
    return w


@pytest.mark.parametrize(("method", "model"), CASES, ids=[f"{m}-{r}" for m, r in CASES])
def test_methods_accept_the_rfxg_targets(zoo, method: str, model: str) -> None:
    from shared.plotting import applies

    adapter, images, _ = zoo[model]
    if not applies(method, adapter):
        pytest.skip(f"{method} does not apply to {model}")
    explain = build_explainer(method, adapter, **CHEAP.get(method, {}))
    contrast = explain(images, ContrastiveTarget(FACT, FOIL))
    torch.testing.assert_close(contrast, explain(images, Readout(_diff_rows(4))), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(explain(images, GroupTarget([[3], [0], [1]], [1, 2, 0])),
                               explain(images, ClassTarget(FACT)), rtol=0, atol=0)
    if method in LINEAR and LINEAR[method] is not None:  # the map is linear in the score: it splits
        linear = build_explainer(method, adapter, **{**CHEAP.get(method, {}), **LINEAR[method]})
        scale = float(linear(images, ClassTarget(FACT)).abs().max())
        torch.testing.assert_close(linear(images, ContrastiveTarget(FACT, FOIL)),
                                   linear(images, ClassTarget(FACT)) - linear(images, ClassTarget(FOIL)), rtol=0, atol=1e-5 * scale)
        group = GroupTarget([[0, 1, 3]], [0, 0, 0])
        torch.testing.assert_close(linear(images, group), sum(linear(images, ClassTarget([k] * 3)) for k in (0, 1, 3)),
                                   rtol=0, atol=1e-5 * scale)


def test_gradcam_splits_on_raw_gradients_and_weights(zoo) -> None:
    """Grad-CAM's ReLU is not linear; its layer gradients and its weights α_k are."""
    adapter, images, _ = zoo["resnet"]
    explain = build_explainer("gradcam", adapter)
    layer = explain.layer
    g = {name: layer_signals(adapter, images, t, [layer]).gradients[0]
         for name, t in {"c": ClassTarget(FACT), "c2": ClassTarget(FOIL), "diff": ContrastiveTarget(FACT, FOIL)}.items()}
    torch.testing.assert_close(g["diff"], g["c"] - g["c2"], rtol=0, atol=1e-6)
    A = layer_signals(adapter, images, None, [layer], gradients=False).activations[0]
    torch.testing.assert_close(explain.weights(A, g["diff"]), explain.weights(A, g["c"]) - explain.weights(A, g["c2"]), rtol=0, atol=1e-6)
    ig = input_gradients(adapter, images, ContrastiveTarget(FACT, FOIL))
    torch.testing.assert_close(ig, input_gradients(adapter, images, ClassTarget(FACT)) - input_gradients(adapter, images, ClassTarget(FOIL)),
                               rtol=0, atol=1e-6)
