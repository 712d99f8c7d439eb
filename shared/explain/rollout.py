"""Attention inside timm vision transformers, and attention rollout (Abnar & Zuidema 2020).

timm's ``Attention`` computes softmax(q kᵀ / √d) v with fused scaled-dot-product attention, so
the attention probabilities never exist as a tensor. :func:`capture_attention` records, for
every block, the probabilities A (B, heads, N, N) and the values V (B, heads, N, d), recomputed
from the block's own ``qkv`` output (its q/k norms and scale included) during the one forward
pass the model runs anyway; with ``track_gradients`` it also makes the attention output
z = A V (the input of ``attn.norm``/``attn.proj``) differentiable, so that one backward pass
gives d score / d z for all blocks at once.

:func:`attention_rollout` is the rollout of Abnar & Zuidema, "Quantifying Attention Flow in
Transformers" (ACL 2020): mean over heads, Â_l = ½ Ā_l + ½ I, rows renormalised,
R = Â_L ⋯ Â_1; the map is the class-token row of R over the patch tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from shared.models.adapter import ModelAdapter


@dataclass
class AttentionRecord:
    """What :func:`capture_attention` recorded, one entry per block, in forward order."""

    attentions: list[torch.Tensor] = field(default_factory=list)  # (B, heads, N, N), no graph
    values: list[torch.Tensor] = field(default_factory=list)  # (B, heads, N, d), no graph
    outputs: list[torch.Tensor] = field(default_factory=list)  # z = A V as (B, N, heads·d), differentiable


def vit_blocks(adapter: ModelAdapter) -> list[nn.Module]:
    """The transformer blocks of a ViT adapter, checking they have a timm ``Attention``."""
    if adapter.kind != "vit":
        raise ValueError(f"attention is defined for ViT models only; {adapter.name!r} is a {adapter.kind} model")
    blocks = getattr(adapter.model, "blocks", None)
    if blocks is None:
        raise TypeError(f"model {adapter.name!r} has no `blocks`; expected a timm VisionTransformer")
    for i, block in enumerate(blocks):
        attn = getattr(block, "attn", None)
        if attn is None or not all(hasattr(attn, a) for a in ("qkv", "num_heads", "head_dim", "scale", "proj")):
            raise TypeError(
                f"block {i} of {adapter.name!r} has no timm Attention (qkv/num_heads/head_dim/scale/proj); "
                f"attention capture supports timm VisionTransformer blocks only"
            )
        if getattr(attn, "gate", None) is not None:
            raise TypeError(f"block {i} uses a gated attention output; A·V is then not the projection's input")
    return list(blocks)


@contextmanager
def capture_attention(
    adapter: ModelAdapter, values: bool = False, track_gradients: bool = False
) -> Iterator[AttentionRecord]:
    """Record every block's attention probabilities (and values / differentiable outputs).

    Hooks are removed when the block ends, also on error. Attention masks are not supported
    (a plain image ViT has none).
    """
    record = AttentionRecord()
    handles = []

    def qkv_hook(attn: nn.Module):
        def hook(module: nn.Module, inputs: tuple, qkv: torch.Tensor) -> None:
            with torch.no_grad():
                b, n, _ = qkv.shape
                q, k, v = qkv.detach().reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
                q, k = attn.q_norm(q), attn.k_norm(k)
                record.attentions.append(((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1))
                if values:
                    record.values.append(v)

        return hook

    def output_hook(module: nn.Module, inputs: tuple):
        z = inputs[0]
        if not z.requires_grad:
            # a fresh leaf: the backward pass then stops at the lowest block's attention output
            z = z.detach().requires_grad_(True)
        record.outputs.append(z)
        return (z.clone(),)

    try:
        for block in vit_blocks(adapter):
            handles.append(block.attn.qkv.register_forward_hook(qkv_hook(block.attn)))
            if track_gradients:
                # attn.norm (Identity unless scale_norm) receives exactly z = (A V) in (B, N, heads·d)
                handles.append(block.attn.norm.register_forward_pre_hook(output_hook))
        yield record
    finally:
        for h in handles:
            h.remove()


def attention_rollout(
    attentions: list[torch.Tensor], num_prefix_tokens: int = 1, residual: float = 0.5
) -> torch.Tensor:
    """Rollout of per-block attentions (B, heads, N, N) → (B, N − P) class-token relevance.

    Â_l = rownorm((1 − residual) · mean_h A_l + residual · I); R = Â_L ⋯ Â_1; R[:, 0, P:].
    """
    if not attentions:
        raise ValueError("attention rollout needs the attention of at least one block")
    if not 0.0 <= residual <= 1.0:
        raise ValueError(f"residual must be in [0, 1], got {residual}")
    if num_prefix_tokens < 1:
        raise ValueError("attention rollout reads the class token's row; the model has no prefix (class) token")
    rollout = None
    for a in attentions:
        a_bar = a.mean(dim=1)
        eye = torch.eye(a_bar.shape[-1], dtype=a_bar.dtype, device=a_bar.device)
        a_hat = (1.0 - residual) * a_bar + residual * eye
        a_hat = a_hat / a_hat.sum(dim=-1, keepdim=True)
        rollout = a_hat if rollout is None else a_hat @ rollout
    return rollout[:, 0, num_prefix_tokens:]
