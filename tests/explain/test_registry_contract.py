"""The method contract, over every registered method and every zoo architecture it applies to.

For each (method, tiny model) pair the registry says applies: finite float32 (B, H, W) maps;
a batch explained at once equals its images explained one at a time; no hook is left on the
model and its output is unchanged; and on every model it does not apply to, a clear
:class:`MethodNotApplicable`. Also: the workflow's parse-time reading of the decorators
(shared.registry_meta, no import) agrees with the imported registry, for every method.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from shared.explain import ClassTarget, build_explainer, get_method
from shared.explain.pair import PairTarget
from shared.explain.registry import MethodNotApplicable, registered
from shared.models import build_adapter
from shared.registry_meta import method_table
from tiny_zoo import CLASSES, SIZE, ZOO


def _all_methods() -> list[str]:
    """Every registered name, and the first block variant of each method registered with blocks=True."""
    table = method_table()
    return sorted(table) + sorted(f"{m}_b1" for m, info in table.items() if info["blocks"])


def _import_all() -> None:
    for name in method_table():
        get_method(name)


@pytest.fixture(scope="module")
def zoo() -> dict:
    torch.manual_seed(0)
    adapters = {name: build_adapter(name, cfg, CLASSES).explain_mode() for name, cfg in ZOO.items()}
    # timm initialises LayerNorm to gamma = 1, beta = 0, where every token's channel sum is 0:
    # Eigen-CAM's sign rule (agree with the channel sum) is then undefined and flips with
    # rounding. Trained ViTs have no such symmetry; give the tiny one random affine norms.
    with torch.no_grad():
        for m in adapters["vit"].modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    return adapters


def _inputs(adapter):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, SIZE, SIZE, generator=g)
    if adapter.task == "classifier":
        return images, ClassTarget(torch.tensor([0, 1, 2]))
    refs = torch.rand(3, 3, SIZE, SIZE, generator=g)
    return images, PairTarget.from_images(adapter, refs)


def _hooks(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(getattr(m, "_backward_pre_hooks", {}))
        for m in model.modules()
    )


# Batched and one-at-a-time maps agree to float32 rounding (1e-4 of the map's scale) except where
# the method's own numerics amplify rounding: NAFlow's per-image CGLS inverse stops after a
# data-dependent number of steps, and the product combination of NormGrad takes fractional
# powers of min-max normalised maps ((1e-7)^(1/4) ≈ 0.02 where the minimum moves by one ulp).
BATCH_TOLERANCE = {"naflow": 1e-2, "normgrad_combined_product": 5e-2}


# Constructor arguments that keep the contract check cheap for methods whose cost is a number
# of forward passes (the paper's defaults stay the registered ones; the workflow's profiles set
# theirs in config methods:). Never a setting that changes what the method computes per pass.
CHEAP_SETTINGS: dict[str, dict] = {
    # path / noise methods: a few points per image (the per-point computation is unchanged)
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 4},
    "smoothgrad_sq": {"samples": 4},
    "vargrad": {"samples": 4},
    # B·C masked / ablated copies either way: one chunk for all of them (max_batch only sets memory)
    "scorecam": {"max_batch": 2048},
    "ablationcam": {"max_batch": 2048},
    "occlusion": {"window": 16, "stride": 8},  # 3 × 3 windows on the 32 px zoo images
    "rise": {"n_masks": 24, "max_batch": 64},
}


def _needs_training_data(name: str) -> bool:
    # DAAM's self-supervised variant builds a k-NN memory bank from the training split
    return "dataset" in inspect.signature(get_method(name).factory).parameters


PAIRS = [(m, model) for m in _all_methods() for model in ZOO]


@pytest.mark.parametrize(("method", "model"), PAIRS, ids=[f"{m}-{k}" for m, k in PAIRS])
def test_method_contract(zoo, method: str, model: str) -> None:
    spec = get_method(method)
    adapter = zoo[model]
    if not spec.applies(adapter.kind, adapter.task, adapter.arch):
        with pytest.raises(MethodNotApplicable, match=method):
            build_explainer(method, adapter)
        return
    if _needs_training_data(method):
        pytest.skip(f"{method} needs a training split (tested in its paper's tests)")
    images, target = _inputs(adapter)
    before_hooks = _hooks(adapter.model)
    with torch.no_grad():
        before = adapter(images)
    explainer = build_explainer(method, adapter, **CHEAP_SETTINGS.get(method, {}))
    maps = explainer(images, target)
    assert maps.shape == (3, SIZE, SIZE) and maps.dtype == torch.float32
    assert bool(torch.isfinite(maps).all())
    one_by_one = torch.cat([explainer(images[i : i + 1], target.subset(torch.tensor([i]))) for i in range(3)])
    scale = float(maps.abs().max()) or 1.0
    tol = max(BATCH_TOLERANCE.get(method, 1e-4), BATCH_TOLERANCE.get(method.rsplit("_b", 1)[0], 1e-4))
    torch.testing.assert_close(maps, one_by_one, rtol=0, atol=tol * scale)
    assert _hooks(adapter.model) == before_hooks, "hooks left on the model"
    with torch.no_grad():
        torch.testing.assert_close(adapter(images), before, rtol=0, atol=0)
    assert all(not p.requires_grad for p in adapter.model.parameters())


def test_parse_time_registry_equals_the_imported_one() -> None:
    _import_all()
    table = method_table()
    runtime = {name: spec for name, spec in registered().items() if name in table}  # tests register toys too
    assert sorted(table) == sorted(runtime)
    for name, info in table.items():
        spec = runtime[name]
        assert (list(spec.kinds), list(spec.tasks), list(spec.archs) if spec.archs else None, spec.leaderboard, spec.blocks) == (
            info["kinds"], info["tasks"], info["archs"], info["leaderboard"], info["blocks"]
        ), name


def test_block_variants_explain_the_kth_block(zoo) -> None:
    from shared.explain.layers import block_layers

    for model in ("resnet", "plaincnn", "vit"):
        adapter = zoo[model]
        for k, layer in enumerate(block_layers(adapter), start=1):
            assert build_explainer(f"gradcam_b{k}", adapter).layer == layer
        with pytest.raises(ValueError, match="does not exist"):
            build_explainer(f"gradcam_b{len(block_layers(adapter)) + 1}", adapter)
    assert block_layers(zoo["plaincnn"])[-1] == zoo["plaincnn"].target_layer
    assert block_layers(zoo["vit"])[-1] == zoo["vit"].target_layer


def test_unknown_and_variantless_names_are_refused() -> None:
    with pytest.raises(KeyError, match="nearest"):
        get_method("gradcamm")
    with pytest.raises(KeyError, match="no block variants"):
        get_method("eigencam_b2")
