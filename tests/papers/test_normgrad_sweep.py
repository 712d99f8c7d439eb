"""The meta step's learning-rate sweep and the constant-map exclusion of NormGrad's class
sensitivity (papers/normgrad/figures.py ``class_sensitivity``, papers/normgrad/meta.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from papers.gradcam.method import GradCAM
from papers.normgrad.figures import (
    META_LRS,
    _lookup,
    _record_pair,
    class_sensitivity_records,
    lr_tag,
    sweep_figure,
    sweep_metric,
    sweep_table,
)
from papers.normgrad.meta import DEFAULT_META_LR, meta_layer_signals_sweep
from papers.normgrad.method import MetaGradCAM, NormGrad
from shared.explain import ClassTarget, upsample
from shared.metrics import class_sensitivity
from shared.models.adapter import ModelAdapter
from shared.plotting import Recorder


class TinyNet(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(5, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act2(self.conv2(self.act(self.conv1(x)))).mean(dim=(2, 3)))


def tiny_adapter(seed: int = 0) -> ModelAdapter:
    torch.manual_seed(seed)
    return ModelAdapter(TinyNet(), "cnn", "classifier", "act", layers=["act", "act2"], mean=(0, 0, 0), std=(1, 1, 1)).eval()


def recorder() -> Recorder:
    return Recorder({"seed": 0, "device": "cpu", "eval": {"bootstrap": 20, "ci": 0.95}})


def test_lr_tags_name_the_sweep_metrics():
    assert [lr_tag(lr) for lr in (1e-2, 5e-3, 2.5e-3, 1e-4)] == ["1e-2", "5e-3", "2.5e-3", "1e-4"]
    assert sweep_metric(1e-2) == "class_sensitivity_lr1e-2"
    assert sweep_metric(2.5e-3, "class_sensitivity_constant_map") == "class_sensitivity_constant_map_lr2.5e-3"
    assert DEFAULT_META_LR in META_LRS


def test_constant_maps_are_excluded_and_counted_on_hand_made_maps():
    """Image 1's bottom-class map and image 3's top-class map are constant: their correlation is
    undefined; the record averages the other images, and the table counts the two."""
    torch.manual_seed(0)
    n = 5
    images = torch.rand(n, 3, 6, 6)
    logits = torch.tensor([[3.0, 1.0, 0.0]] * n)  # top class 0, bottom class 2
    top_maps, bottom_maps = torch.rand(n, 6, 6), torch.rand(n, 6, 6)
    bottom_maps[1] = 0.0  # e.g. Grad-CAM's ReLU with no positive evidence
    top_maps[3] = 0.7
    top, bottom = logits.argmax(1), logits.argmin(1)
    result = class_sensitivity(images, logits, _lookup([(top, top_maps), (bottom, bottom_maps)]))
    assert torch.isnan(result.correlation).tolist() == [False, True, False, True, False]

    rec = recorder()
    _record_pair(rec, result, method="gradcam", model="m", dataset="d", lr=None, pointing=True)
    by = {r.metric: r for r in rec.records}
    kept = [0, 2, 4]
    cs = by["class_sensitivity"]
    assert cs.value == pytest.approx(float(result.correlation[kept].mean()))
    assert cs.n == 3 and cs.extra["excluded"] == 2  # shared.plotting.Recorder's contract
    assert cs.extra["per_image"][1] is None and cs.extra["per_image"][3] is None
    assert by["class_sensitivity_constant_map"].value == pytest.approx(2 / 5)
    assert by["class_sensitivity_constant_map"].n == 5
    assert by["class_sensitivity_pointing_disagreement"].n == 3  # no maximum on a constant map either

    table = sweep_table(rec.records, ["gradcam"])
    assert "| d | m | gradcam | no meta step |" in table
    assert table.rstrip().splitlines()[4].endswith("| 3 | 2 |")  # images used, constant maps excluded


def test_meta_sweep_at_lr_zero_equals_no_meta_step():
    adapter = tiny_adapter()
    x = torch.rand(3, 3, 8, 8)
    target = ClassTarget(torch.tensor([0, 3, 1]))
    (A0, G0), (A1, G1) = meta_layer_signals_sweep(adapter, x, target, ["act"], [0.0, 0.5])
    size = tuple(x.shape[-2:])
    ng, gc = NormGrad(adapter, meta=True), MetaGradCAM(adapter)
    assert torch.allclose(ng.map_from_signals(A0[0], G0[0], size), NormGrad(adapter)(x, target), atol=1e-6)
    assert torch.allclose(gc.map_from_signals(A0[0], G0[0], size), GradCAM(adapter)(x, target), atol=1e-6)
    assert not torch.allclose(ng.map_from_signals(A1[0], G1[0], size), NormGrad(adapter)(x, target), atol=1e-6)


def test_meta_sweep_equals_the_meta_method_at_each_lr():
    """Reusing each image's parameter gradient across learning rates changes nothing."""
    adapter = tiny_adapter(1)
    x = torch.rand(2, 3, 8, 8)
    target = ClassTarget(torch.tensor([2, 0]))
    lrs = [0.3, 0.05]
    for lr, (A, G) in zip(lrs, meta_layer_signals_sweep(adapter, x, target, ["act"], lrs)):
        expected = NormGrad(adapter, meta=True, lr=lr)(x, target)
        assert torch.allclose(NormGrad(adapter).cam(A[0], G[0]), expected, atol=1e-6)
    with pytest.raises(ValueError, match=">= 0"):
        meta_layer_signals_sweep(adapter, x, target, ["act"], [-1e-3])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_larger_lr_changes_the_maps_of_a_tiny_model_more(seed):
    adapter = tiny_adapter(seed)
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        bottom = adapter(x).argmin(1)  # the class the meta step moves most (cross-entropy far from 0)
    target = ClassTarget(bottom)
    lrs = [0.0, 1e-3, 1e-2, 1e-1]
    maps = [upsample(NormGrad(adapter).cam(A[0], G[0]), (8, 8)) for A, G in meta_layer_signals_sweep(adapter, x, target, ["act"], lrs)]
    change = [float((m - maps[0]).flatten(1).norm(dim=1).mean()) for m in maps[1:]]
    assert change[0] > 0
    assert change == sorted(change) and change[0] < change[1] < change[2], change


def test_records_sweep_every_lr_and_keep_the_claim_records(tmp_path):
    """Records class_sensitivity_lr<lr> for the meta methods; lr 0 reproduces the method without
    the meta step; the meta methods' own class_sensitivity is their run at their lr; the figure renders."""
    adapter = tiny_adapter(2)
    images = torch.rand(6, 3, 8, 8)
    batch = SimpleNamespace(adapter=adapter, images=images, dataset="shapes")
    rec = recorder()
    methods = ["normgrad", "normgrad_meta", "gradcam", "gradcam_meta"]
    lrs = (0.0, 1e-2, DEFAULT_META_LR)
    class_sensitivity_records(batch, methods, batch_size=4, rec=rec, lrs=lrs)
    by = {(r.method, r.metric): r for r in rec.records}
    for m in ("normgrad_meta", "gradcam_meta"):
        for lr in lrs:
            assert (m, sweep_metric(lr, "class_sensitivity_constant_map")) in by
        assert (m, "class_sensitivity") in by and (m, "class_sensitivity_pointing_disagreement") in by
    assert ("normgrad", sweep_metric(1e-2)) not in by  # no sweep without the meta step
    assert by[("normgrad_meta", sweep_metric(0.0))].value == pytest.approx(by[("normgrad", "class_sensitivity")].value, abs=1e-6)
    zero, base = by[("gradcam_meta", sweep_metric(0.0, "class_sensitivity_constant_map"))], by[("gradcam", "class_sensitivity_constant_map")]
    assert zero.value == pytest.approx(base.value)
    assert by[("normgrad_meta", "class_sensitivity")].value == by[("normgrad_meta", sweep_metric(DEFAULT_META_LR))].value

    fig = sweep_figure(rec.records, methods, lrs=(1e-2, DEFAULT_META_LR))
    assert len(fig.axes) == 1
    fig.savefig(tmp_path / "sweep.png")
    table = sweep_table(rec.records, methods, lrs=lrs)
    assert table.count("| normgrad_meta |") == len(lrs) and table.count("| normgrad |") == 1


def test_the_configured_sweep_defaults_to_the_authors_and_one_lr_still_renders(tmp_path):
    """papers.normgrad.meta_lrs: its schema default is the authors' sweep (META_LRS); a sweep of one
    lr (the rehearsal's) still makes every record, the table and the figure."""
    from shared.config import paper_settings

    assert tuple(paper_settings({"papers": {}}, "normgrad")["meta_lrs"]) == META_LRS
    assert paper_settings({"papers": {"normgrad": {"meta_lrs": [2.5e-3]}}}, "normgrad")["meta_lrs"] == [2.5e-3]
    rec, methods = recorder(), ["gradcam_meta"]
    batch = SimpleNamespace(adapter=tiny_adapter(2), images=torch.rand(4, 3, 8, 8), dataset="shapes")
    class_sensitivity_records(batch, methods, 4, rec, lrs=(DEFAULT_META_LR,))
    assert {r.metric for r in rec.records} >= {"class_sensitivity", sweep_metric(DEFAULT_META_LR)}
    assert "2.5e-3" in sweep_table(rec.records, methods, lrs=(DEFAULT_META_LR,))
    sweep_figure(rec.records, methods, lrs=(DEFAULT_META_LR,)).savefig(tmp_path / "one.png")
