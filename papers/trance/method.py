"""TraNCE's pieces that are not a per-image map method: the VAE concept explainer, the Bessel
visualisation and the Coherence / Fidelity / Faith scores (README.md: every equation, derivation
and deviation).

Concepts are discovered on a layer's activations A (N, C, h, w) of a set of fitting images. Like
ICE / DFF's NMF, the explainer works on the C-vectors of every position (N·h·w rows); unlike NMF,
it is a variational auto-encoder with non-linear encoder and decoder:

    q_θ(z | a) = N(μ_θ(a), diag σ²_θ(a)),   z ∈ R^k  (k = number of concepts)
    â = g_φ(z)                                (Gaussian decoder of fixed variance)
    L(a) = ‖a − g_φ(z)‖² + β · KL(q_θ(z | a) ‖ N(0, I)),   z = μ + σ ⊙ ε,  ε ~ N(0, I)

The concept maps of an image are μ_θ at every position (k, h, w); the approximated layer is the
decoder of the posterior mean, g_φ(μ_θ(a)). Nothing here loops over images.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shared.concepts import position_grid, position_rows, replace_output

BESSEL_J1_FIRST_ZERO = 3.8317059702075125
"""j₁,₁: the first positive zero of J₁, i.e. the first minimum of J₀ (J₀′ = −J₁)."""


# --------------------------------------------------------------------------- the VAE explainer


class ConceptVAE(nn.Module):
    """A VAE on C-vectors: encoder C → hidden → (μ, log σ²) ∈ R^k × R^k, decoder k → hidden → C."""

    def __init__(self, channels: int, concepts: int, hidden: int) -> None:
        super().__init__()
        if min(channels, concepts, hidden) < 1:
            raise ValueError(f"channels, concepts and hidden must be >= 1, got {channels}, {concepts}, {hidden}")
        self.concepts = concepts
        self.encoder = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, 2 * concepts))
        self.decoder = nn.Sequential(nn.Linear(concepts, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²), each (M, k), of rows x (M, C)."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z = μ + σ ⊙ ε with σ = exp(½ log σ²)."""
    return mu + torch.exp(0.5 * logvar) * eps


def vae_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, reconstruction, KL), each the mean over the M rows of x (M, C):

    reconstruction = (1/M) Σ_m ‖x_m − x̂_m‖²,
    KL = (1/M) Σ_m ½ Σ_j (μ_mj² + σ_mj² − log σ_mj² − 1),
    total = reconstruction + β · KL  (the negative ELBO of a unit-variance Gaussian decoder, up to
    constants and a factor ½ on the reconstruction, which β absorbs).
    """
    recon = (x - x_hat).pow(2).sum(dim=-1).mean()
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(dim=-1).mean()
    return recon + beta * kl, recon, kl


@dataclass
class VAEConcepts:
    """A fitted explainer: the VAE, the scale of the layer (rows are divided by it) and whether the
    layer is non-negative (post-ReLU: reconstructions are clamped at 0, as the layer's own range)."""

    vae: ConceptVAE
    scale: float
    nonnegative: bool
    losses: list[float]

    @property
    def k(self) -> int:
        return self.vae.concepts


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Parameters initialised from ``seed`` without touching the caller's global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def fit_vae(
    acts: torch.Tensor, k: int, *, hidden: int, epochs: int, batch_size: int, lr: float, beta: float, seed: int
) -> VAEConcepts:
    """Train the explainer on the activations (N, C, h, w) of the fitting images.

    Deterministic: parameters from ``seed``, each epoch's order a permutation drawn from a generator
    seeded with ``seed``, the reparameterisation noise from a second one; Adam. Rows are the
    positions' C-vectors divided by the layer's root mean square (one number), so the loss's scale
    does not depend on the layer.
    """
    if acts.dim() != 4:
        raise ValueError(f"activations must be (N, C, h, w), got {tuple(acts.shape)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    device = acts.device
    rows = position_rows(acts.float())
    scale = float(rows.pow(2).mean().sqrt())
    if not math.isfinite(scale) or scale == 0.0:
        raise ValueError("the layer's activations are all zero (or not finite): nothing to explain")
    x_all = rows / scale
    with _seeded(seed):
        vae = ConceptVAE(rows.shape[1], k, hidden)
    vae = vae.to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    order_gen = torch.Generator().manual_seed(seed)
    noise_gen = torch.Generator(device=device).manual_seed(seed + 1)
    losses = []
    m = x_all.shape[0]
    vae.train()
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.randperm(m, generator=order_gen).to(device)
            total, seen = 0.0, 0
            for start in range(0, m, batch_size):
                x = x_all[perm[start : start + batch_size]]
                mu, logvar = vae.encode(x)
                eps = torch.randn(mu.shape, generator=noise_gen, device=device, dtype=mu.dtype)
                loss, _, _ = vae_loss(x, vae.decode(reparameterise(mu, logvar, eps)), mu, logvar, beta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * x.shape[0]
                seen += x.shape[0]
            losses.append(total / seen)
    vae.eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    return VAEConcepts(vae=vae, scale=scale, nonnegative=bool((acts >= 0).all()), losses=losses)


@torch.no_grad()
def vae_concept_maps(model: VAEConcepts, acts: torch.Tensor) -> torch.Tensor:
    """Concept maps (N, k, h, w): the posterior mean μ_θ of every position."""
    n, _, h, w = acts.shape
    mu, _ = model.vae.encode(position_rows(acts.float()) / model.scale)
    return position_grid(mu, n, h, w)


@torch.no_grad()
def vae_reconstruct(model: VAEConcepts, acts: torch.Tensor) -> torch.Tensor:
    """The layer as the explainer reconstructs it, g_φ(μ_θ(a)) · scale (N, C, h, w); clamped at 0
    on a non-negative layer."""
    n, _, h, w = acts.shape
    mu, _ = model.vae.encode(position_rows(acts.float()) / model.scale)
    rec = position_grid(model.vae.decode(mu) * model.scale, n, h, w)
    return rec.clamp_min(0) if model.nonnegative else rec


# --------------------------------------------------------------------------- the approximated model


def explained_layer(adapter, block: int | None) -> str:
    """The layer both explainers factor: block ``block`` of shared.explain.layers (1-based; a
    negative number counts from the top: -1 is the last block), or, with None, the adapter's
    target layer (the last convolutional block)."""
    from shared.explain.layers import block_layer, block_layers

    if block is None:
        return adapter.target_layer
    block = int(block)
    return block_layer(adapter, block if block > 0 else len(block_layers(adapter)) + 1 + block)


@contextmanager
def layer_replaced(adapter, layer: str, replacement: torch.Tensor) -> Iterator[None]:
    """Within the block, module ``layer`` of ``adapter`` outputs ``replacement`` (same shape as its
    own output; a ViT's token layer gets the grid written back into its patch tokens)."""
    module = adapter.module(layer)

    def hook(mod, inputs, output):
        if output.dim() == 4 and output.shape != replacement.shape:
            raise ValueError(f"layer {layer!r} outputs {tuple(output.shape)}, the replacement is {tuple(replacement.shape)}")
        return replace_output(adapter, output, replacement)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def logits_with_layer(adapter, images: torch.Tensor, layer: str, replacement: torch.Tensor) -> torch.Tensor:
    """The approximated model's logits: the network run on ``images`` with ``layer``'s output
    replaced by ``replacement`` (N, C, h, w)."""
    with layer_replaced(adapter, layer, replacement):
        return adapter(images)


# --------------------------------------------------------------------------- Fidelity, Coherence, Faith


def fidelity(logits: torch.Tensor, approx_logits: torch.Tensor) -> torch.Tensor:
    """Per image: 1 if the approximated model predicts the original model's class, else 0 (N,).

    The mean over images is ICE's fidelity (accuracy of the approximated model against the original
    model's predictions)."""
    return (approx_logits.argmax(dim=1) == logits.argmax(dim=1)).double()


def fidelity_prob(logits: torch.Tensor, approx_logits: torch.Tensor) -> torch.Tensor:
    """Per image: 1 − total variation between the two models' class distributions,
    1 − ½ Σ_c |p_c − p̂_c| ∈ [0, 1] (N,); 1 for a perfect reconstruction. The continuous
    companion of :func:`fidelity` (a paired test has more to compare than 0/1 agreements)."""
    p, q = logits.double().softmax(dim=1), approx_logits.double().softmax(dim=1)
    return 1.0 - 0.5 * (p - q).abs().sum(dim=1)


def top_features(acts: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """(N, k, C): for each image and concept, the layer's C-vector at the concept map's argmax
    (the concept's prototype position in that image; ties: the first position)."""
    n, c, h, w = acts.shape
    idx = maps.flatten(2).argmax(dim=2)  # (N, k)
    flat = acts.flatten(2)  # (N, C, h·w)
    return torch.gather(flat, 2, idx[:, None, :].expand(n, c, idx.shape[1])).transpose(1, 2)


def concept_prototypes(acts: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """(k, C): each concept's prototype direction, the mean over the images of the unit
    C-vectors at their top positions (:func:`top_features`)."""
    return F.normalize(top_features(acts.double(), maps), dim=2).mean(dim=0)


def coherence(acts: torch.Tensor, maps: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Per image (N,): the mean over concepts of the cosine similarity between the C-vector at
    the concept's top position in the image and the concept's prototype (from the fitting images):
    1 when every concept picks the same feature in every image, lower the more a concept's
    prototypical regions differ between images. Measured in the layer's own space, so linear and
    non-linear explainers are scored alike."""
    feats = F.normalize(top_features(acts.double(), maps), dim=2)
    protos = F.normalize(prototypes.double(), dim=1)
    return (feats * protos[None]).sum(dim=2).mean(dim=1)


def faith(coherence_values: torch.Tensor, fidelity_values: torch.Tensor) -> torch.Tensor:
    """The Faith score: Coherence + Fidelity (per image, or of the means: the mean is linear)."""
    return coherence_values.double() + fidelity_values.double()


def reconstruction_fit(acts: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
    """Per image: 1 − ‖A − Â‖² / ‖A‖² (N,), the share of the layer's energy the reconstruction
    keeps: 1 when exact, 0 for Â = 0."""
    a, r = acts.double().flatten(1), rec.double().flatten(1)
    return 1.0 - (a - r).pow(2).sum(1) / a.pow(2).sum(1).clamp_min(1e-30)


# --------------------------------------------------------------------------- the Bessel visualisation


def bessel_transfer(maps: torch.Tensor) -> torch.Tensor:
    """The Bessel visualisation of concept maps (..., h, w): each map min-max normalised to
    ŝ ∈ [0, 1], then b = J₀(j₁,₁ · (1 − ŝ)).

    b = 1 at the concept's strongest position, falls smoothly (J₀′(0) = 0: a flat top) through 0
    at ŝ = 1 − j₀,₁/j₁,₁ ≈ 0.372 to its minimum J₀(j₁,₁) ≈ −0.403 at the weakest (J₀′(j₁,₁) = 0:
    a flat bottom); monotone in between (J₁ > 0 on (0, j₁,₁)). Positive: what the concept shows
    ("what the CNN saw"); negative: where it is least present ("what the CNN avoided"). A constant
    map has no contrast and maps to 1 everywhere.
    """
    flat = maps.double().flatten(-2)
    lo, hi = flat.min(dim=-1, keepdim=True).values, flat.max(dim=-1, keepdim=True).values
    span = hi - lo
    s = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-300), torch.ones_like(flat))
    return torch.special.bessel_j0(BESSEL_J1_FIRST_ZERO * (1.0 - s)).reshape(maps.shape)
