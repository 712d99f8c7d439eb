"""Capture activations at named modules, so that gradients can be taken with respect to them.

The capture is a context manager: its hooks are removed when the block ends, also when the
forward pass or the method fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


class Capture:
    """The activations captured during one forward pass, by layer name."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.activations: dict[str, torch.Tensor] = {}

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.activations:
            raise RuntimeError(
                f"layer {name!r} did not run during the forward pass (captured: "
                f"{sorted(self.activations) or 'nothing'}); is it used by the model's forward?"
            )
        return self.activations[name]

    def tensors(self) -> list[torch.Tensor]:
        return [self[n] for n in self.names]


def _output_tensor(output: object, name: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor; pick a layer that outputs a tensor")


@contextmanager
def capture(modules: dict[str, nn.Module], track_gradients: bool = True) -> Iterator[Capture]:
    """Record the outputs of ``modules`` (name → module) during forward passes in the block.

    With ``track_gradients``, each captured output is made differentiable:

    * if nothing below the layer requires a gradient (frozen parameters, plain images), the
      output becomes a fresh leaf (``detach().requires_grad_()``), so the backward pass of
      ``torch.autograd.grad(score, capture.tensors())`` stops exactly at the explained layer;
    * otherwise (an earlier captured layer already started the graph) it is passed on as is.

    In both cases the tensor handed on to the rest of the network is a *clone* of the captured
    one, so an in-place operation downstream (``ReLU(inplace=True)``) cannot overwrite the
    captured activation or invalidate its autograd version counter.
    """
    record = Capture(list(modules))
    handles = []

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: object):
            out = _output_tensor(output, name)
            if track_gradients and torch.is_grad_enabled():
                if not out.requires_grad:
                    out = out.detach().requires_grad_(True)
                record.activations[name] = out
                return out.clone()
            record.activations[name] = out.detach()
            return out.clone()  # an in-place op downstream must not overwrite the record

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield record
    finally:
        for h in handles:
            h.remove()
