"""Adversarial fine-tuning for "How explainable are adversarially-robust CNNs?" (Nourelahi et al.).

The paper compares vanilla ImageNet CNNs with adversarially-trained ("robust") ones. Here the
robust model is the same network as the vanilla checkpoint, fine-tuned from it with PGD
adversarial training (Madry et al.: minimise the loss on L-inf PGD examples) — a few signed
gradient steps inside the epsilon ball around each training image, clamped to [0, 1].
Deterministic: seeded generator for the random start and the data order, no other randomness.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def project(x: torch.Tensor, images: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``x`` projected onto the L-inf ball of radius ``epsilon`` around ``images``, then into [0, 1]."""
    return torch.minimum(torch.maximum(x, images - epsilon), images + epsilon).clamp(0.0, 1.0)


def pgd(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    epsilon: float,
    step_size: float,
    steps: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L-inf PGD on the cross-entropy of ``labels``: ``steps`` updates
    x ← Π_{B∞(images, ε) ∩ [0,1]}(x + step_size · sign(∇_x CE)); a uniform random start in the
    ball when ``generator`` is given (training), none otherwise (evaluation: from the image).
    ``model`` maps images in [0, 1] to logits; its mode (train / eval) is left as it is."""
    x = images.detach()
    if generator is not None:
        noise = torch.rand(images.shape, generator=generator, device="cpu").to(images.device)
        x = project(x + (2.0 * noise - 1.0) * epsilon, images, epsilon)
    for _ in range(int(steps)):
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            loss = F.cross_entropy(model(x), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        x = project(x.detach() + step_size * grad.sign(), images, epsilon)
    return x.detach()


@dataclass
class FineTuneResult:
    model: torch.nn.Module
    history: list[dict[str, float]] = field(default_factory=list)


def adversarial_fine_tune(
    adapter: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    epsilon: float,
    step_size: float,
    pgd_steps: int,
    seed: int,
) -> FineTuneResult:
    """A copy of ``adapter`` fine-tuned by PGD adversarial training (SGD, momentum 0.9, constant
    ``lr``): per batch, PGD examples are made with the model in eval mode (no batch-norm
    statistics move during the attack), then one SGD step on their cross-entropy in train mode.
    The data order is a permutation per epoch from a generator seeded with ``seed``; the random
    starts come from the same generator. The vanilla ``adapter`` is not changed."""
    model = copy.deepcopy(adapter)
    for p in model.parameters():
        p.requires_grad_(True)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=float(lr), momentum=0.9)
    gen = torch.Generator().manual_seed(int(seed))
    n = images.shape[0]
    history = []
    for epoch in range(int(epochs)):
        order = torch.randperm(n, generator=gen)
        total, correct = 0.0, 0
        for start in range(0, n, int(batch_size)):
            idx = order[start : start + int(batch_size)].to(images.device)
            x, y = images[idx], labels[idx]
            model.eval()
            adv = pgd(model, x, y, epsilon, step_size, pgd_steps, generator=gen)
            model.train()
            opt.zero_grad(set_to_none=True)
            logits = model(adv)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
            correct += int((logits.detach().argmax(1) == y).sum())
        history.append({"epoch": epoch, "adv_loss": total / n, "adv_train_accuracy": correct / n})
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return FineTuneResult(model, history)


def accuracy_per_image(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """1.0 where ``model``'s top class is the label, else 0.0 (per image)."""
    with torch.no_grad():
        pred = torch.cat([model(images[k : k + chunk]).argmax(1) for k in range(0, images.shape[0], chunk)])
    return (pred == labels).double()
