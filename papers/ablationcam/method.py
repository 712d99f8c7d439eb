"""Ablation-CAM (Desai & Ramaswamy, WACV 2020).

Notation of the paper (Sec. 3): A_k the k-th feature map of the explained layer, y_c the class
score (before the softmax; here any target's raw score: a logit or a similarity), y_c^k the
same score with A_k set to 0 everywhere.

    slope_k = (y_c − y_c^k) / y_c                              (the weight of channel k)
    L_Ablation-CAM = ReLU(Σ_k slope_k A_k)

**Fast and exact.** Each y_c^k needs a forward pass from the explained layer up; nothing below
it changes. So we run the network once (the prefix, on the B images, capturing A), then only
the part above the layer on B·C ablated copies of A: a forward hook on the layer's module
*replaces* its output by a (rows, C, h, w) tensor of ablated copies, so everything after the
hook runs on those rows while the prefix runs on (at most) B images per chunk of ``max_batch``
rows. Valid when the layer's output is the only path from the input to the head (a block
output, not a layer inside a residual branch, whose skip connection would still carry the
prefix's B rows). Every call checks it: B un-ablated copies ride along in the first chunk and
must reproduce the plain forward's scores, and a shape error (a skip path with the wrong
number of rows) is caught. If the check fails, ``prefix_once="auto"`` (the default) falls back
to the plain way (each ablated copy a full forward, the image repeated, the hook zeroing one
channel of the layer's own output), ``prefix_once=True`` raises, ``False`` always takes the
plain way. With one image (B = 1) a skip path broadcasts over the copies, which is exact (every
copy has the same skip input), so the check passes.

**Where y_c ≤ 0.** The paper divides by y_c, the score of a class the model predicts
(positive in practice). We explain the labelled class, and a similarity may be negative
(−‖f − r‖² always is): dividing by a negative y_c flips the sign of every weight and the map
would show the channels that *lower* the score. ``denominator="abs"`` (default) divides by
|y_c|, the same as the paper's wherever y_c > 0; ``denominator="signed"`` is the paper's formula
as written (and pytorch-grad-cam's, ablation_cam.py). The division is one positive number per
image either way, which no normalised map or metric sees; only its sign matters.

For a ViT the channel k of the patch-token grid is set to 0 (the prefix tokens keep theirs:
A_k is the grid ``adapter.to_grid`` lays out); pytorch-grad-cam's ``AblationLayerVit`` zeroes
the class token's channel too.
"""

from __future__ import annotations

from typing import Literal

import torch

from shared.explain import Explainer, Target, frozen, layer_signals, register_method
from shared.explain.perturb import perturbed_scores
from shared.explain.upsample import upsample
from shared.models.adapter import ModelAdapter

DENOMINATORS = ("abs", "signed")


class PrefixNotShared(RuntimeError):
    """The explained layer's output is not the only path to the head: the fast path is invalid."""


@register_method("ablationcam")
class AblationCAM(Explainer):
    """Ablation-CAM: each channel weighted by the relative drop of the score when it is set to 0."""

    def __init__(
        self,
        adapter: ModelAdapter,
        layer: str | None = None,
        max_batch: int = 1024,
        prefix_once: bool | Literal["auto"] = "auto",
        denominator: Literal["abs", "signed"] = "abs",
    ) -> None:
        """``max_batch``: ablated copies per forward (memory, not results; with the shortcut each
        chunk reruns the network below the layer on its images, so fewer, larger chunks are
        faster; a row is one copy of the layer's output, or of the image on the full path);
        ``prefix_once`` and
        ``denominator``: see the module docstring."""
        super().__init__(adapter, layer)
        if int(max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if prefix_once not in (True, False, "auto"):
            raise ValueError(f"prefix_once must be True, False or 'auto', got {prefix_once!r}")
        if denominator not in DENOMINATORS:
            raise ValueError(f"denominator must be one of {DENOMINATORS}, got {denominator!r}")
        self.max_batch = int(max_batch)
        self.prefix_once = prefix_once
        self.denominator = denominator
        self.module = adapter.module(self.layer)
        #: which path the last call took: "prefix_once" or "full" (for tests and benchmarks)
        self.last_path: str | None = None

    # -- the layer's output as (rows, ...) with one channel of the grid set to 0 ---------------
    def _ablate(self, acts: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """Copies of ``acts`` (n, ...) as the layer outputs them, channel ``channels[i]`` of row i
        set to 0 on the grid (``channels[i] < 0``: row i un-ablated)."""
        out = acts.clone()
        rows = torch.nonzero(channels >= 0).reshape(-1)
        if rows.numel():
            k = channels[rows]
            if out.dim() == 4:  # CNN (n, C, h, w)
                out[rows, k] = 0
            else:  # ViT tokens (n, P + N, C): the patch tokens of channel k
                p = self.adapter.num_prefix_tokens
                out[rows, p:, k] = 0
        return out

    def _rows(self, b: int, c: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(owners, channels) of the B un-ablated rows then the B·C ablated rows (b-major)."""
        owners = torch.cat([torch.arange(b, device=device), torch.arange(b, device=device).repeat_interleave(c)])
        channels = torch.cat([torch.full((b,), -1, device=device, dtype=torch.long), torch.arange(c, device=device).repeat(b)])
        return owners, channels

    def _scores_prefix_once(self, images, acts, target, owners, channels) -> torch.Tensor:
        payload: dict[str, torch.Tensor] = {}

        def make_rows(rows: torch.Tensor) -> torch.Tensor:
            who = owners[rows]
            payload["out"] = self._ablate(acts[who], channels[rows])
            first = who[0]
            if bool((who == first).all()):
                return images[first : first + 1]  # one image: its skip paths broadcast exactly
            return images[torch.unique(who)]  # several: a skip path fails the shape check below

        def hook(module, inputs, output):
            return payload["out"]

        # our own chunk loop: perturbed_scores feeds the model one image per row, here the model
        # sees at most B images per chunk while the hook hands the head ``max_batch`` rows
        total = owners.shape[0]
        out = torch.empty(total, dtype=torch.float64, device=owners.device)
        handle = self.module.register_forward_hook(hook)
        try:
            with torch.no_grad():
                for start in range(0, total, self.max_batch):
                    rows = torch.arange(start, min(start + self.max_batch, total), device=owners.device)
                    output = self.adapter(make_rows(rows))
                    if output.shape[0] != rows.numel():
                        raise PrefixNotShared(f"{output.shape[0]} outputs for {rows.numel()} ablated copies")
                    out[rows] = target(output, owners[rows]).to(torch.float64)
            return out
        except RuntimeError as error:  # rows of the prefix met rows of the copies (a skip path)
            raise PrefixNotShared(str(error)) from error
        finally:
            handle.remove()

    def _scores_full(self, images, target, owners, channels) -> torch.Tensor:
        payload: dict[str, torch.Tensor] = {}

        def make_rows(rows: torch.Tensor) -> torch.Tensor:
            payload["channels"] = channels[rows]
            return images[owners[rows]]

        def hook(module, inputs, output):
            return self._ablate(output, payload["channels"])

        handle = self.module.register_forward_hook(hook)
        try:
            return perturbed_scores(self.adapter, target, make_rows, owners, probability=False, max_batch=self.max_batch)
        finally:
            handle.remove()

    def scores(self, images: torch.Tensor, acts: torch.Tensor, y: torch.Tensor, target: Target) -> torch.Tensor:
        """(B, C) float64: y_c^k, the score with channel k of the layer set to 0."""
        b = images.shape[0]
        c = self.adapter.to_grid(acts[:1]).shape[1]
        owners, channels = self._rows(b, c, images.device)
        if self.prefix_once is not False:
            try:
                s = self._scores_prefix_once(images, acts, target, owners, channels)
                plain = y.to(s.dtype)
                if not torch.allclose(s[:b], plain, rtol=1e-4, atol=1e-5 * float(plain.abs().max().clamp_min(1.0))):
                    raise PrefixNotShared(
                        f"un-ablated copies scored {s[:b].tolist()} through the hook, the plain forward {plain.tolist()}"
                    )
                self.last_path = "prefix_once"
                return s[b:].reshape(b, c)
            except PrefixNotShared as error:
                if self.prefix_once is True:
                    raise ValueError(
                        f"layer {self.layer!r} of model {self.adapter.name!r} is not the only path from the input "
                        f"to the output (a layer inside a residual branch?), so the network above it cannot run "
                        f"on the ablated copies alone ({error}); explain a block output, or pass prefix_once=False"
                    ) from error
        self.last_path = "full"
        return self._scores_full(images, target, owners, channels)[b:].reshape(b, c)

    def weights(self, y: torch.Tensor, y_k: torch.Tensor) -> torch.Tensor:
        """slope_k = (y − y_k) / y (``denominator="signed"``) or / |y| (``"abs"``); (B, C)."""
        d = y.abs() if self.denominator == "abs" else y
        d = torch.where(d != 0, d, torch.ones_like(d))[:, None]
        return (y[:, None] - y_k) / d

    def explain(self, images: torch.Tensor, target: Target | None) -> torch.Tensor:
        if target is None:
            raise ValueError("Ablation-CAM needs a target (ClassTarget or SimilarityTarget)")
        signals = layer_signals(self.adapter, images, target, [self.layer], gradients=False)
        acts = signals.activations[0]
        y = signals.scores.to(torch.float64)
        with frozen(self.adapter):
            y_k = self.scores(images, acts, y, target)
        w = self.weights(y, y_k)
        A = self.adapter.to_grid(acts).float()
        cam = torch.einsum("bc,bchw->bhw", w.to(A.dtype), A).clamp_min(0)
        return upsample(cam, tuple(images.shape[-2:]))
