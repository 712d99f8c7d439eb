"""Invertible Concept-based Explanations (Zhang, Madumal, Miller, Ehinger & Rubinstein, AAAI 2021):
the computation of the approximated model's fidelity.

ICE splits a CNN at a layer into a concept extractor (input -> activations A) and a classifier
(A -> logits), factors A on a set of images into concept vectors H (non-negative "NCAVs" by NMF; or
PCA, or k-means clusters as ACE) and puts ``W·H`` in place of A: the *approximated model*
g(x) = classifier(encode(A(x))·H). Its fidelity says how much of the model the concepts keep. Nothing
here is registered (the concepts need a set of images); ``figures.py``'s step calls these, the
factorisation is ``shared.concepts``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from shared.concepts import Concepts, approximated_logits, kmeans_concepts, nmf_concepts, pca_concepts

REDUCERS = ("nmf", "pca", "kmeans")
"""ICE's reducers: NMF (its NCAVs), PCA and k-means (ACE's clustering), as the paper compares them."""

EPSILON = 1e-4
"""The authors' ``Explainer(epsilon=1e-4)``, added to the fidelity error's denominator."""


def fit_reducers(acts: Tensor, ks: Sequence[int], seed: int, max_iter: int, reducers: Sequence[str] = REDUCERS) -> dict[tuple[str, int], Concepts]:
    """Concepts of every reducer at every k, fitted on ``acts`` (N, C, h, w).

    PCA is one SVD truncated to each k (its top-k components do not depend on how many more are
    kept); NMF and k-means are fitted anew for each k, with ``random_state = seed``."""
    out: dict[tuple[str, int], Concepts] = {}
    if "pca" in reducers:
        full = pca_concepts(acts, max(ks))
        for k in ks:
            out[("pca", k)] = Concepts(W=full.W[:, :k], H=full.H[:k], offset=full.offset, method="pca")
    for k in ks:
        if "nmf" in reducers:
            out[("nmf", k)] = nmf_concepts(acts, k, seed=seed, max_iter=max_iter)
        if "kmeans" in reducers:
            out[("kmeans", k)] = kmeans_concepts(acts, k, seed=seed)
    return out


def fidelity_scores(original: Tensor, approximated: Tensor, labels: Tensor) -> dict[str, Tensor]:
    """Per-image fidelity of the approximated model's outputs (N, K) against the original's (N, K).

    * ``agreement``: 1 where both predict the same class (the approximated model's fidelity to the
      model's decisions);
    * ``accuracy``: 1 where the approximated model predicts the true label;
    * ``fidelity_error``: the authors' fidelity error per image, |y_c(x) − ŷ_c(x)| / (|ȳ_c| + ε), c
      the image's true class, ȳ_c the mean of the original's logit c over the images of class c
      (``Explainer._train_reducer``: ``abs(res_true - res_recon).mean(axis=0) / (abs(res_true.mean(axis=0)) + epsilon)``
      per class; its mean over a class's images is their per-class number).
    """
    labels = labels.to(original.device).long()
    rows = torch.arange(original.shape[0], device=original.device)
    y, y_hat = original[rows, labels].double(), approximated[rows, labels].double()
    k = original.shape[1]
    # the class means ȳ_c over the images of each class, in one scatter (no loop over classes)
    sums = torch.zeros(k, dtype=torch.float64, device=original.device).index_add_(0, labels, y)
    counts = torch.zeros(k, dtype=torch.float64, device=original.device).index_add_(0, labels, torch.ones_like(y))
    class_mean = sums / counts.clamp_min(1)
    return {
        "agreement": (approximated.argmax(dim=1) == original.argmax(dim=1)).double(),
        "accuracy": (approximated.argmax(dim=1) == labels).double(),
        "fidelity_error": (y - y_hat).abs() / (class_mean[labels].abs() + EPSILON),
    }


def ice_fidelity(adapter, fit_images: Tensor, images: Tensor, labels: Tensor, layer: str, ks: Sequence[int],
                 seed: int, max_iter: int, batch_size: int, reducers: Sequence[str] = REDUCERS) -> dict:
    """Concepts fitted on ``fit_images`` (the training images), the approximated model evaluated on
    ``images`` (held out): per-image scores per (reducer, k), and the original model's accuracy."""
    from shared.concepts import layer_activations

    acts = layer_activations(adapter, fit_images, layer, batch_size)
    concepts = fit_reducers(acts, ks, seed, max_iter, reducers)
    with torch.no_grad():
        original = torch.cat([adapter(images[i : i + batch_size]) for i in range(0, images.shape[0], batch_size)])
    keys = list(concepts)
    # every (reducer, k) in one pass through the layers below `layer` (shared.concepts)
    approx = approximated_logits(adapter, images, layer, [concepts[key] for key in keys], batch_size=batch_size, max_iter=max_iter)
    scores = {key: fidelity_scores(original, approx[r], labels) for r, key in enumerate(keys)}
    model_accuracy = (original.argmax(dim=1) == labels.to(original.device)).double()
    return {"scores": scores, "model_accuracy": model_accuracy, "concepts": concepts, "n_fit_rows": int(acts.shape[0] * acts.shape[2] * acts.shape[3])}
