"""NormGrad against the gradient of a *real* inserted layer, and the meta step against a
plain per-image SGD step on a deep copy.

Independent reference for NormGrad: insert, after the explained layer, an identity linear map
with its own weight W_u at every position u (1×1: W_u ∈ R^{C×C}; 3×3: W_u ∈ R^{C×9C} acting
on the zero-padded patch), differentiate the score with respect to those weights with
autograd, and take the Frobenius norm of ∂S/∂W_u — the spatial contribution the paper defines.
No norm-product formula is used in the reference.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import shared.models  # noqa: F401
from papers.gradcam.method import GradCAM
from papers.normgrad.method import MetaGradCAM, NormGrad, NormGradCombined, normgrad_map
from shared.explain import ClassTarget, SimilarityTarget, build_explainer, normalize_maps
from shared.models import build
from shared.models.adapter import ModelAdapter


class TwoConvNet(nn.Module):
    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1)
        self.bn = nn.BatchNorm2d(5)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(5, classes) if classes else nn.Identity()
        with torch.no_grad():  # non-trivial running statistics
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 1.5)

    def head(self, a: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act2(self.bn(self.conv2(a))).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv1(x)))


def adapter_for(model: nn.Module, layer: str = "act", task: str = "classifier", metric: str | None = None) -> ModelAdapter:
    return ModelAdapter(model, "cnn", task, layer, layers=["act", "act2"], mean=(0, 0, 0), std=(1, 1, 1), metric=metric).eval()


def reference_normgrad(model: TwoConvNet, x: torch.Tensor, label: int, k: int) -> torch.Tensor:
    """‖∂S/∂W_u‖_F for a per-position identity k×k conv inserted after ``act`` (one image)."""
    a = model.act(model.conv1(x[None]))  # (1, C, h, w)
    _, c, h, w = a.shape
    patches = F.unfold(a, k, padding=k // 2)[0].T.reshape(h, w, c * k * k)  # (h, w, C·k²)
    eye = torch.zeros(c, c, k, k)
    eye[range(c), range(c), k // 2, k // 2] = 1.0  # identity k×k kernel
    W = eye.reshape(c, c * k * k).expand(h, w, c, c * k * k).clone().requires_grad_(True)
    out = torch.einsum("hwij,hwj->ihw", W, patches)[None]  # equals a
    assert torch.allclose(out, a)
    score = model.head(out)[0, label]
    (gW,) = torch.autograd.grad(score, W)
    return gW.flatten(2).norm(dim=2)  # (h, w)


@pytest.mark.parametrize("k", [1, 3])
def test_normgrad_equals_norm_of_inserted_weight_gradient(k):
    torch.manual_seed(0)
    model = TwoConvNet()
    adapter = adapter_for(model)
    x = torch.rand(2, 3, 6, 6)
    labels = [2, 0]
    maps = NormGrad(adapter, kernel_size=k)(x, ClassTarget(labels))
    for i in range(2):
        expected = reference_normgrad(model, x[i], labels[i], k)
        assert expected.max() > 0
        assert torch.allclose(maps[i], expected, atol=1e-7, rtol=1e-5)


def test_normgrad_map_rejects_even_kernels():
    with pytest.raises(ValueError, match="odd positive"):
        normgrad_map(torch.rand(1, 2, 3, 3), torch.rand(1, 2, 3, 3), kernel_size=2)


def manual_meta_copy(model: nn.Module, x: torch.Tensor, label: int, lr: float) -> nn.Module:
    """A deep copy after one SGD step on the cross-entropy of one image (TorchRay's recipe)."""
    stepped = copy.deepcopy(model).eval()
    for p in stepped.parameters():
        p.requires_grad_(True)
    opt = torch.optim.SGD(stepped.parameters(), lr=lr)
    opt.zero_grad()
    F.cross_entropy(stepped(x[None]), torch.tensor([label])).backward()
    opt.step()
    return stepped


def test_meta_step_equals_per_image_sgd_step_on_a_copy():
    torch.manual_seed(0)
    model = TwoConvNet()
    adapter = adapter_for(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(3, 3, 6, 6)
    labels = [0, 1, 2]
    lr = 0.5  # large enough for the step to matter in a test (the default is the authors' class-selectivity rate, 2.5e-3)
    meta_maps = NormGrad(adapter, meta=True, lr=lr)(x, ClassTarget(labels))
    meta_cam = MetaGradCAM(adapter, lr=lr)(x, ClassTarget(labels))
    plain = NormGrad(adapter)(x, ClassTarget(labels))
    for i in range(3):
        stepped = adapter_for(manual_meta_copy(model, x[i], labels[i], lr))
        expected = NormGrad(stepped)(x[i : i + 1], ClassTarget([labels[i]]))[0]
        assert torch.allclose(meta_maps[i], expected, atol=1e-6, rtol=1e-4)
        expected_cam = GradCAM(stepped)(x[i : i + 1], ClassTarget([labels[i]]))[0]
        assert torch.allclose(meta_cam[i], expected_cam, atol=1e-6, rtol=1e-4)
    assert not torch.allclose(meta_maps, plain, rtol=1e-3)  # the step changed something
    # the shared model is untouched: same weights, no gradients, still in eval mode
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_meta_step_with_similarity_target_ascends_similarity():
    torch.manual_seed(0)
    model = TwoConvNet(classes=0)
    adapter = adapter_for(model, task="embedding", metric="euclidean")
    x = torch.rand(2, 3, 6, 6)
    ref = torch.rand(2, 5)
    lr = 0.1
    maps = NormGrad(adapter, meta=True, lr=lr)(x, SimilarityTarget(ref, "euclidean"))
    for i in range(2):
        stepped = copy.deepcopy(model).eval()
        for p in stepped.parameters():
            p.requires_grad_(True)
        loss = ((stepped(x[i : i + 1]) - ref[i]) ** 2).sum()  # -similarity
        grads = torch.autograd.grad(loss, list(stepped.parameters()))
        with torch.no_grad():
            for p, g in zip(stepped.parameters(), grads):
                p -= lr * g
        expected = NormGrad(adapter_for(stepped, task="embedding", metric="euclidean"))(x[i : i + 1], SimilarityTarget(ref[i : i + 1], "euclidean"))
        assert torch.allclose(maps[i], expected[0], atol=1e-6, rtol=1e-4)


def test_combined_is_weighted_sum_of_normalised_layer_maps():
    torch.manual_seed(0)
    adapter = adapter_for(TwoConvNet())
    x = torch.rand(2, 3, 6, 6)
    t = ClassTarget([1, 2])
    per_layer = [normalize_maps(NormGrad(adapter, layer=name)(x, t)) for name in ("act", "act2")]
    combined = NormGradCombined(adapter, layer_weights=[1.0, 3.0])(x, t)
    assert torch.allclose(combined, 0.25 * per_layer[0] + 0.75 * per_layer[1], atol=1e-6)
    product = NormGradCombined(adapter, layer_weights=[1.0, 3.0], accumulation="product")(x, t)
    assert torch.allclose(product, per_layer[0] ** 0.25 * per_layer[1] ** 0.75, atol=1e-6)


def test_combined_rejects_bad_arguments():
    adapter = adapter_for(TwoConvNet())
    with pytest.raises(ValueError, match="non-negative numbers"):
        NormGradCombined(adapter, layer_weights=[1.0])
    with pytest.raises(ValueError, match="'sum' or 'product'"):
        NormGradCombined(adapter, accumulation="mean")
    with pytest.raises(KeyError, match="nearest layer names"):
        NormGradCombined(adapter, layers=["act", "nope"])


@pytest.mark.parametrize("arch", ["resnet_small", "vit_small_shapes"])
def test_batched_equals_per_image_on_small_models(arch):
    torch.manual_seed(0)
    adapter = build(arch, {"arch": arch}, [str(i) for i in range(8)]).explain_mode()
    x = torch.rand(2, 3, 64, 64)
    labels = torch.tensor([0, 5])
    for name in ("normgrad", "normgrad_3x3", "normgrad_meta", "normgrad_combined"):
        explainer = build_explainer(name, adapter)
        batched = explainer(x, ClassTarget(labels))
        single = torch.cat([explainer(x[i : i + 1], ClassTarget(labels[i : i + 1])) for i in range(2)])
        assert batched.abs().max() > 0, name
        assert torch.allclose(batched, single, atol=1e-5 * float(batched.abs().max())), (arch, name)


def test_vit_combined_defaults_to_block_inputs():
    torch.manual_seed(0)
    adapter = build("vit", {"arch": "vit_small_shapes"}, [str(i) for i in range(8)]).explain_mode()
    explainer = NormGradCombined(adapter)
    assert explainer.layers == [f"blocks.{i}.norm1" for i in range(4)]


# ---------------------------------------------------------------- class-sensitivity records (papers/normgrad/figures.py)


def _scipy_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """SciPy's Spearman correlation (average ranks for ties: ReLU zeros tie)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a.flatten().double().numpy(), b.flatten().double().numpy()).statistic)


def test_class_sensitivity_records_resolve_the_claim_keys():
    from types import SimpleNamespace

    from shared.plotting import Recorder
    from papers.normgrad.figures import class_sensitivity_records
    from shared.pipeline.results import result_key

    torch.manual_seed(0)
    adapter = adapter_for(TwoConvNet(classes=4), layer="act")
    images = torch.rand(3, 3, 8, 8)
    batch = SimpleNamespace(adapter=adapter, images=images, dataset="shapes")
    rec = Recorder({"seed": 0, "device": "cpu", "eval": {"bootstrap": 20, "ci": 0.95}})
    class_sensitivity_records(batch, ["normgrad", "normgrad_meta"], batch_size=2, rec=rec)
    by = {result_key(r): r for r in rec.records}
    assert {"shapes/model/normgrad/class_sensitivity", "shapes/model/normgrad_meta/class_sensitivity"} <= set(by)
    # independent: maps of the top and bottom class, Spearman by SciPy, mean over images
    with torch.no_grad():
        logits = adapter(images)
    explainer = NormGrad(adapter)
    top = explainer(images, ClassTarget(logits.argmax(1)))
    bottom = explainer(images, ClassTarget(logits.argmin(1)))
    expected = sum(_scipy_spearman(top[i], bottom[i]) for i in range(3)) / 3
    assert by["shapes/model/normgrad/class_sensitivity"].value == pytest.approx(expected, abs=1e-6)
    assert by["shapes/model/normgrad/class_sensitivity"].n == 3


# ---------------------------------------------------------------- the steps end to end (shared.figure_step.step_main)


def test_steps_run_through_step_main_on_a_tiny_checkpoint(tmp_path):
    """class_sensitivity writes its declared records and table; layers reads the shared maps
    (``<maps-dir>/<model>/<method>.safetensors``) and refuses clearly when one is missing."""
    import json

    from papers.normgrad.figures import STEPS
    from shared.data import load_split
    from shared.data.generate import generate
    from shared.figure_step import step_main
    from shared.models import build_adapter, save_checkpoint
    from shared.models.checkpoint import adapter_record
    from shared.pipeline.explain import build_for, explain_in_batches
    from shared.pipeline.io import eval_batch, save_maps

    data = generate("shapes", {"image_size": 32, "n_classes": 2, "n_train": 4, "n_test": 4, "seed": 3}, tmp_path / "data")
    classes = load_split(data, "test").classes
    spec = {"arch": "vgg_small", "task": "classifier", "arch_kwargs": {"cfg": [8, "M", 16, "M", 16]}}
    adapter = build_adapter("tiny", spec, classes)
    ckpt = tmp_path / "tiny.safetensors"
    save_checkpoint(ckpt, adapter.model, {
        "name": "tiny", "model": spec, "metrics": {}, "primary_metric": "test_accuracy", "gate": 0.0, "classes": classes,
        "seed": 0, "dataset": {"name": "tiny", "content_hash": "0" * 64}, "adapter": adapter_record(adapter), "training": {},
    })
    cfg = json.dumps({"seed": 0, "device": "cpu", "threads": 2, "deterministic": True, "eval": {"n_images": 4, "batch_size": 2, "bootstrap": 20, "ci": 0.95}})
    common = ["--models", str(ckpt), "--datasets", str(data), "--maps-dir", str(tmp_path / "maps"), "--config-json", cfg]

    records, table = tmp_path / "out/cs.json", tmp_path / "out/cs.md"
    assert step_main(STEPS, argv=["class_sensitivity", "--methods", "normgrad", "--out", f"records={records}", f"table={table}", *common]) == 0
    recs = {r["metric"]: r for r in json.loads(records.read_text())}
    assert recs["class_sensitivity"]["method"] == "normgrad" and recs["class_sensitivity"]["n"] == 4
    assert table.is_file() and table.with_suffix(".csv").is_file()

    layer_methods = ["gradcam_b1", "normgrad_b2"]
    figure = tmp_path / "out/layers.png"
    with pytest.raises(SystemExit, match="gradcam_b1.safetensors, which is missing"):
        step_main(STEPS, argv=["layers", "--methods", *layer_methods, "--out", f"figure={figure}", *common])
    batch = eval_batch(ckpt, data, 4)
    for m in layer_methods:
        maps = explain_in_batches(build_for(m, batch.adapter, str(data)), batch.images, batch.target, 2, desc=m)
        save_maps(tmp_path / "maps/tiny" / f"{m}.safetensors", maps, {"method": m, "model": "tiny"})
    with pytest.raises(SystemExit, match="declare it in the step's outputs"):
        step_main(STEPS, argv=["layers", "--methods", *layer_methods, "--out", f"records={figure}", *common])
    assert step_main(STEPS, argv=["layers", "--methods", *layer_methods, "--out", f"figure={figure}", *common]) == 0
    assert figure.is_file() and figure.stat().st_size > 0
