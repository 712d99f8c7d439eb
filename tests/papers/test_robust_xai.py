"""robust_xai: PGD against a step written out by hand on a tiny linear model (sign-gradient step,
projection onto the L-inf ball, clamp to [0, 1]), adversarial fine-tuning determinism, and the
step's record keys on the tiny zoo's classifiers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import torch
from torch import nn

from papers.robust_xai import figures
from papers.robust_xai.method import accuracy_per_image, adversarial_fine_tune, pgd, project
from shared.data.loader import SplitTensors
from shared.explain import ClassTarget
from shared.figure_step import StepContext
from shared.pipeline.io import EvalBatch
from tests.tiny_zoo import SIZE, role


def linear(weight: list[list[float]]) -> nn.Module:
    """logits = W x (x flattened, no bias)."""
    w = torch.tensor(weight)
    model = nn.Sequential(nn.Flatten(), nn.Linear(w.shape[1], w.shape[0], bias=False))
    with torch.no_grad():
        model[1].weight.copy_(w)
    return model


def test_pgd_one_step_by_hand():
    # two classes, three "pixels"; W rows: class 0 likes pixel 0, class 1 likes pixel 1
    model = linear([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    x = torch.tensor([[0.5, 0.99, 0.02]])
    y = torch.tensor([0])
    # CE gradient wrt x for a linear model: W^T (softmax(Wx) - onehot(y))
    z = torch.tensor([0.5 + 0.04, 0.99 - 0.02])
    p = torch.softmax(z, 0)
    grad = torch.tensor([(p[0] - 1) * 1.0, p[1] * 1.0, (p[0] - 1) * 2.0 + p[1] * -1.0])
    assert grad[0] < 0 and grad[1] > 0 and grad[2] < 0
    eps, alpha = 0.1, 0.3  # the step overshoots the ball: the projection must cut it back
    expected = torch.tensor([[0.5 - 0.1, 1.0, 0.0]])  # -eps; +eps clamped at 1; 0.02 - 0.1 < 0 clamped at 0
    got = pgd(model, x, y, eps, alpha, steps=1)
    assert torch.allclose(got, expected, atol=1e-7)
    # a small step stays inside the ball: x + alpha * sign(grad), only the clamp to [0, 1] acts
    got = pgd(model, x, y, 0.5, 0.005, steps=1)
    assert torch.allclose(got, torch.tensor([[0.495, 0.995, 0.015]]), atol=1e-7)


def test_pgd_two_steps_and_projection_by_hand():
    model = linear([[1.0, -1.0], [-1.0, 1.0]])
    x = torch.tensor([[0.3, 0.6]])
    y = torch.tensor([0])  # gradient sign is (-, +) whatever the point: push pixel 0 down, pixel 1 up
    got = pgd(model, x, y, epsilon=0.05, step_size=0.03, steps=2)
    # step 1: (0.27, 0.63); step 2: (0.24, 0.66) -> projected to the ball: (0.25, 0.65)
    assert torch.allclose(got, torch.tensor([[0.25, 0.65]]), atol=1e-7)
    a = torch.tensor([[-0.2, 0.5, 1.3]])
    assert torch.allclose(project(a, torch.tensor([[0.0, 0.3, 0.95]]), 0.1), torch.tensor([[0.0, 0.4, 1.0]]))
    # the attack lowers the true class's probability
    assert torch.softmax(model(got), 1)[0, 0] < torch.softmax(model(x), 1)[0, 0]


def test_random_start_is_seeded_and_stays_in_the_ball():
    model = linear([[1.0, -1.0], [-1.0, 1.0]])
    x = torch.rand(5, 2, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(5, dtype=torch.long)
    a = pgd(model, x, y, 0.05, 0.0, steps=1, generator=torch.Generator().manual_seed(3))
    b = pgd(model, x, y, 0.05, 0.0, steps=1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert ((a - x).abs() <= 0.05 + 1e-7).all() and (a >= 0).all() and (a <= 1).all()


def test_fine_tuning_is_deterministic_and_moves_the_weights():
    adapter, _, _ = role("plaincnn", 1)
    g = torch.Generator().manual_seed(5)
    images = torch.rand(8, 3, SIZE, SIZE, generator=g)
    labels = torch.randint(0, 4, (8,), generator=g)
    before = {k: v.clone() for k, v in adapter.state_dict().items()}
    kw = dict(epochs=2, batch_size=4, lr=0.05, epsilon=8 / 255, step_size=4 / 255, pgd_steps=2, seed=7)
    torch.manual_seed(123)  # the global RNG must not matter
    one = adversarial_fine_tune(adapter, images, labels, **kw)
    torch.manual_seed(456)
    two = adversarial_fine_tune(adapter, images, labels, **kw)
    s1, s2 = one.model.state_dict(), two.model.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert one.history == two.history
    assert any(not torch.equal(s1[k], before[k]) for k in s1)  # it trained
    assert all(torch.equal(v, before[k]) for k, v in adapter.state_dict().items())  # the vanilla model untouched
    assert not one.model.training and all(not p.requires_grad for p in one.model.parameters())


def test_accuracy_per_image():
    model = linear([[1.0, 0.0], [0.0, 1.0]])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert accuracy_per_image(model, x, torch.tensor([0, 1, 1])).tolist() == [1.0, 1.0, 0.0]


def tiny_batch(name: str, n: int = 3) -> EvalBatch:
    adapter, images, _ = role(name, n)
    labels = torch.tensor([0, 1, 3][:n])
    masks = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    masks[:, 8:20, 10:24] = True
    boxes = torch.tensor([[10, 8, 24, 20]] * n)
    split = SplitTensors(images, labels, masks, boxes, [f"i{k}" for k in range(n)], torch.zeros(n, dtype=torch.long),
                         ["a"] * n, ["a", "b", "c", "d"])
    return EvalBatch(adapter, split, images, ClassTarget(labels), None, None, "toy")


def test_step_records_keys(tmp_path, monkeypatch):
    batches = {0: tiny_batch("plaincnn")}
    g = torch.Generator().manual_seed(2)
    train = (torch.rand(4, 3, SIZE, SIZE, generator=g), torch.tensor([0, 1, 2, 3]))
    monkeypatch.setattr(figures, "training_rows", lambda path, dataset, n: SimpleNamespace(images=train[0][:n], labels=train[1][:n]))
    settings = {"n_train": 4, "epochs": 1, "batch_size": 2, "lr": 0.01, "epsilon": 8 / 255, "step_size": None, "pgd_steps": 1,
                "eval_pgd_steps": 1, "n_images": 2, "methods": ["gradcam", "saliency"], "method_settings": None, "models": None}
    cfg = {"seed": 0, "device": "cpu", "paper": settings,
           "eval": {"n_images": 3, "batch_size": 8, "bootstrap": 20, "ci": 0.95, "deletion_steps": 4, "perturbation": "rise_code"}}
    out = {k: str(tmp_path / f) for k, f in (("records", "r.json"), ("table", "t.md"), ("figure", "f.png"))}
    ctx = StepContext(step="compare", models=["plaincnn.safetensors"], datasets=["d"], methods=[],
                      maps_dir=tmp_path, outputs=out, config=cfg, device=torch.device("cpu"), _batches=batches)
    figures.compare(ctx)
    records = json.loads((tmp_path / "r.json").read_text())
    records = records["records"] if isinstance(records, dict) else records
    keys = {f"{r['dataset']}/{r['model']}/{r['method']}/{r['metric']}" for r in records}
    expected = {f"toy/{m}/{meth}@{kind}/{metric}" for m in ("plaincnn",) for meth in ("gradcam", "saliency")
                for kind in ("vanilla", "robust") for metric in figures.METRICS}
    expected |= {f"toy/{m}/robust_xai@{kind}/{metric}" for m in ("plaincnn",) for kind in ("vanilla", "robust")
                 for metric in ("clean_accuracy", "pgd_accuracy")}
    assert keys == expected
    assert all(len(r["extra"]["per_image"]) == 2 for r in records)
    assert (tmp_path / "f.png").exists() and "robust" in (tmp_path / "t.md").read_text()
