"""Concept explanations by factorising one layer's activations across many images.

DFF (Collins et al., ECCV 2018), ICE/NCAV (Zhang et al., AAAI 2021) and TraNCE factor the
activations ``A`` (N, C, h, w) of a layer over a set of images: every image position is a row of
the matrix ``V`` (N·h·w, C), and ``V ≈ W·H + offset`` with

* ``H`` (k, C): k concept vectors (NMF: non-negative "NCAVs"; PCA: orthonormal components),
* ``W`` (N·h·w, k): how much of each concept each position holds, laid out as (N, k, h, w),
* ``offset`` (C,): what is added back after ``W·H`` (0 for NMF on post-ReLU activations, the
  per-channel shift for signed activations made non-negative, the mean for PCA).

``W`` of one concept over one image is that concept's heat-map (``concept_maps``). Replacing the
layer's output by ``W·H + offset`` and running the rest of the network unchanged gives the
*approximated model* whose agreement with the original is ICE's fidelity
(``approximated_logits``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from shared.explain.capture import capture
from shared.explain.upsample import upsample
from shared.models.adapter import ModelAdapter

NONNEGATIVE_MODES = ("refuse", "relu", "shift")


@dataclass
class Concepts:
    """A factorisation ``A ≈ W·H + offset`` of activations (N, C, h, w), see the module docstring.

    ``W`` (N, k, h, w) concept activations per image position, ``H`` (k, C) concept vectors,
    ``offset`` (C,) added back after ``W·H``; ``method`` "nmf", "pca" or "kmeans" (how new
    activations are encoded: non-negative least squares, projection on the orthonormal components,
    or the nearest centre).
    """

    W: Tensor
    H: Tensor
    offset: Tensor
    method: str = "nmf"
    info: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.H.shape[0])


def position_rows(acts: Tensor) -> Tensor:
    """(N, C, h, w) -> (N·h·w, C): one row per image position, as NMF sees them."""
    n, c, h, w = acts.shape
    return acts.permute(0, 2, 3, 1).reshape(n * h * w, c)


def position_grid(rows: Tensor, n: int, h: int, w: int) -> Tensor:
    """(N·h·w, K) -> (N, K, h, w), the inverse of ``position_rows``."""
    return rows.reshape(n, h, w, -1).permute(0, 3, 1, 2).contiguous()


def layer_activations(adapter: ModelAdapter, images: Tensor, layer: str, batch_size: int = 64) -> Tensor:
    """The activations (N, C, h, w) of ``layer`` for ``images`` (N, 3, H, W) in [0, 1].

    ViT tokens are laid out on the patch grid by ``adapter.to_grid`` (prefix tokens dropped).
    Batched, without gradients.
    """
    module = adapter.module(layer)
    out = []
    with torch.no_grad(), capture({layer: module}, track_gradients=False) as rec:
        for i in range(0, images.shape[0], batch_size):
            adapter(images[i : i + batch_size])
            out.append(adapter.to_grid(rec[layer]).float())
    return torch.cat(out)


def nonnegative_shift(acts: Tensor, mode: str = "refuse") -> Tensor:
    """The per-channel shift (C,) that ``nmf_concepts`` subtracts so that NMF sees non-negative input.

    ``refuse``: zeros, and a ValueError if ``acts`` has a negative value (the papers factor post-ReLU
    CNN activations; signed ones, such as ViT tokens after a LayerNorm, need a choice);
    ``shift``: minus the per-channel minimum where it is negative, so ``acts - shift >= 0`` and the
    reconstruction ``W·H + shift`` can still represent the signed activations (invertible);
    ``relu``: zeros (the negative part is clamped away by ``nmf_concepts``: lossy).
    """
    if mode not in NONNEGATIVE_MODES:
        raise ValueError(f"nonnegative must be one of {NONNEGATIVE_MODES}, got {mode!r}")
    c = acts.shape[1]
    mins = acts.transpose(0, 1).reshape(c, -1).amin(dim=1)
    if mode == "refuse":
        if bool((mins < 0).any()):
            raise ValueError(
                f"NMF needs non-negative activations; this layer has values down to {float(mins.min()):.4g} "
                f"(signed, e.g. ViT tokens after a LayerNorm or a layer before its ReLU). Pick a post-ReLU "
                f"layer, or pass nonnegative='shift' (per-channel shift, added back on reconstruction) or "
                f"'relu' (clamp the negative part away)"
            )
        return torch.zeros(c, dtype=acts.dtype, device=acts.device)
    if mode == "shift":
        return mins.clamp(max=0)
    return torch.zeros(c, dtype=acts.dtype, device=acts.device)


def _np_dtype(t: Tensor) -> torch.dtype:
    """float64 for float64 input (tests with exact factorisations), else float32."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def nndsvda_init(x: Tensor, k: int, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """NNDSVDa initial factors (W (n, k), H (k, C)) of a non-negative ``x`` (n, C) (Boutsidis &
    Gallopoulos, Pattern Recognition 2008): the first singular pair's absolute values, then for each
    further pair the larger (by norm product) of its positive and its negative parts, scaled by
    sqrt(σ_j · that product); entries below ``eps`` set to the mean of ``x`` (the 'a' variant).

    scikit-learn's ``init='nndsvda'`` is this on a *randomized* SVD; we take the exact one
    (torch.linalg.svd): the same initialisation without the randomized range finder, which cost more
    than the factorisation's first hundred iterations here. The result does not depend on the signs
    the SVD returns (flipping a pair swaps its positive and negative parts)."""
    u, sv, vh = torch.linalg.svd(x, full_matrices=False)
    u, sv, v = u[:, :k], sv[:k], vh[:k].T  # (n, k), (k,), (C, k)
    up, un, vp, vn = u.clamp_min(0), (-u).clamp_min(0), v.clamp_min(0), (-v).clamp_min(0)
    nup, nun, nvp, nvn = up.norm(dim=0), un.norm(dim=0), vp.norm(dim=0), vn.norm(dim=0)
    pos = nup * nvp >= nun * nvn  # which part each pair keeps (ties: the positive part)
    scale = torch.sqrt(sv * torch.where(pos, nup * nvp, nun * nvn))
    W = torch.where(pos, up / nup.clamp_min(1e-30), un / nun.clamp_min(1e-30)) * scale
    H = (torch.where(pos, vp / nvp.clamp_min(1e-30), vn / nvn.clamp_min(1e-30)) * scale).T
    # the first pair: both vectors have one sign (Perron-Frobenius), |u1|, |v1| whatever the SVD's sign
    W[:, 0], H[0] = torch.sqrt(sv[0]) * u[:, 0].abs(), torch.sqrt(sv[0]) * v[:, 0].abs()
    avg = x.mean()
    W = torch.where(W < eps, avg, W)
    H = torch.where(H < eps, avg, H)
    return W, H


def nmf_concepts(
    acts: Tensor, k: int, seed: int = 0, max_iter: int = 200, tol: float = 1e-4, nonnegative: str = "refuse"
) -> Concepts:
    """Factor ``acts`` (N, C, h, w) into k NMF concepts with scikit-learn's NMF.

    Coordinate descent (scikit-learn's default solver), Frobenius loss, no regularisation, started
    from NNDSVDa (``nndsvda_init``: scikit-learn's default for k <= min(rows, C), on an exact SVD;
    seeded 'random' above), ``random_state=seed``: deterministic. ``nonnegative`` says what to do with negative values
    (see ``nonnegative_shift``); the default refuses them.
    """
    from sklearn.decomposition import NMF

    if acts.dim() != 4:
        raise ValueError(f"acts must be (N, C, h, w), got {tuple(acts.shape)}")
    n, c, h, w = acts.shape
    if not 1 <= k:
        raise ValueError(f"k must be >= 1, got {k}")
    shift = nonnegative_shift(acts, nonnegative)
    rows = (position_rows(acts) - shift).clamp_min(0)  # clamp: 'relu' mode, and float noise of 'shift'
    # in the activations' precision (float32 for a model's; scikit-learn keeps the dtype): float64
    # would double the cost of the products that dominate coordinate descent for no visible gain
    rows = rows.detach().cpu().to(_np_dtype(acts))
    x = rows.numpy()
    if k <= min(x.shape):  # scikit-learn's default init=None resolves to NNDSVDa here
        W0, H0 = (t.numpy() for t in nndsvda_init(rows, k))
        init, name = "custom", "nndsvda (exact SVD)"
    else:  # ... and to 'random' (seeded) above; we name both so that no release can move them
        W0 = H0 = None
        init = name = "random"
    model = NMF(n_components=k, init=init, solver="cd", beta_loss="frobenius",
                max_iter=max_iter, tol=tol, random_state=seed)
    W = model.fit_transform(x, W=W0, H=H0)
    H = model.components_
    err = float(np.linalg.norm(x - W @ H) / max(float(np.linalg.norm(x)), 1e-30))
    dev, dt = acts.device, acts.dtype
    return Concepts(
        W=position_grid(torch.from_numpy(W).to(dev, dt), n, h, w), H=torch.from_numpy(H).to(dev, dt), offset=shift,
        method="nmf", info={"n_iter": int(model.n_iter_), "relative_error": err, "init": name},
    )


def pca_concepts(acts: Tensor, k: int) -> Concepts:
    """The k principal components of the positions' activations as concepts (ICE's PCA reducer).

    ``H`` = the top-k right singular vectors of the centred rows (orthonormal), ``W`` = the rows'
    coordinates on them, ``offset`` = the mean row. The sign of each component is fixed so that
    its largest-magnitude entry is positive (as scikit-learn's ``svd_flip`` with ``u_based_decision=False``),
    so the result is deterministic.
    """
    n, c, h, w = acts.shape
    rows = position_rows(acts).double()
    mean = rows.mean(dim=0)
    _, _, vh = torch.linalg.svd(rows - mean, full_matrices=False)
    H = vh[:k]
    idx = H.abs().argmax(dim=1)
    H = H * torch.sign(H[torch.arange(H.shape[0]), idx])[:, None]
    W = (rows - mean) @ H.T
    return Concepts(W=position_grid(W.to(acts.dtype), n, h, w), H=H.to(acts.dtype), offset=mean.to(acts.dtype), method="pca")


def kmeans_concepts(acts: Tensor, k: int, seed: int = 0) -> Concepts:
    """k-means clusters of the positions' activations as concepts (ACE's clustering; ICE's
    ``ChannelClusterReducer``): ``H`` = the cluster centres, ``W`` = each position's one-hot cluster,
    so ``W·H`` replaces each position by its centre. scikit-learn's KMeans (k-means++, its default
    ``n_init``) with ``random_state=seed``: deterministic."""
    from sklearn.cluster import KMeans

    n, c, h, w = acts.shape
    x = position_rows(acts).detach().cpu().double().numpy()
    km = KMeans(n_clusters=k, random_state=seed).fit(x)
    H = torch.from_numpy(km.cluster_centers_).to(acts.device, acts.dtype)
    W = torch.nn.functional.one_hot(torch.from_numpy(km.labels_).long(), k).to(acts.device, acts.dtype)
    return Concepts(W=position_grid(W, n, h, w), H=H, offset=torch.zeros(c, dtype=acts.dtype, device=acts.device),
                    method="kmeans", info={"inertia": float(km.inertia_)})


def encode(acts: Tensor, concepts: Concepts, max_iter: int = 200, tol: float = 1e-4) -> Tensor:
    """The concept activations W (N, k, h, w) of new activations on fixed concepts ``concepts.H``.

    NMF: non-negative least squares per position with H fixed (scikit-learn's
    ``non_negative_factorization(update_H=False)``, as ``NMF.transform``); PCA: the projection
    on the orthonormal components; k-means: the one-hot nearest centre (``KMeans.predict``). The
    offset is taken off first (NMF: negative values left after the shift are clamped to 0, as at
    fitting time).
    """
    n, c, h, w = acts.shape
    rows = position_rows(acts) - concepts.offset
    if concepts.method == "pca":
        return position_grid(rows @ concepts.H.T, n, h, w)
    if concepts.method == "kmeans":
        nearest = torch.cdist(rows.double(), concepts.H.double()).argmin(dim=1)
        return position_grid(torch.nn.functional.one_hot(nearest, concepts.k).to(acts.dtype), n, h, w)
    from sklearn.decomposition import non_negative_factorization

    x = rows.clamp_min(0).detach().cpu().to(_np_dtype(acts)).numpy()
    H = concepts.H.detach().cpu().to(_np_dtype(acts)).numpy()
    W, _, _ = non_negative_factorization(x, H=H, n_components=H.shape[0], init="custom", update_H=False,
                                         solver="cd", max_iter=max_iter, tol=tol)
    return position_grid(torch.from_numpy(W).to(acts.device, acts.dtype), n, h, w)


def concept_layer(adapter: ModelAdapter, images: Tensor, block: int | None = None) -> str:
    """The layer whose activations are factored: block ``block`` of ``shared.explain.layers.block_layers``
    (1-based; negative counts from the top, -1 the last), or, with None, the topmost block whose
    output is non-negative on ``images`` (a post-ReLU layer, as DFF's conv5_4 ReLU and ICE's ResNet
    ``layer4``; an embedding network's signed 1×1 ``embed`` head is skipped). A ValueError if there
    is none (a ViT: LayerNorm outputs are signed)."""
    from shared.explain.layers import block_layers

    layers = block_layers(adapter)
    if block is not None:
        b = block if block > 0 else len(layers) + 1 + block
        if not 1 <= b <= len(layers):
            raise ValueError(f"model {adapter.name!r} has {len(layers)} blocks ({', '.join(layers)}); block {block} does not exist")
        return layers[b - 1]
    modules = {name: adapter.module(name) for name in layers}
    with torch.no_grad(), capture(modules, track_gradients=False) as rec:
        adapter(images)
    for name in reversed(layers):
        if float(rec[name].min()) >= 0:
            return name
    raise ValueError(f"model {adapter.name!r} has no block with non-negative output ({', '.join(layers)}); "
                     f"choose a block and nonnegative='shift' or 'relu'")


def reconstruct(concepts: Concepts, W: Tensor | None = None) -> Tensor:
    """``W·H + offset`` as activations (N, C, h, w); ``W`` defaults to the fitted ``concepts.W``."""
    W = concepts.W if W is None else W
    n, _, h, w = W.shape
    return position_grid(position_rows(W) @ concepts.H + concepts.offset, n, h, w)


def concept_maps(concepts: Concepts, size: tuple[int, int], W: Tensor | None = None) -> Tensor:
    """Each concept's heat-map per image, (N, k, H, W) at ``size``, bilinearly upsampled
    (``align_corners=False``, as ``shared.explain.upsample``). Unnormalised: DFF's figure divides each
    by its maximum for display; relevance mass is scale-free."""
    W = concepts.W if W is None else W
    n, k, h, w = W.shape
    return upsample(W.reshape(n * k, h, w), size).reshape(n, k, *size)


def replace_output(adapter: ModelAdapter, output: Tensor, grid: Tensor) -> Tensor:
    """Put a (B, C, h, w) grid back in the layer's own layout (ViT: prefix tokens kept as they are)."""
    if output.dim() == 4:
        return grid.to(output.dtype)
    p = adapter.num_prefix_tokens
    tokens = grid.flatten(2).transpose(1, 2).to(output.dtype)
    return torch.cat([output[:, :p], tokens], dim=1)


def approximated_logits(
    adapter: ModelAdapter, images: Tensor, layer: str, concepts: Concepts | Tensor | Sequence[Concepts], batch_size: int = 64,
    max_iter: int = 200, tol: float = 1e-4,
) -> Tensor:
    """The outputs (N, K) of the model with ``layer``'s output replaced by its concept reconstruction.

    For each batch the layer's actual activations A are encoded on the fixed concepts (``encode``:
    W = argmin_{W>=0} ||A - offset - W·H||, the PCA projection, or the nearest k-means centre) and
    ``W·H + offset`` is passed on; the rest of the network is unchanged. ``concepts`` may be a bare
    ``H`` (k, C) tensor (NMF concepts without offset), or a sequence of R concept sets: then the
    result is (R, N, K), computed with one pass through the layers below ``layer`` (the hook hands
    the R reconstructions on as one batch of R·B; in eval mode every image is independent). The
    forward hook is removed afterwards, also on an error.
    """
    if isinstance(concepts, Tensor):
        concepts = Concepts(W=torch.empty(0, concepts.shape[0], 0, 0), H=concepts,
                            offset=torch.zeros(concepts.shape[1], dtype=concepts.dtype, device=concepts.device))
    many = not isinstance(concepts, Concepts)
    sets = list(concepts) if many else [concepts]
    module = adapter.module(layer)

    def hook(mod, inputs, output):
        grid = adapter.to_grid(output).float()
        recs = [replace_output(adapter, output, reconstruct(c, encode(grid, c, max_iter=max_iter, tol=tol))) for c in sets]
        return torch.cat(recs)

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            out = []
            for i in range(0, images.shape[0], batch_size):
                chunk = images[i : i + batch_size]
                out.append(adapter(chunk).view(len(sets), chunk.shape[0], -1))
    finally:
        handle.remove()
    result = torch.cat(out, dim=1)
    return result if many else result[0]
