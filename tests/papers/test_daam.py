"""DAAM, Grad-CAM on a ViT and attention rollout against a ViT forward pass written out by hand.

The reference runs one image at a time through an explicit forward pass (patch embedding,
layer norms, q/k/v, softmax, projection, MLP) built from the model's weights, takes ∂y/∂z of
each block's attention output with a zero "probe" added to z, and forms the maps with the
formulas of the paper and the authors' code — no code shared with the method.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from papers.daam.method import (
    DAAM,
    AttentionRollout,
    DAAMSelfSupervised,
    MemoryBank,
    display_mapping,
    embedding,
)
from shared.explain import ClassTarget, SimilarityTarget, build_explainer
from shared.explain.rollout import attention_rollout, capture_attention
from shared.models.adapter import ModelAdapter

torch.set_num_threads(1)
SIZE, PATCH, DIM, HEADS, DEPTH, CLASSES = 16, 4, 16, 2, 3, 3


def tiny_vit(seed: int = 0, class_token: bool = True) -> ModelAdapter:
    torch.manual_seed(seed)
    model = VisionTransformer(
        img_size=SIZE, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS, mlp_ratio=2.0,
        num_classes=CLASSES, class_token=class_token, global_pool="token" if class_token else "avg",
        qkv_bias=True,
    )
    with torch.no_grad():  # timm's init makes attention nearly uniform; spread the weights out
        for p in model.parameters():
            p.normal_(0.0, 0.4)
    model.eval()
    prefix = 1 if class_token else 0
    return ModelAdapter(
        model, kind="vit", task="classifier", target_layer=f"blocks.{DEPTH - 1}.norm1",
        layers=[f"blocks.{i}" for i in range(DEPTH)], num_prefix_tokens=prefix, name="tiny_vit",
    ).eval()


def images(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def manual_forward(adapter: ModelAdapter, image: torch.Tensor):
    """Logits, per-block (A, V, z, probe, block input) for ONE image (3, H, W), by hand."""
    m = adapter.model
    x = (image[None] - adapter._mean) / adapter._std
    t = F.conv2d(x, m.patch_embed.proj.weight, m.patch_embed.proj.bias, stride=PATCH).flatten(2)[0].T  # (N, C)
    t = torch.cat([m.cls_token[0], t]) + m.pos_embed[0]
    blocks = []
    d = DIM // HEADS
    for blk in m.blocks:
        h = F.layer_norm(t, (DIM,), blk.norm1.weight, blk.norm1.bias, blk.norm1.eps)
        norm1_out = torch.zeros_like(h, requires_grad=True)  # probe for Grad-CAM at norm1's output
        norm1_value = h.detach()
        h = h + norm1_out
        qkv = h @ blk.attn.qkv.weight.T + blk.attn.qkv.bias
        q, k, v = (qkv[:, i * DIM : (i + 1) * DIM].reshape(-1, HEADS, d).transpose(0, 1) for i in range(3))
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d), dim=-1)  # (heads, N, N)
        z = (a @ v).transpose(0, 1).reshape(-1, DIM)  # channel (h, i) → h·d + i
        probe = torch.zeros_like(z, requires_grad=True)
        t = t + (z + probe) @ blk.attn.proj.weight.T + blk.attn.proj.bias
        h2 = F.layer_norm(t, (DIM,), blk.norm2.weight, blk.norm2.bias, blk.norm2.eps)
        t = t + F.linear(F.gelu(F.linear(h2, blk.mlp.fc1.weight, blk.mlp.fc1.bias)), blk.mlp.fc2.weight, blk.mlp.fc2.bias)
        blocks.append(dict(a=a.detach(), v=v.detach(), z=z.detach(), probe=probe, norm1_out=norm1_out, norm1_value=norm1_value))
    t = F.layer_norm(t, (DIM,), m.norm.weight, m.norm.bias, m.norm.eps)
    feature = t[0]
    logits = feature @ m.head.weight.T + m.head.bias
    return logits, feature, blocks


def reference_daam(adapter, image, seed_fn, relu_weights=True, norm=True):
    """Accumulated maps D_1..D_L (L, h, w) for one image, from the hand-written forward."""
    logits, feature, blocks = manual_forward(adapter, image)
    score = seed_fn(logits, feature)
    grads = torch.autograd.grad(score, [b["probe"] for b in blocks])
    maps = []
    for b, g in zip(blocks, grads):
        heads, n, d = b["v"].shape
        s = (b["a"][:, 0, :, None] * b["v"]).transpose(0, 1).reshape(n, heads * d)  # S[j, (h, i)]
        w = g[0].clamp_min(0) if relu_weights else g[0]
        m = (s[1:] @ w).clamp_min(0)
        if norm:
            m = m - m.min()
            m = m / (m.max() + 1e-10)
        maps.append(m)
    side = int(math.isqrt(maps[0].numel()))
    return torch.stack(maps).cumsum(0).reshape(-1, side, side)


def up(m: torch.Tensor) -> torch.Tensor:
    return F.interpolate(m[:, None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]


def test_manual_forward_matches_the_model():
    adapter, x = tiny_vit(), images(2)
    ref = torch.stack([manual_forward(adapter, im)[0] for im in x])
    torch.testing.assert_close(ref, adapter(x), rtol=1e-4, atol=1e-4)


def test_class_token_decomposition_is_exact():
    """Σ_j S[j, c] = z_cls[c]: the spatial features split the class-token output exactly."""
    adapter, x = tiny_vit(), images(2)
    with capture_attention(adapter, values=True, track_gradients=True) as rec, torch.enable_grad():
        adapter.explain_mode()(x)
    for a, v, z in zip(rec.attentions, rec.values, rec.outputs):
        s = a[:, :, 0, :, None] * v  # (B, heads, N, d)
        torch.testing.assert_close(s.sum(dim=2).reshape(len(x), -1), z[:, 0].detach(), rtol=1e-5, atol=1e-6)


def test_daam_matches_per_image_reference():
    adapter, x = tiny_vit(), images(3)
    labels = torch.tensor([0, 2, 1])
    flow = DAAM(adapter).flow(x, ClassTarget(labels))
    for i in range(3):
        ref = reference_daam(adapter, x[i], lambda logits, f, c=int(labels[i]): logits[c])
        torch.testing.assert_close(flow.accumulated[i], ref, rtol=1e-4, atol=1e-5)
    maps = DAAM(adapter)(x, ClassTarget(labels))
    torch.testing.assert_close(maps, up(flow.accumulated[:, -1]), rtol=1e-5, atol=1e-6)
    # per-block variant = the map accumulated up to that block; block 1's map is min–max normalised
    m1 = build_explainer("daam_b1", adapter)(x, ClassTarget(labels))
    torch.testing.assert_close(m1, up(flow.accumulated[:, 0]))
    assert float(flow.block_maps.amax(dim=(2, 3)).min()) == pytest.approx(1.0, abs=1e-6)


def test_daam_without_block_norm_and_similarity_target():
    adapter, x = tiny_vit(), images(2)
    ref_emb = torch.randn(2, CLASSES, generator=torch.Generator().manual_seed(5))
    target = SimilarityTarget(ref_emb, "cosine")
    flow = DAAM(adapter, block_norm=False).flow(x, target)
    for i in range(2):
        ref = reference_daam(
            adapter, x[i], lambda logits, f, r=ref_emb[i]: F.cosine_similarity(logits, r, dim=0), norm=False
        )
        torch.testing.assert_close(flow.accumulated[i], ref, rtol=1e-4, atol=1e-5)


def test_daam_batched_equals_single_images():
    adapter, x = tiny_vit(), images(4)
    labels = torch.tensor([1, 0, 2, 2])
    batched = DAAM(adapter)(x, ClassTarget(labels))
    singles = torch.cat([DAAM(adapter)(x[i : i + 1], ClassTarget(labels[i : i + 1])) for i in range(4)])
    torch.testing.assert_close(batched, singles, rtol=1e-5, atol=1e-6)


def knn_weights_by_hand(f, bank_feats, bank_labels, k, temperature):
    """One image: DINO's weighted vote, then the predicted-class neighbours' mean contribution."""
    f_hat = f / f.norm()
    bank = bank_feats / bank_feats.norm(dim=1, keepdim=True)
    sims = [(float(f_hat @ bank[n]), n) for n in range(len(bank))]
    top = sorted(sims, key=lambda s: -s[0])[:k]
    votes: dict[int, float] = {}
    for s, n in top:
        votes[int(bank_labels[n])] = votes.get(int(bank_labels[n]), 0.0) + math.exp(s / temperature)
    best = max(votes.values())
    predicted = min(c for c, v in votes.items() if v == best)
    chosen = [n for s, n in top if int(bank_labels[n]) == predicted]
    product = f_hat * bank[chosen].mean(dim=0)
    product = product / product.sum().abs()
    return (product - product.min()) / (product.max() - product.min()), predicted


def test_daam_ssl_matches_per_image_reference():
    adapter, x = tiny_vit(), images(3)
    gen = torch.Generator().manual_seed(7)
    bank_x, bank_y = torch.rand(12, 3, SIZE, SIZE, generator=gen), torch.randint(0, 3, (12,), generator=gen)
    bank = MemoryBank.build(adapter, bank_x, bank_y)
    raw_bank = torch.stack([manual_forward(adapter, im)[1] for im in bank_x]).detach()
    explainer = DAAMSelfSupervised(adapter, memory_bank=bank, k=5, temperature=0.1)
    flow = explainer.flow(x, None)
    for i in range(3):
        feature = manual_forward(adapter, x[i])[1].detach()
        w, predicted = knn_weights_by_hand(feature, raw_bank, bank_y, k=5, temperature=0.1)
        assert int(explainer.predicted[i]) == predicted
        ref = reference_daam(adapter, x[i], lambda logits, f, w=w: (w * f).sum(), relu_weights=False)
        torch.testing.assert_close(flow.accumulated[i], ref, rtol=1e-4, atol=1e-5)


def test_embedding_is_the_pre_logits():
    adapter, x = tiny_vit(), images(2)
    ref = torch.stack([manual_forward(adapter, im)[1] for im in x])
    torch.testing.assert_close(embedding(adapter, x), ref, rtol=1e-4, atol=1e-5)


def test_gradcam_baseline_on_vit_matches_hand_gradient():
    """The ViT baseline is papers/gradcam's Grad-CAM at the adapter's layer (last block's norm1)."""
    from papers.gradcam.method import GradCAM

    adapter, x = tiny_vit(), images(2)
    labels = torch.tensor([2, 0])
    maps = GradCAM(adapter)(x, ClassTarget(labels))
    for i in range(2):
        logits, _, blocks = manual_forward(adapter, x[i])
        # the adapter's ViT layer is the last block's norm1 (its output, as the capture records it)
        (g,) = torch.autograd.grad(logits[int(labels[i])], [blocks[-1]["norm1_out"]])
        a = blocks[-1]["norm1_value"][1:]  # patch tokens (N, C)
        cam = (a @ g[1:].mean(dim=0)).clamp_min(0).reshape(1, SIZE // PATCH, SIZE // PATCH)
        torch.testing.assert_close(maps[i : i + 1], up(cam), rtol=1e-4, atol=1e-5)


def test_attention_rollout_matches_hand_product():
    adapter, x = tiny_vit(), images(2)
    maps = AttentionRollout(adapter)(x)
    for i in range(2):
        _, _, blocks = manual_forward(adapter, x[i])
        n = blocks[0]["a"].shape[-1]
        r = torch.eye(n)
        for b in blocks:
            a = 0.5 * b["a"].mean(0) + 0.5 * torch.eye(n)
            r = (a / a.sum(1, keepdim=True)) @ r
        side = int(math.isqrt(n - 1))
        torch.testing.assert_close(maps[i : i + 1], up(r[0, 1:].reshape(1, side, side)), rtol=1e-5, atol=1e-6)


def test_rollout_properties():
    """Rows of the rollout sum to one; with every token attending only to itself it is the identity."""
    gen = torch.Generator().manual_seed(3)
    att = [torch.softmax(torch.randn(2, 4, 5, 5, generator=gen), -1) for _ in range(3)]
    full = attention_rollout(att, num_prefix_tokens=1)
    att_eye = [torch.eye(5).expand(2, 4, 5, 5) for _ in range(3)]
    assert torch.equal(attention_rollout(att_eye, 1), torch.zeros(2, 4))
    # the class row over all tokens sums to 1, so the patch part is 1 minus the class-token entry
    row0 = attention_rollout(att, num_prefix_tokens=1).sum(1)
    assert bool((row0 < 1).all()) and full.shape == (2, 4)


def test_display_mapping_is_the_authors_sigmoid():
    acc = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])  # one image, L=2, two positions
    y = torch.sigmoid(5 * acc / 4.0) - 0.5
    want = (y - y.amin(-1, keepdim=True)) / (y.amax(-1, keepdim=True) - y.amin(-1, keepdim=True))
    torch.testing.assert_close(display_mapping(acc), want)


def test_clear_errors():
    from shared.models.adapter import ModelAdapter as MA

    cnn = MA(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()),
             kind="cnn", task="classifier", target_layer="0")
    with pytest.raises(ValueError, match="vit"):
        DAAM(cnn)
    with pytest.raises(ValueError, match="memory bank"):
        DAAMSelfSupervised(tiny_vit())
    with pytest.raises(ValueError, match="block must be in 1..3"):
        DAAM(tiny_vit(), block=7)
    no_cls = tiny_vit(class_token=False)
    with pytest.raises(ValueError, match="class token"):
        AttentionRollout(no_cls)
    with pytest.raises(ValueError, match="needs a target"):
        DAAM(tiny_vit())(images(1))


# ---------------------------------------------------------------- the steps (papers/daam/figures.py)


@pytest.mark.parametrize("step", ["flow", "flow_ssl"])
def test_flow_steps_write_their_figures(tmp_path, monkeypatch, step):
    from papers.daam.figures import STEPS
    from shared.figure_step import StepContext
    from shared.pipeline.io import EvalBatch

    adapter, x = tiny_vit(), images(3)
    gen = torch.Generator().manual_seed(7)
    bank_x, bank_y = torch.rand(12, 3, SIZE, SIZE, generator=gen), torch.randint(0, 3, (12,), generator=gen)
    seen = []

    def bank_from(ad, dataset):  # the k-NN bank of the model's dataset's training split
        seen.append(dataset)
        return MemoryBank.build(ad, bank_x, bank_y)

    monkeypatch.setattr(DAAMSelfSupervised, "_bank_from_dataset", staticmethod(bank_from))
    ctx = StepContext(
        step=step, models=["data/models/vit.safetensors"], datasets=["data/datasets/toy"], methods=[],
        maps_dir=tmp_path / "maps", outputs={"figure": str(tmp_path / f"{step}.png")}, config={"eval": {"n_images": 3}},
        device=torch.device("cpu"),
    )
    ctx._batches[0] = EvalBatch(adapter, None, x, ClassTarget(torch.tensor([0, 2, 1])), None, None, "toy")
    STEPS[step](ctx)
    assert (tmp_path / f"{step}.png").stat().st_size > 0
    assert seen == (["data/datasets/toy"] if step == "flow_ssl" else [])
