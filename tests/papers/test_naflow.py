"""NAFlow against a dense, per-image reference that follows the authors' code step by step.

The reference walks the layers one image at a time: gradients by one vector–Jacobian product
per layer (as the authors' NA-BP modules do), the convolution inverse by building the dense
Jacobian with ``torch.func.jacrev`` and solving with ``torch.linalg.lstsq`` (minimum norm),
max-unpooling by scattering with the pooling indices, BN by its affine formula.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from papers.naflow.method import NAFlow, conv_least_squares, naflow, plain_features
from shared.explain import ClassTarget, SimilarityTarget, build_explainer
from shared.explain.layers import block_layers
from shared.models.adapter import ModelAdapter

torch.set_num_threads(1)
SIZE = 16


class TinyPlain(nn.Module):
    """conv(bias)–BN–ReLU–pool, an over-determined conv, a strided under-determined conv; GAP + linear."""

    def __init__(self, embedding: bool = False) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 10, 3, padding=1, bias=False), nn.BatchNorm2d(10), nn.ReLU(),
            nn.Conv2d(10, 6, 3, stride=2, padding=1, bias=True), nn.ReLU(),
        )
        self.fc = nn.Identity() if embedding else nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def unpool_reference(y: torch.Tensor, idx: torch.Tensor, size) -> torch.Tensor:
    """torch's own unpool as the independent reference; it is flagged non-deterministic (it is
    not, for non-overlapping windows), so deterministic mode is paused around it."""
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        return F.max_unpool2d(y, idx, 2, output_size=size)
    finally:
        torch.use_deterministic_algorithms(was)


def tiny_adapter(seed: int = 0, embedding: bool = False, dtype=torch.float64) -> ModelAdapter:
    torch.manual_seed(seed)
    model = TinyPlain(embedding)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    relus = [f"features.{i}" for i, m in enumerate(model.features) if isinstance(m, nn.ReLU)]
    adapter = ModelAdapter(
        model.eval(), kind="cnn", task="embedding" if embedding else "classifier", target_layer=relus[-1],
        layers=relus, metric="cosine" if embedding else None, name="tiny_plain",
    )
    return adapter.to(dtype).eval()  # the wrapper too: frozen() restores the wrapper's mode recursively


def images(n: int = 3, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)).to(dtype)


def dense_lstsq(conv: nn.Conv2d, t: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
    """Minimum-norm least squares of one image's conv (no bias) with the dense Jacobian."""
    def op(v: torch.Tensor) -> torch.Tensor:
        return F.conv2d(v.view(1, *in_shape), conv.weight, None, conv.stride, conv.padding).flatten()

    n = int(torch.tensor(in_shape).prod())
    jac = torch.func.jacrev(op)(torch.zeros(n, dtype=t.dtype))  # (m, n)
    return torch.linalg.lstsq(jac, t.flatten()[:, None], driver="gelsd").solution.view(in_shape)


def reference_naflow(adapter: ModelAdapter, image: torch.Tensor, score_fn) -> tuple[list, list]:
    """Maps and reconstructions (bottom to top) for ONE image, layer by layer."""
    feats = adapter.model.features
    x0 = ((image[None] - adapter._mean) / adapter._std).requires_grad_(True)
    xs = [x0]
    for m in feats:
        xs.append(m(xs[-1]))
    score = score_fn(adapter.model.fc(xs[-1].mean(dim=(2, 3)))[0])
    grads = [None] * len(xs)
    grads[-1] = torch.autograd.grad(score, xs[-1], retain_graph=True)[0]
    for k in range(len(feats), 1, -1):  # g_{k-1} = vjp of layer k with g_k
        grads[k - 1] = torch.autograd.grad(xs[k], xs[k - 1], grad_outputs=grads[k], retain_graph=True)[0]
    y = xs[-1].detach()
    recon, maps = [y], [(y * grads[-1]).clamp_min(0).sum(1)]
    with torch.no_grad():
        for k in range(len(feats), 1, -1):
            m, x_in = feats[k - 1], xs[k - 1].detach()
            if isinstance(m, nn.ReLU):
                y = y.clone()
            elif isinstance(m, nn.MaxPool2d):
                _, idx = F.max_pool2d(x_in, 2, return_indices=True)
                y = unpool_reference(y, idx, x_in.shape[-2:])
            elif isinstance(m, nn.BatchNorm2d):
                c = lambda v: v.view(1, -1, 1, 1)  # noqa: E731
                y = (y - c(m.bias)) / c(m.weight) * c((m.running_var + m.eps).sqrt()) + c(m.running_mean)
            elif isinstance(m, nn.Conv2d):
                b = m.bias.view(1, -1, 1, 1) if m.bias is not None else 0.0
                y = dense_lstsq(m, (y - b)[0], tuple(x_in.shape[1:]))[None]
            y = y * (grads[k - 1] != 0)
            recon.append(y)
            maps.append((y * grads[k - 1]).clamp_min(0).sum(1))
    return maps[::-1], recon[::-1]


@pytest.mark.parametrize("cin,cout,stride,size", [(3, 5, 1, 6), (4, 2, 2, 7), (4, 3, 2, 8)])
def test_conv_least_squares_matches_dense(cin, cout, stride, size):
    """Over- and under-determined, strided (odd and even sizes: output_padding 0 and 1)."""
    torch.manual_seed(cin + cout)
    conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False).double()
    gen = torch.Generator().manual_seed(2)
    x_true = torch.randn(2, cin, size, size, generator=gen, dtype=torch.float64)
    t = conv(x_true).detach()
    t = t * (torch.rand(t.shape, generator=gen) > 0.3)  # an inconsistent right-hand side, as after abandoning
    got = conv_least_squares(conv, t, tuple(x_true.shape), iterations=2000, tol=1e-12)
    want = torch.stack([dense_lstsq(conv, t[i], tuple(x_true.shape[1:])) for i in range(2)])
    torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-8)


def test_naflow_matches_dense_reference_float64():
    adapter, x = tiny_adapter(), images(3)
    labels = torch.tensor([0, 2, 1])
    result = naflow(adapter, x, ClassTarget(labels), iterations=3000, tol=1e-13)
    assert len(result.maps) == len(adapter.model.features)
    for i in range(3):
        maps, recon = reference_naflow(adapter, x[i], lambda logits, c=int(labels[i]): logits[c])
        for k, (m, r) in enumerate(zip(maps, recon)):
            if k == 0:
                continue  # the first layer is not inverted: its map is that of x̂_1
            torch.testing.assert_close(result.reconstructions[k][i], r[0], rtol=1e-6, atol=1e-8, msg=f"layer {k}")
            torch.testing.assert_close(result.maps[k][i], m[0], rtol=1e-6, atol=1e-8, msg=f"layer {k}")
        torch.testing.assert_close(result.maps[0][i], maps[0][0], rtol=1e-6, atol=1e-8)


def test_naflow_float32_defaults_close_to_dense():
    a64, x64 = tiny_adapter(), images(2)
    a32 = tiny_adapter(dtype=torch.float32)
    labels = torch.tensor([1, 2])
    got = NAFlow(a32, block=1)(x64.float(), ClassTarget(labels))
    for i in range(2):
        maps, _ = reference_naflow(a64, x64[i], lambda logits, c=int(labels[i]): logits[c])
        want = F.interpolate(maps[2][None].float(), size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0]
        assert float((got[i] - want).abs().max()) <= 1e-3 * float(want.abs().max())


def test_similarity_variant_on_plain_embedding():
    adapter, x = tiny_adapter(embedding=True), images(2)
    ref_emb = torch.randn(2, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    result = naflow(adapter, x, SimilarityTarget(ref_emb, "cosine"), iterations=3000, tol=1e-13)
    for i in range(2):
        maps, _ = reference_naflow(adapter, x[i], lambda f, r=ref_emb[i]: F.cosine_similarity(f, r, dim=0))
        for k in range(len(maps)):
            torch.testing.assert_close(result.maps[k][i], maps[k][0], rtol=1e-6, atol=1e-8)


def test_batched_equals_single_images():
    adapter, x = tiny_adapter(dtype=torch.float32), images(4, dtype=torch.float32)
    labels = torch.tensor([0, 1, 2, 0])
    batched = NAFlow(adapter)(x, ClassTarget(labels))
    singles = torch.cat([NAFlow(adapter)(x[i : i + 1], ClassTarget(labels[i : i + 1])) for i in range(4)])
    torch.testing.assert_close(batched, singles, rtol=1e-4, atol=1e-6)


def test_abandoned_neurons_and_exact_top_step():
    """x̂ is zero wherever the gradient is zero; through the top ReLU, x̂ = x_L on the kept neurons."""
    adapter, x = tiny_adapter(), images(2)
    result = naflow(adapter, x, ClassTarget(torch.tensor([0, 1])))
    for k in range(1, len(result.maps)):
        assert bool((result.reconstructions[k][result.gradients[k] == 0] == 0).all())
    top, below = result.reconstructions[-1], result.reconstructions[-2]
    kept = result.gradients[-2] != 0
    assert torch.equal(below[kept], top[kept])
    assert bool(kept.any()) and not bool(kept.all())  # something was abandoned (negative pre-activations)


def test_gradcam_block_matches_hand_formula():
    adapter, x = tiny_adapter(), images(2)
    labels = torch.tensor([2, 0])
    assert block_layers(adapter) == ["features.2", "features.6", "features.8"]  # the conv blocks' ReLUs
    explainer = build_explainer("gradcam_b2", adapter)
    assert explainer.layer == "features.6"
    maps = explainer(x, ClassTarget(labels))
    feats = adapter.model.features
    for i in range(2):
        h = ((x[i : i + 1] - adapter._mean) / adapter._std)
        for m in list(feats)[:7]:  # up to block 2's ReLU (features.6)
            h = m(h)
        a = h.detach().requires_grad_(True)
        logits = adapter.model.fc(feats[8](feats[7](a)).mean(dim=(2, 3)))
        (g,) = torch.autograd.grad(logits[0, int(labels[i])], a)
        cam = (g.mean(dim=(2, 3))[:, :, None, None] * a).sum(1).clamp_min(0).detach()
        want = F.interpolate(cam[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
        torch.testing.assert_close(maps[i : i + 1].double(), want, rtol=1e-5, atol=1e-7)


def test_clear_errors():
    from timm.models.vision_transformer import VisionTransformer

    vit = ModelAdapter(VisionTransformer(img_size=16, patch_size=8, embed_dim=8, depth=1, num_heads=1, num_classes=2),
                       kind="vit", task="classifier", target_layer="blocks.0", num_prefix_tokens=1)
    with pytest.raises(ValueError, match="plain CNNs"):
        NAFlow(vit)
    skip = ModelAdapter(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                        kind="cnn", task="classifier", target_layer="0")
    with pytest.raises(TypeError, match="features"):
        NAFlow(skip)
    adapter = tiny_adapter(dtype=torch.float32)
    with pytest.raises(ValueError, match=r"has 3 blocks .*block 5 does not exist"):
        NAFlow(adapter, block=5)
    adapter.model.features[2] = nn.GELU()
    with pytest.raises(TypeError, match="GELU"):
        plain_features(adapter)
    adapter = tiny_adapter(dtype=torch.float32)
    adapter.model.features[2].inplace = True
    with pytest.raises(ValueError, match="in-place"):
        NAFlow(adapter)
    with pytest.raises(ValueError, match="needs a target"):
        NAFlow(tiny_adapter(dtype=torch.float32))(images(1, dtype=torch.float32))


# ---------------------------------------------------------------- the step (papers/naflow/figures.py)


def _flow_step(tmp_path, methods):
    from shared.figure_step import StepContext
    from shared.pipeline.io import EvalBatch

    adapter, x = tiny_adapter(dtype=torch.float32), images(2, dtype=torch.float32)
    ctx = StepContext(
        step="flow", models=[str(tmp_path / "tiny_plain.safetensors")], datasets=["unused"], methods=methods,
        maps_dir=tmp_path / "maps", outputs={"figure": str(tmp_path / "flow.png")}, config={"eval": {"n_images": 2}},
        device=torch.device("cpu"),
    )
    ctx._batches[0] = EvalBatch(adapter, None, x, ClassTarget(torch.tensor([0, 2])), None, None, "toy")
    return ctx, adapter, x


def test_flow_step_reads_the_shared_maps(tmp_path, monkeypatch):
    """The figure shows the per-model maps of naflow_b<k> / gradcam_b<k>; it recomputes nothing."""
    import papers.naflow.method as method
    from papers.naflow.figures import STEPS, flow_blocks
    from shared.pipeline.io import save_maps

    methods = [f"{m}_b{k}" for m in ("naflow", "gradcam") for k in (1, 2, 3)]
    assert flow_blocks(methods) == [3, 2, 1]
    assert flow_blocks(["naflow_b1", "naflow_b2", "gradcam_b2", "gradcam"]) == [2]
    ctx, adapter, x = _flow_step(tmp_path, methods)
    for name in methods:
        maps = build_explainer(name, adapter)(x, ClassTarget(torch.tensor([0, 2])))
        save_maps(tmp_path / "maps" / "tiny_plain" / f"{name}.safetensors", maps, {"method": name})

    def no_recompute(*args, **kwargs):
        raise AssertionError("the flow step recomputed NAFlow instead of reading the shared maps")

    monkeypatch.setattr(method, "naflow", no_recompute)
    monkeypatch.setattr(method.NAFlow, "explain", no_recompute)
    STEPS["flow"](ctx)
    assert (tmp_path / "flow.png").stat().st_size > 0


def test_flow_step_missing_maps_is_a_clear_error(tmp_path):
    from papers.naflow.figures import STEPS

    ctx, _, _ = _flow_step(tmp_path, ["naflow_b1", "gradcam_b1"])
    with pytest.raises(SystemExit, match="missing"):
        STEPS["flow"](ctx)
    ctx, _, _ = _flow_step(tmp_path, ["naflow_b1"])
    with pytest.raises(SystemExit, match="naflow_b<k> and gradcam_b<k>"):
        STEPS["flow"](ctx)


def test_layer_variants_share_one_flow_and_get_the_same_maps_as_alone():
    """naflow_b<k> after naflow on the same batch reuses its NA-BP pass (papers.naflow.method
    shared_flow): the maps equal a fresh computation; another target or re-initialised weights
    are a new flow."""
    from papers.naflow import method

    adapter, x = tiny_adapter(), images()
    target = ClassTarget([0, 1, 2])
    blocks = sorted({int(k) for k in range(1, len(block_layers(adapter)) + 1)})
    method._LAST_FLOW.clear()
    shared = [build_explainer("naflow", adapter, block=k)(x, target) for k in blocks]
    assert len(method._LAST_FLOW) == 1
    for k, got in zip(blocks, shared):
        method._LAST_FLOW.clear()
        assert torch.equal(got, build_explainer("naflow", adapter, block=k)(x, target)), k
    before = next(iter(method._LAST_FLOW))
    build_explainer("naflow", adapter, block=blocks[-1])(x, ClassTarget([1, 1, 1]))
    assert next(iter(method._LAST_FLOW)) != before
    key = next(iter(method._LAST_FLOW))
    with torch.no_grad():
        next(adapter.model.parameters()).mul_(2.0)  # an in-place re-initialisation (sanity checks)
    build_explainer("naflow", adapter, block=blocks[-1])(x, ClassTarget([1, 1, 1]))
    assert next(iter(method._LAST_FLOW)) != key
